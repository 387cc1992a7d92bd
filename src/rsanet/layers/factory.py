"""One factory for every transform, so a network can put any of them at any position."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from rsanet.layers.conv import spatial_conv, spatiotemporal_conv
from rsanet.layers.rsa import RSA
from rsanet.layers.self_attention import LocalSelfAttention
from rsanet.layers.temporal_shift import TemporalShift


def _tsm(
    in_channels: int, out_channels: int, stride: int = 1, *, fold_div: int = 8, kernel_size: int = 3
) -> nn.Module:
    return nn.Sequential(
        TemporalShift(fold_div), spatial_conv(in_channels, out_channels, kernel_size, stride)
    )


TRANSFORMS: dict[str, Callable[..., nn.Module]] = {
    "conv2d": lambda i, o, stride=1, **kw: spatial_conv(i, o, stride=stride, **kw),
    "conv3d": lambda i, o, stride=1, **kw: spatiotemporal_conv(i, o, stride=stride, **kw),
    "tsm": _tsm,
    "self_attention": lambda i, o, stride=1, **kw: LocalSelfAttention(i, o, stride=stride, **kw),
    "rsa": lambda i, o, stride=1, **kw: RSA(i, o, stride=stride, **kw),
}


def build_transform(
    name: str, in_channels: int, out_channels: int, stride: int = 1, **options
) -> nn.Module:
    """A transform (N, in_channels, T, H, W) -> (N, out_channels, T, H/stride, W/stride).

    name: ``conv2d`` (1 x k x k), ``conv3d`` (k x k x k), ``tsm`` (temporal shift, then
    1 x k x k), ``self_attention`` (:class:`LocalSelfAttention`) or ``rsa`` (:class:`RSA`);
    ``options`` go to that transform's constructor (e.g. ``kernel_size``, ``num_heads``).
    """
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; known: {sorted(TRANSFORMS)}")
    try:
        return TRANSFORMS[name](in_channels, out_channels, stride=stride, **options)
    except TypeError as error:  # an option the transform does not take
        raise ValueError(f"transform {name!r}: {error}") from None


def set_activation_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Turn activation checkpointing of every RSA layer in ``model`` on or off; returns how
    many layers were set. In training each then keeps only its input for backward and runs
    its forward again there: less memory for one more forward of those layers."""
    layers = [m for m in model.modules() if isinstance(m, RSA)]
    for layer in layers:
        layer.activation_checkpointing = enabled
    return len(layers)
