"""Export to ONNX and TorchScript, with a parity check against PyTorch, and the ONNX Runtime
backend that runs an exported model in ``rsanet predict --backend onnxruntime``; and the
weights-only ``safetensors`` format to share a model (``NAME.safetensors`` and ``NAME.json``,
see :mod:`rsanet.models.safetensors_file`), which :func:`rsanet.load_model` and
``rsanet predict --checkpoint`` load without pickle.

Exported models take a clip of a fixed shape (N, 3, T, size, size) (the shape given at export)
and return logits (N, K); an ONNX export with ``dynamic_batch`` takes any N (its parity is
checked at batches 1 and 3), so ``rsanet serve`` runs the windows of all its cameras through
it in one call. RSA and local self-attention export as plain operators: the
neighbourhood gather becomes one shifted slice per neighbour, processed a few frames at a time
(``unfold_mb`` bounds the memory of one chunk; larger chunks make smaller graphs). The class
names and the model name are stored in the file (ONNX metadata, TorchScript extra file).

Files are serialised in memory and written atomically (:mod:`rsanet.atomic`): a failed or
interrupted export, or a full disk, leaves the previous file at the path intact and no
partial file; temporaries left beside it by a killed export are removed by the next one.
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rsanet.atomic import atomic_write, remove_stale_temporaries

FORMATS = ("onnx", "torchscript", "safetensors")
ONNX_OPSET = 17
#: ONNX metadata key / TorchScript extra file holding the export's description
METADATA_KEY = "rsanet"
TORCHSCRIPT_EXTRA = "rsanet.json"
INPUT_NAME, OUTPUT_NAME = "clip", "logits"
#: the largest example clip an export accepts, in bytes (float32): far above any real input
MAX_CLIP_BYTES = 2**31


@dataclass
class ExportResult:
    """An exported file: its format, input shape, the max absolute difference of its logits
    from PyTorch's on a random clip (None when not checked) and the export time."""

    path: Path
    format: str
    input_shape: tuple[int, ...]
    max_abs_diff: float | None
    export_s: float
    #: every file written (the safetensors format writes a JSON beside the tensors)
    files: tuple[Path, ...] = ()
    #: an ONNX file taking any batch size (its parity checked at batches 1 and 3)
    dynamic_batch: bool = False
    #: int8: max abs difference / the largest |logit| of PyTorch's (None: not int8)
    relative_diff: float | None = None

    def describe(self) -> str:
        parity = (
            "not checked"
            if self.max_abs_diff is None
            else f"max abs difference vs PyTorch {self.max_abs_diff:.3g}"
        )
        if self.relative_diff is not None:
            parity += f" ({100 * self.relative_diff:.2g} % of the largest logit; int8)"
        written = " and ".join(str(f) for f in self.files) if self.files else str(self.path)
        shape = tuple(self.input_shape)
        if self.dynamic_batch:
            shape = "(N, " + ", ".join(str(d) for d in shape[1:]) + "), any batch N"
            parity = parity if self.max_abs_diff is None else f"{parity} at batches 1 and 3"
        return (
            f"exported {self.format} to {written} (input {shape}, "
            f"{self.export_s:.1f} s); parity: {parity}"
        )


def context_metadata(model: nn.Module) -> dict[str, Any]:
    """What a predictor on the exported file must know of a model that reads context
    frames (``context_frames``, ``context_s``): the clip's first frames are the seconds
    before the window. Empty for every other model."""
    count = int(getattr(model, "context_frames", 0) or 0)
    return {"context_frames": count, "context_s": float(model.context_s)} if count else {}


def example_clip(frames: int, size: int, *, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A reproducible normalised-looking clip (batch, 3, frames, size, size)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, frames, size, size, generator=generator)


def _prepared(model: nn.Module, unfold_mb: float | None) -> nn.Module:
    """An evaluation-mode copy of ``model`` whose attention layers unfold ``unfold_mb`` MiB of
    neighbourhoods per chunk (fewer, larger chunks: a smaller exported graph)."""
    if unfold_mb is not None and not (math.isfinite(unfold_mb) and unfold_mb >= 0):
        raise ValueError(f"unfold_mb must be a finite number of MiB >= 0, got {unfold_mb}")
    model = copy.deepcopy(model).eval()
    if unfold_mb:
        for module in model.modules():
            if hasattr(module, "max_unfold_bytes"):
                module.max_unfold_bytes = int(unfold_mb * 2**20)
    return model


def _check_shape(frames: int, size: int, batch: int) -> None:
    """Positive integers, and an example clip of at most :data:`MAX_CLIP_BYTES`."""
    for name, value in (("frames", frames), ("size", size), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    clip_bytes = 4 * batch * 3 * frames * size * size
    if clip_bytes > MAX_CLIP_BYTES:
        raise ValueError(
            f"a clip ({batch}, 3, {frames}, {size}, {size}) takes {clip_bytes / 2**30:.3g} GiB, "
            f"more than the {MAX_CLIP_BYTES / 2**30:g} GiB an export accepts: lower the frames "
            "or the size"
        )


def _onnx_bytes(
    module: nn.Module,
    example: torch.Tensor,
    input_name: str,
    output_name: str,
    dynamic_batch: bool,
) -> bytes:
    """``module`` (one input, one output) exported to ONNX and serialised."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            buffer,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[input_name],
            output_names=[output_name],
            do_constant_folding=True,
            dynamic_axes=(
                {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
            ),
        )
    return buffer.getvalue()


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    frames: int,
    size: int,
    batch: int = 1,
    metadata: dict[str, Any] | None = None,
    unfold_mb: float | None = 64,
    dynamic_batch: bool = False,
    calibration: Iterable[torch.Tensor] | None = None,
    float_from: str | None = None,
) -> Path:
    """Export ``model`` to ONNX (opset 17, TorchScript-based exporter) for clips
    (batch, 3, frames, size, size); ``dynamic_batch``: the batch dimension (of the clip and
    of the logits) is left free, named ``batch``. ``metadata`` is stored as JSON under
    ``rsanet``. The file is written atomically (a full disk raises DiskFullError, the old
    file intact).

    With ``calibration`` (normalised clips (n, 3, frames, size, size)) the file is int8:
    quantized by ONNX Runtime and calibrated on those clips. Only for a network without
    transforms (TSN, TSM): ValueError for one whose transforms (RSA) int8 runs in PyTorch
    between ONNX Runtime segments (``predict``/``serve --precision int8``). ``float_from``
    (int8 only; a block, a stage or ``fc``): that block and the rest of the network stay
    in float in the file, joined to the int8 part before them
    (:func:`rsanet.inference.int8.append_float_tail`)."""
    import onnx

    _check_shape(frames, size, batch)
    if float_from is not None and calibration is None:
        raise ValueError("float_from is for int8 (it keeps the layers after it in float)")
    if calibration is not None:
        from rsanet.inference.int8 import transform_layers
        from rsanet.models.resnet import ResNetTSN

        layers = transform_layers(model)
        if layers or not isinstance(model, ResNetTSN):
            what = f"{len(layers)} transform layers ({layers[0]}, ...)" if layers else "no ResNet"
            raise ValueError(
                f"an int8 ONNX file holds a ResNet without transforms (TSN, TSM); this model "
                f"has {what}, which int8 runs in PyTorch between ONNX Runtime segments: run "
                "it with rsanet predict/serve --precision int8, or export it in fp32"
            )
    path = Path(path)
    prepared, tail = _prepared(model, unfold_mb), None
    if calibration is not None:  # the int8 path's segments: its stem suits ONNX Runtime
        from rsanet.inference.int8 import split_at_transforms

        try:
            prepared, *rest = split_at_transforms(prepared, float_from)[0]
        except ValueError as error:
            raise ValueError(f"float_from: {error}") from None
        tail = rest[0] if rest else None
    clip = example_clip(frames, size, batch=batch)
    head_output = OUTPUT_NAME if tail is None else prepared.output_names[0]
    exported = _onnx_bytes(prepared, clip, INPUT_NAME, head_output, dynamic_batch)
    if calibration is not None:
        from rsanet.inference.int8 import append_float_tail, quantize_onnx

        if dynamic_batch:
            samples = [(clip,) for clip in calibration]
        else:  # the file takes batches of exactly ``batch`` clips
            samples = [
                (clip[first : first + batch],)
                for clip in calibration
                for first in range(0, len(clip) - batch + 1, batch)
            ]
        if not samples:
            raise ValueError("int8 calibration needs at least one clip")
        exported = quantize_onnx(exported, samples, [INPUT_NAME])
        if tail is not None:
            with torch.no_grad():
                features = prepared(clip)
            tail_bytes = _onnx_bytes(
                tail, features, tail.input_names[0], OUTPUT_NAME, dynamic_batch
            )
            exported = append_float_tail(exported, tail_bytes)
    proto = onnx.load_model_from_string(exported)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata or {})
    data = proto.SerializeToString()
    return atomic_write(path, lambda handle: handle.write(data))


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    *,
    frames: int,
    size: int,
    batch: int = 1,
    metadata: dict[str, Any] | None = None,
    unfold_mb: float | None = 64,
) -> Path:
    """Trace ``model`` (``torch.jit.trace``) on clips (batch, 3, frames, size, size) and save
    it atomically; ``metadata`` goes to the extra file ``rsanet.json``."""
    _check_shape(frames, size, batch)
    prepared = _prepared(model, unfold_mb)
    clip = example_clip(frames, size, batch=batch)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(prepared, clip, check_trace=False)
    extra = {TORCHSCRIPT_EXTRA: json.dumps(metadata or {})}
    # serialised in memory first: torch's file writer aborts the process on a write error
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is still supported
        torch.jit.save(traced, buffer, _extra_files=extra)
    return atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def export_safetensors(
    model: nn.Module,
    path: str | Path,
    *,
    frames: int,
    size: int,
    metadata: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write the weights of ``model`` to ``NAME.safetensors`` and their description to
    ``NAME.json`` (:func:`rsanet.models.save_weights_file`), each atomically. ``metadata``
    may give ``classes``, ``weights`` (``"ema"`` or ``"raw"``: which weights ``model``
    holds), ``mean`` and ``std`` (default ImageNet's, as in training)."""
    from rsanet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from rsanet.models import save_weights_file

    _check_shape(frames, size, 1)
    metadata = dict(metadata or {})
    metadata.pop("model", None)  # recorded from the model itself
    return save_weights_file(
        path,
        model,
        weights=metadata.pop("weights", "raw"),
        classes=metadata.pop("classes", None),
        num_frames=frames,
        input_size=(size, size),
        mean=metadata.pop("mean", IMAGENET_MEAN),
        std=metadata.pop("std", IMAGENET_STD),
        **{k: v for k, v in metadata.items() if k not in ("num_frames", "size")},
    )


class SafetensorsBackend:
    """A weights-only safetensors file rebuilt into its PyTorch model (no pickle)."""

    def __init__(self, path: str | Path) -> None:
        from rsanet.models import load_model, read_weights_file

        self.path = Path(path)
        self.metadata = {k: v for k, v in read_weights_file(self.path).items() if k != "state_dict"}
        self.model = load_model(self.path)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(clip)


#: ONNX Runtime's GPU execution providers, in order of preference
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def execution_providers(device: str = "cpu") -> list:
    """ONNX Runtime's providers for ``device``: the CPU's, or for ``cuda[:N]`` TensorRT and
    CUDA (those this onnxruntime has) on GPU N, then the CPU's for the ops they lack.
    ValueError, naming the fix, when this onnxruntime has no GPU provider."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    kind, _, index = device.partition(":")
    if kind != "cuda" or not (index.isdigit() or not index):
        raise ValueError(f"device: expected cpu, cuda or cuda:N, got {device!r}")
    available = ort.get_available_providers()
    gpu = [name for name in GPU_PROVIDERS if name in available]
    if not gpu:
        raise ValueError(
            f"device {device}: this onnxruntime has no GPU execution provider (it has "
            f"{', '.join(available)}); install onnxruntime-gpu (CUDA, TensorRT) or use "
            "device cpu"
        )
    options = {"device_id": int(index or 0)}
    return [(name, options) for name in gpu] + ["CPUExecutionProvider"]


class OnnxRuntimeBackend:
    """An exported ONNX model run by ONNX Runtime (on the CPU, or a GPU: ``device``
    cuda[:N], see :func:`execution_providers`): clip (N, 3, T, H, W) -> logits
    (N, K) as a tensor. ``input_shape`` is the shape fixed at export; ``metadata`` what the
    export stored (``classes``, ``model``, ``num_frames``, ``size``)."""

    def __init__(
        self, path: str | Path, *, threads: int | None = None, device: str = "cpu"
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise ImportError(
                "the onnxruntime backend needs onnxruntime: pip install 'rsanet[export]'"
            ) from error
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX file at {str(self.path)!r}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = execution_providers(device)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as error:  # onnxruntime's own exception types
            reason = " ".join(str(error).split())[:200]
            raise ValueError(
                f"{self.path} is not an ONNX model ONNX Runtime can run: {reason}"
            ) from None
        node = self.session.get_inputs()[0]
        self.input_name = node.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "{}")
        try:
            self.metadata: dict[str, Any] = json.loads(raw)
        except json.JSONDecodeError:
            self.metadata = {}

    @property
    def num_frames(self) -> int | None:
        return (
            self.input_shape[2] if len(self.input_shape) == 5 and self.input_shape[2] > 0 else None
        )

    @property
    def size(self) -> int | None:
        return (
            self.input_shape[3] if len(self.input_shape) == 5 and self.input_shape[3] > 0 else None
        )

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        array = clip.detach().cpu().numpy() if isinstance(clip, torch.Tensor) else clip
        expected = self.input_shape
        if len(array.shape) != len(expected) or any(
            e > 0 and e != a for e, a in zip(expected, array.shape, strict=True)
        ):
            raise ValueError(
                f"{self.path.name} was exported for clips {expected}, got {tuple(array.shape)} "
                "(export again with --frames/--size of the clips you predict on)"
            )
        (logits,) = self.session.run(
            None, {self.input_name: np.ascontiguousarray(array, np.float32)}
        )
        return torch.from_numpy(logits)


class TorchScriptBackend:
    """A TorchScript file saved by :func:`export_torchscript`: clip -> logits."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        extra = {TORCHSCRIPT_EXTRA: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra)
        self.module.eval()
        self.metadata: dict[str, Any] = json.loads(extra[TORCHSCRIPT_EXTRA] or "{}")

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(clip)


def max_abs_difference(model: nn.Module, backend: Any, clip: torch.Tensor) -> float:
    """max |backend(clip) - model(clip)| over the logits (ValueError when their shapes
    differ: a file that ignores the batch it is given)."""
    with torch.inference_mode():
        expected = model.eval()(clip)
    got = backend(clip)
    if tuple(got.shape) != tuple(expected.shape):
        raise ValueError(
            f"the exported model returned logits {tuple(got.shape)} for a clip "
            f"{tuple(clip.shape)}; PyTorch returns {tuple(expected.shape)}"
        )
    return float((got.float() - expected.float()).abs().max())


def export_model(
    model: nn.Module,
    path: str | Path,
    format: str,
    *,
    frames: int,
    size: int,
    batch: int = 1,
    metadata: dict[str, Any] | None = None,
    check: bool = True,
    unfold_mb: float | None = 64,
    dynamic_batch: bool = False,
    calibration: Iterable[torch.Tensor] | None = None,
    float_from: str | None = None,
) -> ExportResult:
    """Export ``model`` (``format`` ``onnx``, ``torchscript`` or ``safetensors``) and,
    with ``check``, load the file back and compare its logits with PyTorch's on a random
    clip. The file is replaced atomically; temporaries a killed export left beside it are
    removed first. For ``safetensors`` (:func:`export_safetensors`) ``path`` names the
    tensor file (or the stem) and a JSON is written beside it; ``frames`` and ``size`` are
    recorded, ``batch`` and ``unfold_mb`` play no part. ``dynamic_batch`` (ONNX only): the
    file takes any batch size, checked at batches 1 and 3. ``calibration`` (ONNX only):
    an int8 file (see :func:`export_onnx`), with the layers from ``float_from`` on in
    float; its parity is also given relative to the largest logit
    (:attr:`ExportResult.relative_diff`)."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if dynamic_batch and format != "onnx":
        raise ValueError(f"dynamic_batch is for the onnx format, not {format}")
    if calibration is not None and format != "onnx":
        raise ValueError(f"int8 is exported to the onnx format, not {format}")
    metadata = {"num_frames": frames, "size": size, **(metadata or {})}
    start = time.perf_counter()
    if format == "safetensors":
        files = export_safetensors(model, path, frames=frames, size=size, metadata=metadata)
        path = files[0]
    else:
        remove_stale_temporaries(path)  # left beside the file by a killed export
        options: dict[str, Any] = {"dynamic_batch": True} if dynamic_batch else {}
        if dynamic_batch:
            metadata["dynamic_batch"] = True
        if calibration is not None:
            calibration = list(calibration)
            options["calibration"] = calibration
            metadata["precision"] = "int8"
            if float_from is not None:
                options["float_from"] = metadata["float_from"] = float_from
        exporter = export_onnx if format == "onnx" else export_torchscript
        path = exporter(
            model,
            path,
            frames=frames,
            size=size,
            batch=batch,
            metadata=metadata,
            unfold_mb=unfold_mb,
            **options,
        )
        files = (Path(path),)
    export_s = time.perf_counter() - start
    difference = relative = None
    if check:
        backends = {
            "onnx": OnnxRuntimeBackend,
            "torchscript": TorchScriptBackend,
            "safetensors": SafetensorsBackend,
        }
        backend = backends[format](path)
        batches = (1, 3) if dynamic_batch else (batch,)
        clips = [example_clip(frames, size, batch=n, seed=1) for n in batches]
        if calibration is not None:  # random clips are far from what int8 was calibrated on
            clips = [calibration[0][:n] for n in batches]
        difference = max(max_abs_difference(model, backend, clip) for clip in clips)
        if calibration is not None:
            with torch.inference_mode():
                largest = max(float(model.eval()(clip).abs().max()) for clip in clips)
            relative = difference / max(largest, 1e-12)
    return ExportResult(
        Path(path),
        format,
        (-1 if dynamic_batch else batch, 3, frames, size, size),
        difference,
        export_s,
        tuple(files),
        dynamic_batch,
        relative,
    )
