"""Image-transformer pieces shared by the video transformers (ViT / DeiT layout).

* :class:`PatchEmbed3d`: non-overlapping t x p x p patches (t = 1: ViT's per-frame patches;
  t > 1: ViViT's tubelets) projected by one strided 3-D convolution ``proj``.
* :class:`Attention`: multi-head self-attention through
  :func:`torch.nn.functional.scaled_dot_product_attention`, fused ``qkv`` projection.
* :class:`Mlp`, :class:`Block`: the pre-norm transformer block of ViT.
* :class:`ViTEncoder`: class token (and optionally DeiT's distillation token), learned
  positions, pre-norm blocks and the final norm over a token sequence.
* :func:`resize_pos_embed`, :func:`resize_time_embed`: position embeddings for another grid.

Module and parameter names are timm's (``cls_token``, ``dist_token``, ``pos_embed``,
``patch_embed.proj``, ``blocks.{i}.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2``,
``norm``), so that image checkpoints map onto the video models key by key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rsanet.models.resnet import DropPath, check_clip, stochastic_depth_rates

#: LayerNorm epsilon of timm's ViT and DeiT
NORM_EPS = 1e-6
#: learned tokens and position embeddings (no weight decay on them)
TOKEN_PARAMETERS = frozenset(
    {
        "cls_token",
        "dist_token",
        "pos_embed",
        "time_embed",
        "pos_embed_spatial",
        "pos_embed_temporal",
        "pos_embed_class",
    }
)


def as_triple(value: int | Sequence[int]) -> tuple[int, int, int]:
    """``value`` as a (t, h, w) triple of ints: one int is repeated, three are kept;
    ValueError otherwise (kernel, stride and padding arguments of 3-D layers)."""
    if isinstance(value, int):
        return (value, value, value)
    out = tuple(int(v) for v in value)
    if len(out) != 3:
        raise ValueError(f"expected one int or three, got {value!r}")
    return out  # type: ignore[return-value]


class PatchEmbed3d(nn.Module):
    """Patches (tubelets) of ``t x p x p`` pixels projected to ``embed_dim``:
    (N, in_chans, T, H, W) -> (N, embed_dim, T / t, H / p, W / p) (remainders dropped)."""

    def __init__(
        self, in_chans: int = 3, embed_dim: int = 768, patch_size: int = 16, tubelet: int = 1
    ) -> None:
        super().__init__()
        self.patch_size = int(patch_size)
        self.tubelet = int(tubelet)
        kernel = (self.tubelet, self.patch_size, self.patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel, kernel)

    def grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Token grid (T', h, w) of a clip of that size."""
        return frames // self.tubelet, height // self.patch_size, width // self.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, w = self.grid(*x.shape[-3:])
        if min(t, h, w) < 1:
            raise ValueError(
                f"clip {tuple(x.shape)} is smaller than one {self.tubelet} x {self.patch_size} x "
                f"{self.patch_size} patch"
            )
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention: (B, L, dim) -> (B, L, dim), computed by
    ``F.scaled_dot_product_attention`` on the heads of one fused ``qkv`` projection."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        *,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    """Two linear layers with a GELU between: (..., dim) -> (..., out_dim or dim)."""

    def __init__(
        self, dim: int, hidden_dim: int, out_dim: int | None = None, drop: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``,
    each branch under stochastic depth: (B, L, dim) -> (B, L, dim)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def resize_pos_embed(
    pos_embed: torch.Tensor, new_grid: Sequence[int], num_prefix: int = 1
) -> torch.Tensor:
    """Position embeddings (1, num_prefix + h*w, C) of a square or known h x w grid
    resampled (bicubic, corners not aligned, as timm) to ``new_grid`` (h', w'); the prefix
    tokens' embeddings are kept. The same tensor is returned when the grid is unchanged."""
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    count = grid.shape[1]
    new_h, new_w = (int(g) for g in new_grid)
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"cannot infer the grid of {count} position embeddings (not square)")
    if (side, side) == (new_h, new_w):
        return pos_embed
    c = grid.shape[-1]
    grid = grid.reshape(1, side, side, c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_h, new_w), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_h * new_w, c)
    return torch.cat([prefix, grid], dim=1)


def resize_time_embed(time_embed: torch.Tensor, frames: int) -> torch.Tensor:
    """Temporal embeddings (1, T, C) linearly resampled to (1, frames, C) (unchanged if
    T == frames)."""
    if time_embed.shape[1] == frames:
        return time_embed
    out = F.interpolate(time_embed.transpose(1, 2), size=frames, mode="linear")
    return out.transpose(1, 2)


def init_vit_weights(module: nn.Module) -> None:
    """timm's ViT initialisation: truncated normal (std 0.02) linear weights, zero biases,
    unit LayerNorms (apply with ``model.apply``)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class ViTEncoder(nn.Module):
    """ViT / DeiT encoder over token sequences: (B, L, dim) -> (B, prefix + L, dim).

    A class token (and with ``distilled`` DeiT's distillation token) is put before the
    tokens, the learned ``pos_embed`` (1, prefix + num_tokens, dim) is added, then ``depth``
    pre-norm blocks and the final LayerNorm ``norm``.

    Args:
        dim, depth, num_heads, mlp_ratio, qkv_bias: the transformer's sizes.
        num_tokens: tokens the position embeddings are built for (h * w for a square
            patch grid, T for a temporal encoder).
        grid: True when the tokens are a square patch grid whose position embeddings are
            resampled (bicubic) for another grid; otherwise they are resampled linearly.
        distilled: add a distillation token after the class token.
        drop_path_rate: stochastic depth of the last block (rising linearly from 0).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        *,
        num_tokens: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        grid: bool = True,
        distilled: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.grid = grid
        self.num_prefix = 2 if distilled else 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix + num_tokens, dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = stochastic_depth_rates(depth, drop_path_rate)
        self.blocks = nn.ModuleList(
            Block(
                dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=rate,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(dim, eps=NORM_EPS)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.dist_token is not None:
            nn.init.trunc_normal_(self.dist_token, std=0.02)
        self.apply(init_vit_weights)

    def position_embeddings(self, num_tokens: int, hw: tuple[int, int] | None) -> torch.Tensor:
        """``pos_embed`` for ``num_tokens`` tokens (a grid ``hw`` when ``grid``)."""
        if self.pos_embed.shape[1] - self.num_prefix == num_tokens:
            return self.pos_embed
        if self.grid:
            if hw is None:
                side = math.isqrt(num_tokens)
                hw = (side, num_tokens // side)
            return resize_pos_embed(self.pos_embed, hw, self.num_prefix)
        prefix = self.pos_embed[:, : self.num_prefix]
        rest = resize_time_embed(self.pos_embed[:, self.num_prefix :], num_tokens)
        return torch.cat([prefix, rest], dim=1)

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        """Tokens (B, L, dim) (a row-major h x w grid ``hw`` when ``grid``) ->
        normalised tokens (B, prefix + L, dim), class token first."""
        b = x.shape[0]
        prefix = [self.cls_token.expand(b, -1, -1)]
        if self.dist_token is not None:
            prefix.append(self.dist_token.expand(b, -1, -1))
        x = torch.cat([*prefix, x], dim=1) + self.position_embeddings(x.shape[1], hw)
        x = self.pos_drop(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """The sequence's representation (B, dim): the class token, or with distillation the
        mean of the class and distillation tokens (DeiT averages its two heads' outputs)."""
        return tokens[:, : self.num_prefix].mean(dim=1)


class VideoTransformer(nn.Module):
    """What the video transformers share: the clip check, the classifier ``head`` on the
    class token and timm-style classifier access. Subclasses set ``model_name``,
    ``in_chans``, ``num_frames``, ``num_features``, ``num_prefix`` and define
    ``forward_features`` (clip -> normalised tokens (N, prefix + L, num_features), class
    token first)."""

    model_name: str
    in_chans: int
    num_frames: int
    num_features: int
    num_prefix: int = 1

    def _init_head(self, num_classes: int, drop_rate: float) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        self.num_classes = num_classes
        self.head_drop = nn.Dropout(drop_rate)
        self.head = self._make_classifier(num_classes)

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        head = nn.Linear(self.num_features, num_classes)
        nn.init.trunc_normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        return head

    def check_clip(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is a clip (N, in_chans, T, H, W)."""
        check_clip(x, self.model_name, self.in_chans, self.num_frames)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens (N, prefix + L, C) -> logits (N, num_classes) from the class token (with a
        distillation token: the mean of both); ``pre_logits``: that feature (N, C)."""
        pooled = x[:, : self.num_prefix].mean(dim=1)
        if pre_logits:
            return pooled
        return self.head(self.head_drop(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (N, in_chans, T, H, W) -> logits (N, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def no_weight_decay(self) -> set[str]:
        """Names of the token and position parameters, which are not weight-decayed (the
        timm convention, read by :func:`rsanet.engine.optim.param_groups`)."""
        return {
            name
            for name, _ in self.named_parameters()
            if name.rsplit(".", 1)[-1] in TOKEN_PARAMETERS
        }

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``head`` with a fresh classifier for ``num_classes`` (0: none)."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        self.num_classes = num_classes
        device = next(self.parameters()).device
        self.head = self._make_classifier(num_classes).to(device)
        config = getattr(self, "rsanet_config", None)
        if config is not None:
            config["num_classes"] = num_classes
