"""Local multi-head self-attention over a t x h x w neighbourhood (the paper's baseline).

    y_n = softmax(q_n K_n^T + q_n P^T) V_n

per head, with K_n, V_n the keys and values of the M neighbours of n and P (M x dk) learned
relative position embeddings shared by the heads. Neighbours outside the clip are masked
out of the softmax (they are not zero keys). The query is scaled by dk^-1/2, which a learned
query projection could absorb, so the formula is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rsanet.layers import _args
from rsanet.layers.ops import unfold_channels_last


class LocalSelfAttention(nn.Module):
    """(N, in_channels, T, H, W) -> (N, out_channels, T, H/stride, W/stride).

    Output channels are head-major (channel = head * value_channels + value_channel).
    A spatial stride is applied as 3x3 average pooling after attention, as for RSA.
    """

    max_unfold_bytes: int = 32 * 2**20

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_heads: int = 8,
        key_channels: int | None = None,
        kernel_size: int | Sequence[int] = (5, 7, 7),
        stride: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        self.in_channels = _args.positive_int("in_channels", in_channels)
        self.out_channels = _args.positive_int("out_channels", out_channels)
        self.num_heads = _args.positive_int("num_heads", num_heads)
        _args.divides("num_heads", num_heads, "out_channels", out_channels)
        self.value_channels = out_channels // num_heads
        self.key_channels = _args.positive_int(
            "key_channels", self.value_channels if key_channels is None else key_channels
        )
        self.kernel_size = _args.kernel_size3("kernel_size", kernel_size)
        self.stride = _args.spatial_stride("stride", stride)
        m = math.prod(self.kernel_size)
        dk = self.key_channels
        self.projection = nn.Conv3d(in_channels, 2 * num_heads * dk + out_channels, 1, bias=False)
        self.position_embedding = nn.Parameter(torch.randn(m, dk) * dk**-0.5)
        self.pool = (
            nn.AvgPool3d((1, 3, 3), (1, self.stride, self.stride), (0, 1, 1))
            if self.stride > 1
            else nn.Identity()
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, num_heads={self.num_heads}, "
            f"key_channels={self.key_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )

    def macs(self, frames: int, height: int, width: int) -> int:
        """Multiply-accumulates of one clip: projection, content and position logits, and
        the weighted sum of values (softmax and pooling not counted)."""
        nh, dk, dv = self.num_heads, self.key_channels, self.value_channels
        m = math.prod(self.kernel_size)
        per_position = self.in_channels * self.projection.out_channels + nh * m * (2 * dk + dv)
        return frames * height * width * per_position

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _args.check_clip(type(self).__name__, x, self.in_channels)
        n, _, t, h, w = x.shape
        nh, dk = self.num_heads, self.key_channels
        kt, kh, kw = self.kernel_size
        features = self.projection(x).permute(0, 2, 3, 4, 1)  # channels-last (N, T, H, W, C)
        queries = features[..., : nh * dk] * dk**-0.5
        pad = (0, 0, kw // 2, kw // 2, kh // 2, kh // 2, kt // 2, kt // 2)
        keys_values = F.pad(features[..., nh * dk :], pad)
        inside = F.pad(x.new_ones(1, t, h, w, 1), pad)  # 1 where a neighbour exists

        per_frame = n * h * w * math.prod(self.kernel_size) * keys_values.shape[-1]
        chunk = max(1, min(t, self.max_unfold_bytes // (per_frame * x.element_size())))
        outputs = []
        for start in range(0, t, chunk):
            stop = min(t, start + chunk)
            halo = slice(start, stop + kt - 1)
            outputs.append(
                self._attend(queries[:, start:stop], keys_values[:, halo], inside[:, halo])
            )
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
        out = out.reshape(n, t, h, w, self.out_channels).permute(0, 4, 1, 2, 3)
        return self.pool(out)

    def _attend(
        self, queries: torch.Tensor, keys_values: torch.Tensor, inside: torch.Tensor
    ) -> torch.Tensor:
        """queries (N, T', H, W, nh*dk), padded channels-last keys+values
        (N, T'+kt-1, H+kh-1, W+kw-1, nh*(dk+dv)) and validity (1, T'+kt-1, ..., 1)
        -> (N, T', H, W, nh, dv)."""
        nh, dk, dv = self.num_heads, self.key_channels, self.value_channels
        n, t, h, w = queries.shape[:4]
        queries = queries.reshape(-1, nh, dk)  # (P, nh, dk)
        neighbours = unfold_channels_last(keys_values, self.kernel_size)  # (P, M, C)
        m = neighbours.shape[1]
        keys = neighbours[..., : nh * dk].reshape(-1, m, nh, dk)
        values = neighbours[..., nh * dk :].reshape(-1, m, nh, dv)
        logits = torch.einsum("phc,pmhc->phm", queries, keys)
        logits = logits + queries @ self.position_embedding.t()
        valid = unfold_channels_last(inside, self.kernel_size).reshape(1, t * h * w, 1, m)
        logits = logits.reshape(n, t * h * w, nh, m).masked_fill(valid == 0, float("-inf"))
        attention = logits.softmax(dim=-1).reshape(-1, nh, m)
        return torch.einsum("phm,pmhv->phv", attention, values).reshape(n, t, h, w, nh, dv)
