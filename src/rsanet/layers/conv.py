"""Convolution transforms: spatial (1 x k x k, TSN style) and spatio-temporal (k x k x k)."""

from __future__ import annotations

from torch import nn

from rsanet.layers import _args


def spatial_conv(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Conv3d:
    """1 x k x k convolution, no temporal mixing: (N, C, T, H, W) -> (N, C', T, H/s, W/s)."""
    k = _args.kernel_size3("kernel_size", (1, kernel_size, kernel_size))[1]
    s = _args.spatial_stride("stride", stride)
    return nn.Conv3d(
        in_channels,
        out_channels,
        (1, k, k),
        (1, s, s),
        (0, k // 2, k // 2),
        groups=groups,
        bias=False,
    )


def spatiotemporal_conv(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Conv3d:
    """k x k x k convolution (temporal stride 1): (N, C, T, H, W) -> (N, C', T, H/s, W/s)."""
    k = _args.kernel_size3("kernel_size", kernel_size)
    s = _args.spatial_stride("stride", stride)
    return nn.Conv3d(
        in_channels, out_channels, k, (1, s, s), tuple(x // 2 for x in k), groups=groups, bias=False
    )
