"""One inference loop for every camera: the windows that are due, from all cameras, go
through the model together (as DeepStream batches the sequences of all its streams into
NCDHW tensors), then each camera smooths its own scores.

They go in forwards of at most ``max_batch`` windows: on a CPU one large batch runs
slower per window than a few small ones (its activations leave the caches), so a CPU
forward takes at most :data:`CPU_MAX_BATCH` windows unless configured. A backend whose
batch size was fixed at export (an ONNX file with input (1, 3, T, S, S)) is fed in chunks
of that size.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from rsanet.inference.predictor import Predictor
from rsanet.inference.results import WindowResult
from rsanet.inference.windows import Window
from rsanet.serve.cameras import Camera

logger = logging.getLogger("rsanet.serve")

#: windows per forward on a CPU: 8-frame 224 x 224 clips of rsanet_tiny took 1.3-1.7 times
#: as long per window in one batch of 14 as in batches of 2-4 (2-core AMD EPYC, fp32,
#: ``python benchmarks/inference.py --models rsanet_tiny --batches 1 2 4 8 14``)
CPU_MAX_BATCH = 4
#: windows per forward on a GPU: every camera's window at once, as DeepStream batches
GPU_MAX_BATCH = 32


def default_max_batch(device: str) -> int:
    """Windows per forward when the configuration names none: few on a CPU, all on a GPU."""
    return CPU_MAX_BATCH if device == "cpu" else GPU_MAX_BATCH


class DeviceBackend:
    """A PyTorch model on ``device``: clips are moved there, logits come back to the CPU."""

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(clip.to(self.device, non_blocking=True)).float().cpu()


def fixed_batch(backend: object) -> int | None:
    """The batch size an exported backend insists on (None: any)."""
    shape = getattr(backend, "input_shape", None)
    if isinstance(shape, tuple) and shape and isinstance(shape[0], int) and shape[0] > 0:
        return int(shape[0])
    return None


def forward_windows(
    predictor: Predictor,
    windows: Sequence[Window],
    *,
    max_batch: int = GPU_MAX_BATCH,
    on_forward: Callable[[int], None] | None = None,
) -> tuple[list[np.ndarray | None], float]:
    """Class probabilities (K,) of each window (None for a window whose logits were not
    finite) and the milliseconds all of them took (preprocessing and model), the model
    run on chunks of at most ``max_batch`` windows (``on_forward(size)`` after each)."""
    started = time.perf_counter()
    clips = [
        predictor.clip([frame.image for frame in predictor.window_clip(window)])
        for window in windows
    ]
    batch = torch.cat(clips)
    size = fixed_batch(predictor.backend) or max_batch
    outputs = []
    for first in range(0, len(batch), size):
        chunk = batch[first : first + size]
        if fixed_batch(predictor.backend) and len(chunk) < size:  # pad a fixed-size batch
            pad = chunk[-1:].expand(size - len(chunk), *chunk.shape[1:])
            logits = predictor.backend(torch.cat([chunk, pad]))[: len(chunk)]
        else:
            logits = predictor.backend(chunk)
        if not isinstance(logits, torch.Tensor):
            logits = torch.as_tensor(np.asarray(logits))
        outputs.append(logits.detach().float().cpu())
        if on_forward is not None:
            on_forward(len(chunk))
    logits = torch.cat(outputs)
    if logits.shape != (len(windows), len(predictor.classes)):
        raise ValueError(
            f"the model returned logits of shape {tuple(logits.shape)}, expected "
            f"({len(windows)}, {len(predictor.classes)})"
        )
    finite = torch.isfinite(logits).all(dim=1)
    probs = torch.softmax(logits, dim=-1).numpy().astype(np.float64)
    results = [probs[i] if bool(finite[i]) else None for i in range(len(windows))]
    return results, (time.perf_counter() - started) * 1e3


class InferenceLoop:
    """Gathers due windows from ``cameras`` and runs them together (in forwards of at most
    ``max_batch`` windows), until :meth:`stop`.

    ``on_result(camera, result)`` is called for each window and ``on_forward(size)`` for
    each forward, in this loop's thread; ``forwards`` and ``batch_sizes`` count the
    forwards and their windows (the benchmarks and tests read them).
    """

    def __init__(
        self,
        predictor: Predictor,
        cameras: Sequence[Camera],
        *,
        on_result: Callable[[Camera, WindowResult], None] | None = None,
        on_forward: Callable[[int], None] | None = None,
        idle: float = 0.01,
        max_batch: int = GPU_MAX_BATCH,
    ) -> None:
        self.predictor, self.cameras = predictor, list(cameras)
        self.on_result, self.on_forward = on_result, on_forward
        self.idle, self.max_batch = float(idle), int(max_batch)
        self.forwards = 0
        self.batch_sizes: list[int] = []
        self.errors = 0
        self.last_error: str | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    @property
    def stopping(self) -> bool:
        return self._halt.is_set()

    def step(self) -> int:
        """One round: poll every camera, forward the due windows together; returns how
        many windows were run."""
        due = []
        for camera in self.cameras:
            try:
                window = camera.poll()
            except Exception as error:  # one camera's failure never stops the others
                self._fail(f"camera {camera.name}", error)
                continue
            if window is not None:
                due.append((camera, window))
        if not due:
            return 0
        try:
            scores, compute_ms = forward_windows(
                self.predictor,
                [window for _, window in due],
                max_batch=self.max_batch,
                on_forward=self._forwarded,
            )
        except Exception as error:
            self._fail("the model", error)
            return 0
        for (camera, window), raw in zip(due, scores, strict=True):
            if raw is None:
                self._fail(
                    f"camera {camera.name}",
                    ValueError("the model returned non-finite logits; window skipped"),
                )
                continue
            result = camera.result(window, raw, compute_ms)
            if self.on_result is not None:
                try:
                    self.on_result(camera, result)
                except Exception as error:
                    self._fail(f"camera {camera.name}: alerts", error)
        return len(due)

    def _forwarded(self, size: int) -> None:
        """Count one forward of ``size`` windows and report it."""
        self.forwards += 1
        self.batch_sizes.append(size)
        del self.batch_sizes[:-1000]
        if self.on_forward is not None:
            self.on_forward(size)

    def _fail(self, where: str, error: BaseException) -> None:
        from rsanet.inference.redact import one_line

        self.errors += 1
        self.last_error = f"{where}: {one_line(error)}"
        logger.warning("%s", self.last_error)

    def run(self) -> None:
        """Step until :meth:`stop`, resting ``idle`` seconds when nothing was due."""
        while not self._halt.is_set():
            if not self.step():
                self._halt.wait(self.idle)
