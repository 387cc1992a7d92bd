"""MViT: Multiscale Vision Transformers (Fan et al., ICCV 2021), version 1.

A strided 3-D convolution cuts the clip into overlapping space-time patches; the blocks are
grouped in scale stages. The first block of every stage after the first pools its queries
(stride 1x2x2: a quarter of the tokens) and its residual (max-pool), and works at twice the
previous stage's channels and heads; the MLP of a stage's last block widens the channels
to the next stage's. Keys and values are pooled in every block (the stride that keeps their
grid at the first stage's grid / ``kv_stride``). Pooling is a depthwise 3-D convolution per
head followed by a LayerNorm (MViT's "conv" pooling); the class token is never pooled.
Position embeddings are separate for space, time and the class token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rsanet.models.resnet import DropPath, stochastic_depth_rates
from rsanet.models.vit import (
    NORM_EPS,
    Mlp,
    VideoTransformer,
    as_triple,
    init_vit_weights,
    resize_pos_embed,
    resize_time_embed,
)

Size3 = tuple[int, int, int]


def _is_identity(kernel: Size3, stride: Size3) -> bool:
    return all(k == 1 for k in kernel) and all(s == 1 for s in stride)


class TokenPool(nn.Module):
    """Pooling of per-head tokens on their (T, H, W) grid, the class token left out:
    (B, heads, 1 + T*H*W, d) -> (B, heads, 1 + T'*H'*W', d), a depthwise convolution then
    a LayerNorm over all tokens."""

    def __init__(self, head_dim: int, kernel: Size3, stride: Size3) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel)
        self.pool = nn.Conv3d(
            head_dim, head_dim, kernel, stride, padding, groups=head_dim, bias=False
        )
        self.norm = nn.LayerNorm(head_dim, eps=NORM_EPS)

    def forward(self, x: torch.Tensor, thw: Size3) -> tuple[torch.Tensor, Size3]:
        b, h, n, d = x.shape
        cls, grid = x[:, :, :1], x[:, :, 1:]
        grid = grid.reshape(b * h, *thw, d).permute(0, 4, 1, 2, 3)
        grid = self.pool(grid)
        new_thw = tuple(int(s) for s in grid.shape[2:])
        grid = grid.flatten(2).transpose(1, 2).reshape(b, h, -1, d)
        return self.norm(torch.cat([cls, grid], dim=2)), new_thw  # type: ignore[return-value]


class PoolingAttention(nn.Module):
    """Multi-head pooling attention: queries, keys and values pooled on the token grid,
    attention by ``F.scaled_dot_product_attention``: (B, 1 + L, dim) on grid ``thw`` ->
    (B, 1 + L', dim) on the queries' grid."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        qkv_bias: bool = True,
        kernel_q: Size3 = (1, 1, 1),
        stride_q: Size3 = (1, 1, 1),
        kernel_kv: Size3 = (1, 1, 1),
        stride_kv: Size3 = (1, 1, 1),
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        q_pool = not _is_identity(kernel_q, stride_q)
        kv_pool = not _is_identity(kernel_kv, stride_kv)
        self.pool_q = TokenPool(self.head_dim, kernel_q, stride_q) if q_pool else None
        self.pool_k = TokenPool(self.head_dim, kernel_kv, stride_kv) if kv_pool else None
        self.pool_v = TokenPool(self.head_dim, kernel_kv, stride_kv) if kv_pool else None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, thw: Size3) -> tuple[torch.Tensor, Size3]:
        b = x.shape[0]
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        q_thw = thw
        if self.pool_q is not None:
            q, q_thw = self.pool_q(q, thw)
        if self.pool_k is not None and self.pool_v is not None:
            k, _ = self.pool_k(k, thw)
            v, _ = self.pool_v(v, thw)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, q.shape[2], self.num_heads * self.head_dim)
        return self.proj(out), q_thw


class MultiScaleBlock(nn.Module):
    """Pre-norm MViT block: pooling attention with a max-pooled residual when the queries
    are strided, then the MLP ``dim -> mlp_ratio * dim -> dim_out`` whose residual is
    projected (``proj``) when the width changes: (B, 1 + L, dim) -> (B, 1 + L', dim_out)."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        kernel_q: Size3 = (1, 1, 1),
        stride_q: Size3 = (1, 1, 1),
        kernel_kv: Size3 = (1, 1, 1),
        stride_kv: Size3 = (1, 1, 1),
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn = PoolingAttention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            kernel_q=kernel_q,
            stride_q=stride_q,
            kernel_kv=kernel_kv,
            stride_kv=stride_kv,
        )
        self.pool_skip = None
        if any(s > 1 for s in stride_q):
            kernel = tuple(s + 1 if s > 1 else 1 for s in stride_q)
            self.pool_skip = nn.MaxPool3d(kernel, stride_q, tuple(k // 2 for k in kernel))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim_out)
        self.proj = nn.Linear(dim, dim_out) if dim != dim_out else None

    def _skip(self, x: torch.Tensor, thw: Size3) -> torch.Tensor:
        if self.pool_skip is None:
            return x
        b, n, c = x.shape
        grid = x[:, 1:].reshape(b, *thw, c).permute(0, 4, 1, 2, 3)
        grid = self.pool_skip(grid).flatten(2).transpose(1, 2)
        return torch.cat([x[:, :1], grid], dim=1)

    def forward(self, x: torch.Tensor, thw: Size3) -> tuple[torch.Tensor, Size3]:
        branch, new_thw = self.attn(self.norm1(x), thw)
        x = self._skip(x, thw) + self.drop_path(branch)
        normed = self.norm2(x)
        branch = self.mlp(normed)
        if self.proj is not None:
            x = self.proj(normed)
        return x + self.drop_path(branch), new_thw


class MViT(VideoTransformer):
    """Multiscale Vision Transformer (v1): (N, 3, T, H, W) -> (N, num_classes).

    Args:
        img_size, num_frames: the clip the position embeddings are built for (other sizes
            are served by resampling them).
        embed_dim, num_heads: channels and heads of the first stage; every later stage
            doubles both.
        depths: blocks per scale stage (MViT-B: 1, 2, 11, 2).
        patch_kernel, patch_stride, patch_padding: the patch convolution.
        mlp_ratio, qkv_bias: as in ViT.
        pool_kernel: kernel of every query/key/value pooling.
        q_stride: the query (and residual) stride of a stage's first block (stages 2...).
        kv_stride: key/value stride in the first stage, divided by ``q_stride`` at each
            later stage (never below 1).
        drop_rate: dropout before the classifier; drop_path_rate: stochastic depth of the
            last block (linear from 0).
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        num_frames: int = 16,
        in_chans: int = 3,
        num_classes: int = 400,
        embed_dim: int = 96,
        num_heads: int = 1,
        depths: Sequence[int] = (1, 2, 11, 2),
        patch_kernel: Sequence[int] = (3, 7, 7),
        patch_stride: Sequence[int] = (2, 4, 4),
        patch_padding: Sequence[int] = (1, 3, 3),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        pool_kernel: Sequence[int] = (3, 3, 3),
        q_stride: Sequence[int] = (1, 2, 2),
        kv_stride: Sequence[int] = (1, 8, 8),
        drop_rate: float = 0.5,
        drop_path_rate: float = 0.2,
        model_name: str = "MViT",
    ) -> None:
        super().__init__()
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        depths = tuple(int(d) for d in depths)
        if not depths or min(depths) < 1:
            raise ValueError(f"depths needs one positive entry per stage, got {depths}")
        self.model_name = model_name
        self.in_chans = in_chans
        self.num_frames = num_frames
        self.depths = depths
        kernel, stride, padding = (
            as_triple(patch_kernel),
            as_triple(patch_stride),
            as_triple(patch_padding),
        )
        self.patch_embed = nn.Conv3d(in_chans, embed_dim, kernel, stride, padding)
        grid = [
            (size + 2 * p - k) // s + 1
            for size, k, s, p in zip(
                (num_frames, img_size, img_size), kernel, stride, padding, strict=True
            )
        ]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed_spatial = nn.Parameter(torch.zeros(1, grid[1] * grid[2], embed_dim))
        self.pos_embed_temporal = nn.Parameter(torch.zeros(1, grid[0], embed_dim))
        self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, embed_dim))

        pool = as_triple(pool_kernel)
        q_step = as_triple(q_stride)
        kv = as_triple(kv_stride)
        rates = iter(stochastic_depth_rates(sum(depths), drop_path_rate))
        blocks = []
        for stage, count in enumerate(depths):
            dim = embed_dim * 2**stage
            heads = num_heads * 2**stage
            if stage > 0:
                kv = tuple(max(a // b, 1) for a, b in zip(kv, q_step, strict=True))
            for i in range(count):
                last_of_stage = i == count - 1 and stage < len(depths) - 1
                pooled = stage > 0 and i == 0
                blocks.append(
                    MultiScaleBlock(
                        dim,
                        dim * 2 if last_of_stage else dim,
                        heads,
                        mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias,
                        kernel_q=pool if pooled else (1, 1, 1),
                        stride_q=q_step if pooled else (1, 1, 1),
                        kernel_kv=pool,
                        stride_kv=kv,  # type: ignore[arg-type]
                        drop_path=next(rates),
                    )
                )
        self.blocks = nn.ModuleList(blocks)
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features, eps=NORM_EPS)
        self._init_head(num_classes, drop_rate)
        for p in (self.pos_embed_spatial, self.pos_embed_temporal, self.pos_embed_class):
            nn.init.trunc_normal_(p, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_vit_weights)

    def stage_blocks(self) -> list[list[int]]:
        """Indices of the blocks of each scale stage."""
        out, start = [], 0
        for count in self.depths:
            out.append(list(range(start, start + count)))
            start += count
        return out

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, Size3]:
        """Clip (N, 3, T, H, W) -> tokens (N, 1 + T'*H'*W', C) with positions, and
        (T', H', W')."""
        self.check_clip(x)
        x = self.patch_embed(x)
        n, c, t, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (N, T'*H'*W', C), time-major
        spatial = resize_pos_embed(self.pos_embed_spatial, (h, w), num_prefix=0)
        temporal = resize_time_embed(self.pos_embed_temporal, t)
        pos = (spatial.unsqueeze(1) + temporal.unsqueeze(2)).reshape(1, t * h * w, c)
        cls = (self.cls_token + self.pos_embed_class).expand(n, -1, -1)
        return torch.cat([cls, x + pos], dim=1), (t, h, w)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (N, 3, T, H, W) -> normalised tokens (N, 1 + L, num_features) of the last
        stage's grid."""
        x, thw = self.embed(x)
        for block in self.blocks:
            x, thw = block(x, thw)
        return self.norm(x)

    def profile_rows(self) -> dict[str, list[str]]:
        """Rows of ``rsanet profile``'s table: name -> modules (one row per scale stage)."""
        rows = {"embed": ["patch_embed"]}
        for s, indices in enumerate(self.stage_blocks()):
            rows[f"stage{s + 1}"] = [f"blocks.{i}" for i in indices]
        return rows
