"""The numeric precision a model runs in for inference: one switch, checked against the
machine, with one clear notice when it falls back.

- ``fp32``: the model as trained.
- ``bf16``: PyTorch autocast to bfloat16 (convolutions and linear layers); needs a CPU with
  bfloat16 instructions (AVX512-BF16 or AMX), or a GPU that supports it. RSA layers keep
  float32 (see :class:`rsanet.layers.RSA`).
- ``fp16``: autocast to float16 on a CUDA GPU (``--half``).
- ``int8``: the ResNet family with its convolutions quantized for ONNX Runtime's int8
  kernels, calibrated on clips (:mod:`rsanet.inference.int8`); needs a CPU with VNNI
  (AVX512-VNNI, AVX-VNNI or AMX).

A precision the device cannot run at all (fp16 on a CPU, int8 on a GPU) is a
:class:`PrecisionError`. One whose instructions this CPU lacks falls back to fp32 with a
warning: it would run, but slower than fp32 (emulated), which must never happen silently.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger("rsanet.inference")

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
#: CPU flags (``/proc/cpuinfo``) that make each reduced precision faster than fp32
CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "int8": ("avx512_vnni", "avx_vnni", "amx_int8")}
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(ValueError):
    """A precision this device cannot run (the message says which can), or an int8 option
    that does not fit the model; ``field``: the setting at fault."""

    def __init__(self, message: str, field: str = "precision") -> None:
        super().__init__(message)
        self.field = field


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (None where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return None


def _missing_cpu_support(precision: str) -> str | None:
    flags = cpu_flags()
    wanted = CPU_FLAGS[precision]
    if flags is None:
        return None  # cannot tell (not Linux): trust the request
    if flags.isdisjoint(wanted):
        return f"this CPU has none of {', '.join(wanted)}"
    return None


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        expected = ", ".join(PRECISIONS)
        raise PrecisionError(f"precision: expected one of {expected}, got {precision!r}")
    return precision


def _runs_bf16_natively() -> bool:
    """Whether this CPU has bfloat16 instructions that PyTorch's oneDNN uses (no notice)."""
    return _missing_cpu_support("bf16") is None and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """The precision that will run for ``precision`` on ``device``: itself, or fp32 after a
    warning when the CPU lacks the instructions. PrecisionError when the device cannot run
    it at all."""
    check_precision(precision)
    kind = torch.device(device).type
    if precision == "fp32":
        return precision
    if precision == "fp16" and kind != "cuda":
        raise PrecisionError(
            "fp16 (--half) runs on a CUDA GPU (--device cuda); on a CPU use bf16 or int8"
        )
    if precision == "int8" and kind != "cpu":
        raise PrecisionError(
            "int8 runs on the CPU (ONNX Runtime's VNNI kernels); on a GPU use fp16 or bf16"
        )
    if precision == "bf16" and kind == "cuda":
        if not torch.cuda.is_bf16_supported():
            raise PrecisionError("bf16: this GPU has no bfloat16 support; use fp16 (--half)")
        return precision
    reason = _missing_cpu_support(precision) if kind == "cpu" else None
    if reason is None and precision == "bf16" and kind == "cpu" and not _runs_bf16_natively():
        reason = "PyTorch's oneDNN has no bfloat16 kernels for this CPU"
    if reason is not None:
        _notice(f"{precision} asked, but {reason}: running fp32 (it would be slower, emulated)")
        return "fp32"
    return precision


@functools.cache
def _notice(text: str) -> None:
    """One warning per distinct text and process."""
    logger.warning("rsanet: %s", text)


class AutocastModel(nn.Module):
    """``model`` run under autocast to ``dtype`` without gradients: clip -> float32 logits."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    @torch.inference_mode()
    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        with torch.autocast(clip.device.type, dtype=self.dtype):
            return self.model(clip).float()


class ChannelsLastModel(nn.Module):
    """``model`` given its clips (N, C, T, H, W) in channels-last memory order (C the
    fastest-varying dimension), the order oneDNN's CPU convolutions read fastest, as
    training's ``train.channels_last``: the same logits up to float rounding, in less time
    for the ResNet family (``benchmarks/inference.py`` measures both orders in one run)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.dim() == 5:
            clip = clip.contiguous(memory_format=torch.channels_last_3d)
        return self.model(clip)


def prepare_model(
    model: nn.Module,
    precision: str = "fp32",
    *,
    device: str | torch.device = "cpu",
    calibration: Callable[[], Iterable[torch.Tensor]] | None = None,
    threads: int | None = None,
    float_from: str | None = None,
    channels_last: bool = True,
) -> nn.Module:
    """``model`` on ``device`` in evaluation mode, running in ``precision`` (see the module
    docstring): clip (N, 3, T, S, S) -> logits (N, K) in float32.

    ``channels_last``: on a CPU, a ResNet-family model in fp32 or bf16 is fed its clips in
    channels-last memory order (:class:`ChannelsLastModel`; int8 lays its own tensors out).
    False feeds them as given.

    ``calibration`` gives the int8 calibration clips (normalised model inputs), called only
    for int8. A model outside the ResNet family falls back to fp32 for int8, with a warning.
    ``float_from`` (int8; a block ``layer3.5``, a stage ``layer4`` or ``fc``): that block
    and everything after it run in float32 (:func:`rsanet.inference.int8.quantize_resnet`);
    PrecisionError (field ``float_from``) for another precision or a name not in the model.
    """
    if float_from is not None and precision != "int8":
        raise PrecisionError(
            f"{float_from!r} keeps the last layers of an int8 network in float; it needs "
            f"precision int8, not {precision}",
            field="float_from",
        )
    from rsanet.models.resnet import ResNetTSN

    precision = resolve_precision(precision, device)
    model = model.to(device).eval()
    if precision != "int8":
        prepared = AutocastModel(model, _DTYPES[precision]) if precision in _DTYPES else model
        on_cpu = torch.device(device).type == "cpu"
        if channels_last and on_cpu and isinstance(model, ResNetTSN):
            return ChannelsLastModel(prepared)
        return prepared
    from rsanet.inference.int8 import quantize_resnet

    if not isinstance(model, ResNetTSN):
        _notice(f"int8 runs the ResNet family (TSN, TSM, RSANet); {type(model).__name__} runs fp32")
        return model
    if calibration is None:
        raise ValueError("int8 needs calibration clips (the calibration argument)")
    if float_from is not None:
        from rsanet.inference.int8 import float_tail_start

        try:
            float_tail_start(model, float_from)
        except ValueError as error:
            raise PrecisionError(str(error), field="float_from") from None
    # the transforms' own GEMMs and convolutions (RSA's projection and filters) in
    # bfloat16 where the CPU has it, the rest of them in float32
    transform_dtype = torch.bfloat16 if _runs_bf16_natively() else None
    return quantize_resnet(
        model,
        calibration(),
        threads=threads,
        transform_dtype=transform_dtype,
        float_from=float_from,
    )
