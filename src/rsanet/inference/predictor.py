"""Prediction with a trained classifier: clip-level over files and folders, sliding windows
over long videos.

Clips are built exactly as the model is evaluated: ``num_frames`` frames sampled TSN-style
(:class:`rsanet.data.TSNSampler`, segment centres) and the evaluation transforms of
:func:`rsanet.data.build_transforms` (short side to ``size * 256 / 224``, centre crop
``size``, ImageNet normalisation). The model runs behind a *backend*: any callable taking a
clip (N, 3, T, size, size) float32 and returning logits (N, K): :class:`TorchBackend`, or
:class:`rsanet.inference.export.OnnxRuntimeBackend` for an exported model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from rsanet.inference.rescorer import RescoredSmoother, Rescorer
from rsanet.inference.results import ClipPrediction, RunStats, RunSummary, Top, WindowResult
from rsanet.inference.smoothing import ScoreSmoother
from rsanet.inference.sources import Frame, SourceError, SourceSpec, list_videos, open_container
from rsanet.inference.windows import SlidingWindow, Window

#: the frame rate up to which a window's frames are held (a bound on memory)
MAX_FPS = 120


class Backend(Protocol):
    """A model: clip (N, 3, T, H, W) float32 -> logits (N, K)."""

    def __call__(self, clip: torch.Tensor) -> torch.Tensor: ...


class TorchBackend:
    """A PyTorch model in evaluation mode, run under ``torch.inference_mode``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(clip)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for prediction (the message is one line)."""


class NonFiniteScoresError(ValueError):
    """The model returned NaN or infinite logits: an error, never a result (a rule must not
    fire on ``score nan``); the weights or the exported file are broken."""


@dataclass
class Classifier:
    """A model rebuilt from a checkpoint or weights-only file, with what prediction needs to
    know about it. ``weights`` says which weights the model holds (``"ema"`` or ``"raw"``)."""

    model: nn.Module
    name: str
    classes: list[str]
    num_frames: int
    extra: dict[str, Any] = field(default_factory=dict)
    weights: str = "raw"

    @property
    def input_size(self) -> int | None:
        """The crop side the model was trained at: the checkpoint's ``input_size`` (a side,
        or (height, width) of a weights-only file), or the training configuration's
        ``data.size`` (checkpoints of ``rsanet train``)."""
        size = self.extra.get("input_size")
        if isinstance(size, list | tuple) and len(size) == 2 and size[0] == size[1]:
            size = size[0]
        config = self.extra.get("config")
        if size is None and isinstance(config, dict) and isinstance(config.get("data"), dict):
            size = config["data"].get("size")
        return int(size) if isinstance(size, int) and size > 0 else None

    @property
    def full_frame(self) -> bool:
        """Whether the model was trained on whole frames squeezed to a square (the training
        configuration's ``data.full_frame``) rather than on crops of the short side."""
        if "full_frame" in self.extra:  # a weights-only file (rsanet train or export)
            return bool(self.extra["full_frame"])
        config = self.extra.get("config")
        data = config.get("data") if isinstance(config, dict) else None
        return bool(isinstance(data, dict) and data.get("full_frame"))

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the normalisation (recorded by a weights-only file; ImageNet's
        otherwise, the one ``rsanet train`` uses)."""
        from rsanet.data.transforms import IMAGENET_MEAN

        return _channels(self.extra.get("mean"), IMAGENET_MEAN)

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the normalisation (as :attr:`mean`)."""
        from rsanet.data.transforms import IMAGENET_STD

        return _channels(self.extra.get("std"), IMAGENET_STD)


def _channels(value: Any, default: Sequence[float]) -> tuple[float, ...]:
    if isinstance(value, list | tuple) and len(value) == 3:
        return tuple(float(v) for v in value)
    return tuple(default)


def class_names(classes: Any, num_classes: int, where: str = "checkpoint") -> list[str]:
    """``classes`` as a list of ``num_classes`` strings; ``class_0 ...`` when absent."""
    if classes is None:
        return [f"class_{i}" for i in range(num_classes)]
    if isinstance(classes, dict):  # {index: name}
        classes = [classes[k] for k in sorted(classes, key=int)]
    names = [str(name) for name in classes]
    if len(names) != num_classes:
        raise CheckpointError(
            f"{where} names {len(names)} classes but the model has {num_classes} outputs"
        )
    return names


def load_classifier(path: str | Path, *, weights: str = "auto") -> Classifier:
    """Rebuild the model of an rsanet checkpoint (see :func:`rsanet.models.save_checkpoint`)
    or of a weights-only ``.safetensors`` file (with its JSON) with its class names.

    ``weights`` (see :func:`rsanet.models.select_weights`): ``"auto"`` loads the EMA
    weights when the checkpoint has them (those ``rsanet eval`` scores), ``"ema"`` or
    ``"raw"`` insist. Raises CheckpointError with a one-line reason for a missing file, a
    file that is not a PyTorch checkpoint, or a checkpoint that is not ours."""
    from rsanet.models import load_model, read_model_file

    path = str(path)
    try:
        checkpoint = read_model_file(path)
    except (FileNotFoundError, ValueError) as error:  # the readers' own clear errors
        raise CheckpointError(str(error)) from None
    except Exception as error:  # pickle, zip and torch errors of a file that is not ours
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint file ({type(error).__name__}: {reason})"
        ) from None
    try:
        model = load_model(checkpoint, weights=weights)
    except (ValueError, KeyError, TypeError) as error:
        reason = " ".join(str(error).split())
        raise CheckpointError(f"{path}: {reason}") from None
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    if num_classes < 1:
        raise CheckpointError(f"{path}: the model has no classifier (num_classes=0)")
    extra = {
        k: v
        for k, v in checkpoint.items()
        if k not in ("state_dict", "ema", "format", "format_version", "model_config")
    }
    return Classifier(
        model=model,
        name=str(checkpoint["model"]),
        classes=class_names(checkpoint.get("classes"), num_classes, path),
        num_frames=int(getattr(model, "num_frames", 8)),
        extra=extra,
        weights=getattr(model, "rsanet_weights", "raw"),
    )


def top_k(scores: np.ndarray, classes: Sequence[str], k: int) -> Top:
    """The ``k`` best (label, score) pairs, best first."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [(classes[i], float(scores[i])) for i in order]


class Predictor:
    """A classifier ready for videos.

    Args:
        backend: the model (see :class:`Backend`).
        classes: the K class names.
        num_frames: T, frames of a clip.
        size: crop side of a clip (the model sees (N, 3, T, size, size)).
        top_k: labels reported per prediction.
        smoothing: windows averaged by the score smoothing (1: none).
        mean, std: the per-channel normalisation of pixels in [0, 1] (ImageNet's by
            default, as in training).
        full_frame: the whole frame squeezed to size x size (a model trained with
            ``data.full_frame``) instead of the centre crop.
        context_frames: of the T frames, this many show the ``context_s`` seconds
            before each window (a model trained with ``data.untrimmed.context_frames``):
            its windows are built from streams that keep that much history, and it cannot
            score a whole file as one clip.
    """

    def __init__(
        self,
        backend: Backend | Callable[[torch.Tensor], torch.Tensor],
        classes: Sequence[str],
        *,
        num_frames: int,
        size: int = 224,
        top_k: int = 5,
        smoothing: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        full_frame: bool = False,
        context_frames: int = 0,
        context_s: float = 8.0,
    ) -> None:
        from rsanet.data import build_transforms
        from rsanet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
        from rsanet.data.windows import check_context

        if num_frames < 1 or size < 1:
            raise ValueError(f"num_frames and size must be positive, got {num_frames}, {size}")
        check_context(num_frames, context_frames, context_s)  # the clips training read
        if top_k < 1:
            raise ValueError(f"top_k must be positive, got {top_k}")
        self.backend = backend
        self.classes = list(classes)
        self.num_frames = int(num_frames)
        self.context_frames, self.context_s = int(context_frames), float(context_s)
        self.size = int(size)
        self.top_k = min(int(top_k), len(self.classes))
        ScoreSmoother(smoothing)  # validates
        self.smoothing = smoothing
        #: a second stage over each stream's smoothed scores (:meth:`use_rescorer`)
        self.rescorer: Rescorer | None = None
        self.full_frame = bool(full_frame)
        #: short side the evaluation transforms resize frames to (sources decode to it)
        self.short_side = self.size if self.full_frame else round(self.size * 256 / 224)
        self.transform = build_transforms(
            train=False,
            size=self.size,
            mean=mean or IMAGENET_MEAN,
            std=std or IMAGENET_STD,
            full_frame=self.full_frame,
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        size: int | None = None,
        top_k: int = 5,
        smoothing: int = 3,
        weights: str = "auto",
        precision: str = "fp32",
        calibration: Callable[[Classifier, int], Iterable[torch.Tensor]] | None = None,
        threads: int | None = None,
        device: str = "cpu",
        float_from: str | None = None,
    ) -> Predictor:
        """A predictor on the PyTorch model of an rsanet checkpoint or weights-only
        ``.safetensors`` file; ``size`` defaults to the size the model was trained at
        (:attr:`Classifier.input_size`), else 224; ``weights`` as in
        :func:`load_classifier` (EMA weights when the checkpoint has them).

        ``precision`` (fp32, bf16, int8; see :mod:`rsanet.inference.precision`): int8 is
        calibrated on ``calibration(classifier, size)``, normalised clips (n, 3, T, S, S)
        for the loaded classifier, e.g. :func:`rsanet.inference.int8.calibration_batches`
        over its training set; ``threads``: ONNX Runtime's threads for int8;
        ``float_from``: int8 keeps that block and the rest in float. The model is
        put on ``device`` (a ResNet on the CPU takes its clips channels-last:
        :func:`rsanet.inference.precision.prepare_model`); clips are built on the CPU
        (serve's :class:`rsanet.serve.batching.DeviceBackend` moves them to a GPU)."""
        from rsanet.inference.precision import prepare_model

        classifier = load_classifier(path, weights=weights)
        size = size or classifier.input_size or 224
        model = prepare_model(
            classifier.model,
            precision,
            device=device,
            calibration=(lambda: calibration(classifier, size)) if calibration else None,
            threads=threads,
            float_from=float_from,
        )
        return cls(
            TorchBackend(model),
            classifier.classes,
            num_frames=classifier.num_frames,
            size=size,
            top_k=top_k,
            smoothing=smoothing,
            mean=classifier.mean,
            std=classifier.std,
            full_frame=classifier.full_frame,
            context_frames=getattr(classifier.model, "context_frames", 0),
            context_s=getattr(classifier.model, "context_s", 8.0),
        )

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        *,
        checkpoint: str | Path | None = None,
        size: int | None = None,
        top_k: int = 5,
        smoothing: int = 3,
        threads: int | None = None,
        device: str = "cpu",
        float_from: str | None = None,
    ) -> Predictor:
        """A predictor on an exported ONNX file run by ONNX Runtime (``threads`` intra-op
        threads; ``device`` cuda[:N]: its TensorRT or CUDA execution provider). The clip
        shape is the one fixed at export (``size``, when given, must match it); the class
        names come from ``checkpoint`` when given, else from the file's metadata, else they
        are numbered. ValueError (one line) for a file that does not take clips
        (N, 3, T, S, S) of a fixed shape or was exported for another size, or for a GPU
        this onnxruntime cannot use."""
        from rsanet.inference.export import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(path, threads=threads, device=device)
        if backend.num_frames is None or backend.size is None:
            raise ValueError(
                f"{path}: expected a clip input (N, 3, T, S, S) of a fixed shape, "
                f"got {backend.input_shape}"
            )
        if size and size != backend.size:
            raise ValueError(f"{path} was exported for --size {backend.size}, not {size}")
        num_classes = backend.session.get_outputs()[0].shape[-1]
        if checkpoint:
            classes = load_classifier(checkpoint).classes
        else:
            classes = backend.metadata.get("classes")
            if not isinstance(num_classes, int):
                num_classes = len(classes or [])
        names = class_names(classes, int(num_classes), str(path))
        return cls(
            backend,
            names,
            num_frames=backend.num_frames,
            size=backend.size,
            top_k=top_k,
            smoothing=smoothing,
            mean=backend.metadata.get("mean"),
            std=backend.metadata.get("std"),
            full_frame=bool(backend.metadata.get("full_frame", False)),
            context_frames=int(backend.metadata.get("context_frames", 0)),
            context_s=float(backend.metadata.get("context_s", 8.0)),
        )

    @property
    def history_s(self) -> float:
        """Seconds of stream before each window that its clip reads (0 without context)."""
        return self.context_s if self.context_frames else 0.0

    def window_clip(self, window: Window) -> list[Frame]:
        """The ``num_frames`` frames of ``window``'s clip: its context frames, if any, then
        the TSN sample of the window."""
        return window.sample(self.num_frames, self.context_frames, self.context_s)

    # -- one clip ------------------------------------------------------------------------

    def warm_up(self) -> float:
        """Run one blank clip through the model and return the milliseconds it took. The
        first forward pays for lazy set-up (kernels loaded, memory allocated, ONNX Runtime
        sessions initialised), seconds on a CPU; paid before a camera opens, it delays no
        window, and the stream's first frames are not dropped waiting for it."""
        blank = np.zeros((self.num_frames, self.size, self.size, 3), dtype=np.uint8)
        return self.scores(blank)[1]

    def clip(self, frames: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """Frames (T, H, W, 3) uint8 -> the model's input (1, 3, T, size, size)."""
        if not isinstance(frames, np.ndarray):
            shape = frames[-1].shape  # a resolution change inside a window: last one wins
            frames = np.stack([f if f.shape == shape else frames[-1] for f in frames])
        clip, _ = self.transform(frames)
        return clip.unsqueeze(0)

    def scores(self, frames: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
        """Class probabilities (K,) of a clip of T frames (T, H, W, 3) uint8, and the time
        taken (preprocessing and model) in milliseconds."""
        start = time.perf_counter()
        logits = self.backend(self.clip(frames))
        if not isinstance(logits, torch.Tensor):
            logits = torch.as_tensor(np.asarray(logits))
        if logits.dim() != 2 or logits.shape[-1] != len(self.classes):
            raise ValueError(
                f"the model returned logits of shape {tuple(logits.shape)}, expected "
                f"(1, {len(self.classes)})"
            )
        logits = logits.float()
        if not bool(torch.isfinite(logits).all()):
            bad = int((~torch.isfinite(logits)).sum())
            raise NonFiniteScoresError(
                f"the model returned {bad} non-finite logit(s) (NaN or inf) of "
                f"{logits.numel()}: its weights are broken (retrain, or re-export the "
                "checkpoint); no prediction is made from them"
            )
        probs = torch.softmax(logits, dim=-1)[0].cpu().numpy().astype(np.float64)
        if not np.isfinite(probs).all():  # cannot happen after finite logits; kept as a guard
            raise NonFiniteScoresError("the model's class scores are not finite")
        return probs, (time.perf_counter() - start) * 1e3

    def top(self, scores: np.ndarray) -> Top:
        return top_k(scores, self.classes, self.top_k)

    # -- files ---------------------------------------------------------------------------

    def predict_file(self, path: str | Path) -> ClipPrediction:
        """Clip-level prediction of a video file: T frames over the whole video. Raises
        SourceError (or :class:`rsanet.data.BadSampleError`) for an unreadable file."""
        from rsanet.data import PyAVVideo, TSNSampler

        path = str(path)
        if self.context_frames:
            raise ValueError(
                f"{path}: this model reads {self.context_frames} frames of the "
                f"{self.context_s:g} s before each window, so it scores windows of a stream, "
                "not a whole file: give --window-seconds (or --live)"
            )
        start = time.perf_counter()
        container, stream = open_container(SourceSpec("file", path))  # clear codec errors
        rate = stream.average_rate or stream.guessed_rate
        container.close()
        with PyAVVideo(path) as video:
            count = video.num_frames()
            indices = TSNSampler(self.num_frames, train=False)(count)[0]
            frames = video.read(indices.tolist())
        try:
            scores, _ = self.scores(frames)
        except NonFiniteScoresError as error:
            raise NonFiniteScoresError(f"{path}: {error}") from None
        return ClipPrediction(
            source=path,
            top=self.top(scores),
            scores=scores,
            latency_ms=(time.perf_counter() - start) * 1e3,
            frames=count,
            duration=float(count / rate) if rate else 0.0,
        )

    def predict_folder(self, folder: str | Path) -> Iterator[ClipPrediction | tuple[str, str]]:
        """Clip-level prediction of every video in ``folder`` (sorted): a ClipPrediction per
        readable file, ``(path, reason)`` for each file that cannot be read."""
        from rsanet.data import BadSampleError

        videos = list_videos(folder)
        if not videos:
            raise SourceError(f"{folder}: no video files in the folder")
        for path in videos:
            try:
                yield self.predict_file(path)
            except (SourceError, BadSampleError) as error:
                message = str(error)
                prefix = f"{path}: "
                yield path, message[len(prefix) :] if message.startswith(prefix) else message

    # -- windows -------------------------------------------------------------------------

    def use_rescorer(self, rescorer: Rescorer | None) -> None:
        """Pass every stream's smoothed scores through ``rescorer`` (None: stop): the
        results' ``scores`` are then its probabilities, ``raw_scores`` still the model's.
        ValueError unless it reads this model's classes with this smoothing."""
        if rescorer is not None:
            if rescorer.classes != self.classes:
                raise ValueError(
                    "the rescorer was fitted on the scores of a model with the classes "
                    f"{', '.join(rescorer.classes)}, not {', '.join(self.classes)}"
                )
            if rescorer.smoothing != self.smoothing:
                raise ValueError(
                    f"the rescorer was fitted on scores smoothed over {rescorer.smoothing} "
                    f"window(s), not {self.smoothing}"
                )
        self.rescorer = rescorer

    def new_smoother(self) -> ScoreSmoother | RescoredSmoother:
        """The per-stream state between the model and the rules: the smoothing, then the
        rescorer when one is in use (:meth:`use_rescorer`)."""
        smoother = ScoreSmoother(self.smoothing)
        if self.rescorer is None:
            return smoother
        return RescoredSmoother(smoother, self.rescorer.stream())

    def predict_window(
        self, window: Window, smoother: ScoreSmoother | RescoredSmoother, *, source: str = ""
    ) -> WindowResult:
        """The result of one window: TSN-sampled clip, model, smoothing, top-k."""
        clip = self.window_clip(window)
        try:
            raw, compute_ms = self.scores([frame.image for frame in clip])
        except NonFiniteScoresError as error:
            where = f" of {source}" if source else ""
            raise NonFiniteScoresError(
                f"window {window.start:.2f}-{window.end:.2f} s{where}: {error}"
            ) from None
        smoothed = smoother(raw)
        latency_ms = (time.monotonic() - window.frames[-1].arrival) * 1e3
        return WindowResult(
            source=source,
            index=window.index,
            start=window.start,
            end=window.end,
            top=self.top(smoothed),
            scores=smoothed,
            raw_scores=raw,
            latency_ms=max(latency_ms, compute_ms),
            compute_ms=compute_ms,
            frames=len(window.frames),
            skipped=window.skipped,
            segment=window.frames[-1].segment,
        )

    def analyse(
        self,
        frames: Iterable[Frame],
        *,
        window: float,
        stride: float,
        source: str = "",
        on_frame: Callable[[Frame, WindowResult | None], None] | None = None,
    ) -> WindowAnalysis:
        """Sliding-window prediction over ``frames`` read as fast as they come (files)."""
        return WindowAnalysis(
            self, frames, window=window, stride=stride, source=source, on_frame=on_frame
        )


class WindowAnalysis:
    """Iterate to get one :class:`WindowResult` per window of a file's frames;
    :meth:`summary` describes the run so far (call it after the loop, even an interrupted
    one)."""

    def __init__(
        self,
        predictor: Predictor,
        frames: Iterable[Frame],
        *,
        window: float,
        stride: float,
        source: str = "",
        on_frame: Callable[[Frame, WindowResult | None], None] | None = None,
    ) -> None:
        self.predictor = predictor
        self.frames = frames
        self.window, self.stride = window, stride
        span = window + predictor.history_s
        self.engine = SlidingWindow(
            window, stride, max_frames=math.ceil(span * MAX_FPS) + 16, history_s=predictor.history_s
        )
        self.source = source
        self.on_frame = on_frame
        self.latest: WindowResult | None = None
        self.stats = RunStats()
        self.frame_count = 0
        self.interrupted = False
        self._started = time.perf_counter()

    def _emit(self, window: Window, smoother: ScoreSmoother) -> WindowResult:
        result = self.predictor.predict_window(window, smoother, source=self.source)
        self.latest = result
        self.stats.add(result)
        return result

    def __iter__(self) -> Iterator[WindowResult]:
        smoother = self.predictor.new_smoother()
        self._started = time.perf_counter()
        for frame in self.frames:
            self.frame_count += 1
            self.engine.add(frame)
            if self.engine.due():
                yield self._emit(self.engine.take(), smoother)
            if self.on_frame is not None:
                self.on_frame(frame, self.latest)
        tail = self.engine.flush()
        if tail is not None:
            yield self._emit(tail, smoother)

    def close(self) -> None:
        """Close the frame source (a decoding generator closes its file)."""
        close = getattr(self.frames, "close", None)
        if close is not None:
            close()

    def summary(self) -> RunSummary:
        return self.stats.summary(
            self.source,
            stride=self.stride,
            frames=self.frame_count,
            elapsed_s=time.perf_counter() - self._started,
            interrupted=self.interrupted,
        )
