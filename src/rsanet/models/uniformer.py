"""UniFormer for video (Li et al., ICLR 2022): a four-stage hierarchy of transformer-style
blocks whose token mixer ("relation aggregator", MHRA) is local in the shallow stages and
global in the deep ones.

Every block is ``x + DPE(x)``, then ``x + MHRA(norm1(x))``, then ``x + FFN(norm2(x))``:

* **DPE**, dynamic position embedding: a 3x3x3 depthwise convolution on the residual.
* **Local MHRA** (stages 1-2): BatchNorm, a 1x1x1 convolution (the value projection), a
  5x5x5 depthwise convolution (the token affinity: one learned, input-independent weight
  per channel and neighbour), a 1x1x1 convolution (the output projection). The FFN is two
  1x1x1 convolutions after a BatchNorm.
* **Global MHRA** (stages 3-4): multi-head self-attention over all T x H x W tokens
  (LayerNorm first, head dimension 64); the FFN is two linear layers after a LayerNorm.

Stage s starts with a patch embedding (a strided convolution and a LayerNorm over the
channels): 3x4x4 at stride 2x4x4 (padding 1x0x0) into stage 1, then 1x2x2 at stride 1x2x2.
After stage 4: BatchNorm, the mean over all positions and the linear classifier ``head``.
Module and parameter names are the authors' (``patch_embed1.proj``, ``blocks1.0.pos_embed``,
``blocks1.0.conv1``, ``blocks3.0.attn.qkv``, ``norm``, ``head``), so that their 2-D ImageNet
checkpoints load key by key once the kernels are inflated (:func:`load_uniformer_checkpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsanet.models.resnet import DropPath, check_clip, stochastic_depth_rates
from rsanet.models.vit import NORM_EPS, Attention, Mlp, as_triple, init_vit_weights
from rsanet.models.vit_weights import INFLATIONS, inflate_patch_kernel
from rsanet.models.weights import (
    ImageNetLoadResult,
    extract_state_dict,
    load_partial_state_dict,
    read_checkpoint,
    tensor_shape,
)

Size3 = tuple[int, int, int]


def _depthwise(dim: int, kernel: int) -> nn.Conv3d:
    """A ``kernel``-cubed depthwise convolution that keeps the size (zero padding)."""
    return nn.Conv3d(dim, dim, kernel, padding=kernel // 2, groups=dim)


class PatchEmbed(nn.Module):
    """Strided convolution ``proj`` then LayerNorm ``norm`` over the channels:
    (N, C_in, T, H, W) -> (N, C_out, T', H', W')."""

    def __init__(
        self, in_chans: int, embed_dim: int, kernel: Size3, stride: Size3, padding: Size3
    ) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel, stride, padding)
        self.norm = nn.LayerNorm(embed_dim)  # eps 1e-5, as the authors' patch embeddings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class ConvMlp(nn.Module):
    """The FFN of a local block, as 1x1x1 convolutions:
    (N, dim, T, H, W) -> (N, dim, T, H, W) through ``hidden_dim`` channels."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Conv3d(dim, hidden_dim, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv3d(hidden_dim, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class LocalBlock(nn.Module):
    """UniFormer block with local MHRA (the authors' ``CBlock``):
    (N, dim, T, H, W) -> same.

    The aggregator is ``conv2(attn(conv1(norm1(x))))``: ``attn`` is a 5x5x5 depthwise
    convolution, so each token's output is a fixed learned mix of its neighbours' values
    (the affinity does not depend on the tokens)."""

    def __init__(
        self, dim: int, *, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.pos_embed = _depthwise(dim, 3)
        self.norm1 = nn.BatchNorm3d(dim)
        self.conv1 = nn.Conv3d(dim, dim, 1)
        self.attn = _depthwise(dim, 5)
        self.conv2 = nn.Conv3d(dim, dim, 1)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.BatchNorm3d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class GlobalBlock(nn.Module):
    """UniFormer block with global MHRA (the authors' ``SABlock``):
    (N, dim, T, H, W) -> same.

    After the position embedding, the T*H*W tokens go through a pre-norm ViT block:
    multi-head self-attention over all of them, then the MLP."""

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
        self.pos_embed = _depthwise(dim, 3)
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        n, c, t, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (N, T*H*W, C)
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens)))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return tokens.transpose(1, 2).reshape(n, c, t, h, w)


class UniFormer(nn.Module):
    """UniFormer for clips: (N, in_chans, T, H, W) -> (N, num_classes).

    Args:
        depths: blocks per stage (UniFormer-S 3-4-8-3, UniFormer-B 5-8-20-7).
        widths: channels per stage (64, 128, 320, 512 for both).
        head_dim: channels per attention head in the global stages (heads = width / head_dim).
        local_stages: how many leading stages use local MHRA (the paper: 2).
        stem_kernel, stem_stride, stem_padding: the first patch embedding (the paper's video
            model: 3x4x4 at stride 2x4x4, padding 1x0x0); later ones are 1x2x2 at stride
            1x2x2.
        mlp_ratio, qkv_bias: FFN width and the qkv bias.
        num_classes: classifier outputs (0: ``forward`` returns the pooled features).
        num_frames: the clip length the model is built for (recorded in its config; any
            T >= 1 works).
        drop_rate: dropout before the classifier (ours: the authors' network has none).
        drop_path_rate: stochastic depth of the last block (linear from 0 over all blocks).
        model_name: the registered name.
    """

    def __init__(
        self,
        *,
        depths: Sequence[int] = (3, 4, 8, 3),
        widths: Sequence[int] = (64, 128, 320, 512),
        head_dim: int = 64,
        local_stages: int = 2,
        stem_kernel: Sequence[int] = (3, 4, 4),
        stem_stride: Sequence[int] = (2, 4, 4),
        stem_padding: Sequence[int] = (1, 0, 0),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        in_chans: int = 3,
        num_classes: int = 400,
        num_frames: int = 16,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        model_name: str = "UniFormer",
    ) -> None:
        super().__init__()
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        depths, widths = tuple(int(d) for d in depths), tuple(int(w) for w in widths)
        if len(depths) != 4 or len(widths) != 4 or min(depths) < 1:
            raise ValueError(f"depths and widths need 4 positive entries, got {depths}, {widths}")
        if any(w % head_dim for w in widths[local_stages:]):
            raise ValueError(f"the global stages' widths {widths} must be multiples of {head_dim}")
        self.model_name = model_name
        self.in_chans = in_chans
        self.num_frames = num_frames
        self.depths, self.widths = depths, widths
        self.num_features = widths[-1]

        rates = iter(stochastic_depth_rates(sum(depths), drop_path_rate))
        previous = in_chans
        for s, (depth, dim) in enumerate(zip(depths, widths, strict=True), start=1):
            if s == 1:
                geometry = (as_triple(stem_kernel), as_triple(stem_stride), as_triple(stem_padding))
            else:
                geometry = ((1, 2, 2), (1, 2, 2), (0, 0, 0))
            setattr(self, f"patch_embed{s}", PatchEmbed(previous, dim, *geometry))
            if s <= local_stages:
                blocks = [
                    LocalBlock(dim, mlp_ratio=mlp_ratio, drop_path=next(rates))
                    for _ in range(depth)
                ]
            else:
                blocks = [
                    GlobalBlock(
                        dim, dim // head_dim, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                        drop_path=next(rates),
                    )
                    for _ in range(depth)
                ]  # fmt: skip
            setattr(self, f"blocks{s}", nn.ModuleList(blocks))
            previous = dim
        self.norm = nn.BatchNorm3d(widths[-1])
        self._init_head(num_classes, drop_rate)
        self.apply(init_vit_weights)  # the authors': linear layers and LayerNorms only

    # -- classifier (as the other video models) ------------------------------------------

    def _init_head(self, num_classes: int, drop_rate: float) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        self.num_classes = num_classes
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``head`` with a fresh classifier for ``num_classes`` (0: none)."""
        device = self.norm.weight.device
        self._init_head(num_classes, self.head_drop.p)
        self.head.apply(init_vit_weights)
        self.head.to(device)
        config = getattr(self, "rsanet_config", None)
        if config is not None:
            config["num_classes"] = num_classes

    # -- forward --------------------------------------------------------------------------

    def stages(self) -> list[tuple[PatchEmbed, nn.ModuleList]]:
        """(patch embedding, blocks) of each of the four stages."""
        return [
            (getattr(self, f"patch_embed{s}"), getattr(self, f"blocks{s}")) for s in range(1, 5)
        ]

    def check_clip(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is a clip (N, in_chans, T, H, W)."""
        check_clip(x, self.model_name, self.in_chans, self.num_frames)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (N, 3, T, H, W) -> normalised features (N, num_features, T', H', W'):
        T' = ceil(T / 2) and H' = H / 32 for the paper's stem (remainders dropped)."""
        self.check_clip(x)
        for embed, blocks in self.stages():
            x = embed(x)
            for block in blocks:
                x = block(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Features (N, C, T', H', W') -> logits (N, num_classes) from their mean over all
        positions; ``pre_logits``: that mean (N, C)."""
        pooled = x.flatten(2).mean(dim=-1)
        if pre_logits:
            return pooled
        return self.head(self.head_drop(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (N, in_chans, T, H, W) -> logits (N, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def profile_rows(self) -> dict[str, list[str]]:
        """Rows of ``rsanet profile``'s table: one per stage (patch embedding + blocks)."""
        return {f"stage{s}": [f"patch_embed{s}", f"blocks{s}"] for s in range(1, 5)}


# -- initialisation from the authors' 2-D ImageNet checkpoints --------------------------


@dataclass
class UniFormerLoadResult(ImageNetLoadResult):
    """What :func:`load_uniformer_checkpoint` did: ``loaded`` / ``not_loaded`` / ``unused``
    as for the other loaders, plus ``inflated`` (model keys whose 2-D kernel was inflated
    over time: the first patch embedding, the position embeddings and the local
    aggregators' 5x5 kernels; 1 x k x k kernels are only reshaped and not listed)."""

    inflated: list[str] = field(default_factory=list)


def load_uniformer_checkpoint(
    model: UniFormer,
    source: str | Path | Mapping[str, Any],
    *,
    inflation: str = "average",
    skip_prefixes: tuple[str, ...] = ("head.",),
) -> UniFormerLoadResult:
    """Initialise a video UniFormer from a 2-D ImageNet UniFormer checkpoint in the
    authors' layout (``uniformer_small_in1k.pth``, ``uniformer_base_in1k.pth``: keys
    ``patch_embed1.proj.weight`` (64, 3, 4, 4), ``blocks1.0.pos_embed.weight`` (64, 1, 3, 3),
    ``blocks1.0.attn.weight`` (64, 1, 5, 5), ``blocks3.0.attn.qkv.weight``, ``norm.*``
    (BatchNorm2d), ``head.*``; ``model`` / ``state_dict`` wrappers and a ``module.`` prefix
    accepted).

    A 2-D kernel (O, I, kh, kw) whose model kernel is (O, I, kt, kh, kw) is inflated over
    time as the authors do (their ``inflate_weight``): ``"average"`` (their default) repeats
    it kt times divided by kt; ``"center"`` puts it in the central frame only, so that on a
    still clip the video network computes the image network. LayerNorm, BatchNorm (with its
    statistics) and linear tensors are copied; the classifier (``skip_prefixes``) is left
    alone. Anything else that does not fit, and any model key the checkpoint lacks, raises
    CheckpointMismatchError naming the first misfits.
    """
    if not isinstance(model, UniFormer):
        name = getattr(model, "model_name", type(model).__name__)
        raise ValueError(f"{name} is not a UniFormer")
    if inflation not in INFLATIONS:
        raise ValueError(f"inflation must be one of {INFLATIONS}, got {inflation!r}")
    state = extract_state_dict(read_checkpoint(source))
    ours = model.state_dict()
    result = UniFormerLoadResult()
    mismatched, unexpected, to_load = [], [], {}
    for key, tensor in state.items():
        if key.startswith(skip_prefixes):
            result.unused.append(key)
            continue
        if key not in ours:
            unexpected.append(f"{key} {tensor_shape(tensor)}")
            continue
        target = ours[key]
        if tensor.dim() == 4 and target.dim() == 5:
            tensor = inflate_patch_kernel(tensor, target.shape[2], inflation)
            if target.shape[2] > 1:
                result.inflated.append(key)
        if tensor.shape != target.shape:
            mismatched.append(
                f"{key}: checkpoint {tensor_shape(state[key])} vs model {tensor_shape(target)}"
            )
            continue
        to_load[key] = tensor.to(target.dtype)
    missing = [
        f"{k} {tensor_shape(v)}"
        for k, v in ours.items()
        if k not in to_load and not k.startswith(skip_prefixes)
    ]
    load_partial_state_dict(
        model,
        to_load,
        result,
        "UniFormer checkpoint",
        mismatched=mismatched,
        missing=missing,
        unexpected=unexpected,
    )
    return result
