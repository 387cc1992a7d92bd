"""Fused GPU kernels for RSA's neighbourhood products, written in Triton (``kernels.py``).

The same contract as :func:`rsanet.layers.native.aggregate` and
:func:`rsanet.layers.native.aggregate_backward`, on CUDA (or ROCm) float32 tensors: the
layer uses them where :func:`available` says so and computes the same products with PyTorch
operators everywhere else (on the CPU the C++ kernels of :mod:`rsanet.layers.native` take
this part). Triton is optional (``pip install rsanet[gpu]``); ``RSANET_TRITON=0`` turns
these kernels off (``RSANET_NATIVE=0`` only the C++ ones). With ``TRITON_INTERPRET=1``
Triton runs them on CPU tensors, which is how the test suite checks them on machines
without a GPU.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util

import torch

from rsanet.layers import config

#: neighbours per block of the per-position products; padded locations per gather program
NEIGHBOUR_BLOCK, LOCATION_BLOCK = 32, 16


@functools.cache
def installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def refusal(op: str, tensors) -> str | None:
    """Why the Triton kernels cannot compute operator ``op`` on these tensors (they take
    float32 GPU tensors; None entries, absent optional operands, are skipped), None if they
    can."""
    if not config.triton_enabled():
        return f"switched off ({config.TRITON_SWITCH}=0)"
    for tensor in tensors:
        if tensor is None:
            continue
        if tensor.device.type != "cuda":
            return f"device {tensor.device.type} is not a GPU"
        if tensor.dtype != torch.float32:
            return f"dtype {tensor.dtype} not supported (float32 only)"
    if not installed():
        return "Triton is not installed"
    return None


def available(*tensors: torch.Tensor) -> bool:
    """Whether the Triton kernels can compute on these tensors (all float32 on a GPU)."""
    return refusal("aggregate", tensors) is None


def _kernels():
    from rsanet.layers.gpu import kernels  # imports Triton: only once a kernel runs

    return kernels


def _power_of_2(size: int, least: int = 1) -> int:
    return max(least, 1 << (size - 1).bit_length())


@functools.lru_cache(maxsize=64)
def _neighbour_offsets(
    padded_size: tuple[int, int], kernel_size: tuple[int, int, int], channels: int, device
) -> torch.Tensor:
    """Offset of every neighbour from a position's first one in a padded channels-last clip
    of (H', W') frames, in (dt, dh, dw) order: (M,) int64."""
    padded_height, padded_width = padded_size
    kt, kh, kw = kernel_size
    dt = torch.arange(kt).view(-1, 1, 1) * padded_height * padded_width
    dh = torch.arange(kh).view(1, -1, 1) * padded_width
    dw = torch.arange(kw).view(1, 1, -1)
    return ((dt + dh + dw) * channels).reshape(-1).to(device)


def _geometry(padded: torch.Tensor, kernel_size: tuple[int, int, int], heads: int) -> dict:
    """The sizes every kernel takes: the chunk's positions, its padded frames, nh, dv, M and
    dv rounded up to a ``tl.dot`` operand (a power of two, at least 16)."""
    _, padded_frames, padded_height, padded_width, channels = padded.shape
    kt, kh, kw = kernel_size
    return {
        "frames": padded_frames - kt + 1,
        "height": padded_height - kh + 1,
        "width": padded_width - kw + 1,
        "padded_height": padded_height,
        "padded_width": padded_width,
        "HEADS": heads,
        "CHANNELS": channels,
        "NEIGHBOURS": kt * kh * kw,
        "CHANNELS_P": _power_of_2(channels, 16),
    }


def _require_contiguous(*tensors: torch.Tensor | None) -> None:
    if not all(t is None or t.is_contiguous() for t in tensors):
        raise ValueError("the fused kernels need contiguous tensors")


def _launching_on(device: torch.device):
    """Triton launches on the current CUDA device: make it the tensors' one."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _positions(geometry: dict) -> tuple[int]:
    return (geometry["frames"] * geometry["height"] * geometry["width"],)


def aggregate(
    khat: torch.Tensor,
    padded: torch.Tensor,
    kernel_size: tuple[int, int, int],
    correlation: torch.Tensor | None,
) -> torch.Tensor:
    """khat (P, nh, M) and the padded values of one chunk (1, T+kt-1, H+kh-1, W+kw-1, dv) ->
    A = khat Pv (P, nh, dv); writes A Pv^T into ``correlation`` (P, nh, M) unless None."""
    _require_contiguous(khat, padded, correlation)
    heads, channels = khat.shape[1], padded.shape[-1]
    geometry = _geometry(padded, kernel_size, heads)
    aggregated = khat.new_empty(khat.shape[0], heads, channels)
    with _launching_on(padded.device):
        _kernels().aggregate_forward[_positions(geometry)](
            khat,
            padded,
            _neighbour_offsets(padded.shape[2:4], kernel_size, channels, padded.device),
            aggregated,
            aggregated if correlation is None else correlation,  # not written without it
            **geometry,
            HEADS_P=_power_of_2(heads, 16),
            BLOCK=NEIGHBOUR_BLOCK,
            RELATIONAL=correlation is not None,
        )
    return aggregated


def aggregate_backward(
    khat: torch.Tensor,
    grad_correlation: torch.Tensor | None,
    aggregated: torch.Tensor,
    grad_aggregated: torch.Tensor,
    padded: torch.Tensor,
    grad_khat: torch.Tensor,
    correlation: torch.Tensor | None,
    grad_padded: torch.Tensor,
    kernel_size: tuple[int, int, int],
) -> None:
    """Backward of :func:`aggregate` in place, as
    :func:`rsanet.layers.native.aggregate_backward`: ``grad_aggregated`` (in: the basic
    context's part) gets A's whole gradient, ``grad_khat`` and ``correlation`` are written,
    the values' gradient is added onto ``grad_padded``. All contiguous."""
    _require_contiguous(khat, grad_correlation, aggregated, grad_aggregated, padded, grad_khat)
    _require_contiguous(correlation, grad_padded)
    heads, channels = khat.shape[1], padded.shape[-1]
    geometry = _geometry(padded, kernel_size, heads)
    relational = grad_correlation is not None
    kernels = _kernels()
    with _launching_on(padded.device):
        kernels.aggregate_backward[_positions(geometry)](
            grad_khat if grad_correlation is None else grad_correlation,  # not read without it
            aggregated,
            grad_aggregated,
            padded,
            _neighbour_offsets(padded.shape[2:4], kernel_size, channels, padded.device),
            grad_khat,
            grad_khat if correlation is None else correlation,  # not written without it
            **geometry,
            HEADS_P=_power_of_2(heads, 16),
            BLOCK=NEIGHBOUR_BLOCK,
            RELATIONAL=relational,
        )
        locations = padded.numel() // channels
        kernels.spread_backward[(-(-locations // LOCATION_BLOCK),)](
            khat,
            khat if grad_correlation is None else grad_correlation,  # not read without it
            aggregated,
            grad_aggregated,
            grad_padded,
            **geometry,
            HEADS_P=_power_of_2(heads),
            BLOCK=LOCATION_BLOCK,
            RELATIONAL=relational,
        )
