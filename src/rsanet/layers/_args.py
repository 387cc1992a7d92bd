"""Argument checking shared by the transforms: every error names the argument, the value
given and what is allowed."""

from __future__ import annotations

from collections.abc import Sequence

import torch

Size3 = tuple[int, int, int]


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def divides(name: str, value: int, total_name: str, total: int) -> None:
    if total % value:
        raise ValueError(
            f"{name}={value} must divide {total_name}={total} "
            f"(divisors: {[d for d in range(1, total + 1) if total % d == 0]})"
        )


def kernel_size3(name: str, value: int | Sequence[int]) -> Size3:
    """An odd kernel size per axis (t, h, w); an int means the same on all three."""
    size = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(size) != 3 or not all(isinstance(k, int) and k >= 1 for k in size):
        raise ValueError(f"{name} must be an int or 3 positive ints (t, h, w), got {value!r}")
    if any(k % 2 == 0 for k in size):
        raise ValueError(
            f"{name} must be odd on every axis so the neighbourhood is centred, got {value!r}"
        )
    return size  # type: ignore[return-value]


def spatial_stride(name: str, value: int | Sequence[int]) -> int:
    """A spatial stride given as s, (s, s) or (1, s, s); temporal striding is not supported."""
    stride = (value,) if isinstance(value, int) else tuple(value)
    if len(stride) == 3:
        if stride[0] != 1:
            raise ValueError(f"{name} must not stride in time (first entry 1), got {value!r}")
        stride = stride[1:]
    if (
        not stride
        or len(set(stride)) != 1
        or not all(isinstance(s, int) and s >= 1 for s in stride)
    ):
        raise ValueError(
            f"{name} must be a positive int s, (s, s) or (1, s, s) with equal spatial "
            f"strides, got {value!r}"
        )
    return stride[0]


def choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_clip(module: str, x: torch.Tensor, channels: int) -> None:
    """Raise if ``x`` is not an (N, C, T, H, W) tensor with ``channels`` channels."""
    if x.dim() != 5:
        raise ValueError(
            f"{module} expects a 5-D tensor (N, C, T, H, W), got shape {tuple(x.shape)}"
        )
    if x.shape[1] != channels:
        raise ValueError(
            f"{module} expects {channels} input channels (N, {channels}, T, H, W), "
            f"got shape {tuple(x.shape)}"
        )
