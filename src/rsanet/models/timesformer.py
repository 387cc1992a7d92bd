"""TimeSformer with divided space-time attention (Bertasius et al., ICML 2021).

Every frame is cut into p x p patches; a block first lets each patch attend to the same
patch position in the other frames (temporal attention, its own ``temporal_norm1``,
``temporal_attn`` and the ``temporal_fc`` projection on the residual branch), then lets
each patch attend to the patches of its own frame and the class token (spatial attention,
ViT's ``norm1``/``attn``), then applies ViT's MLP. The class token joins every frame's
spatial attention and the frames' outputs for it are averaged.

Names follow the authors' code (itself in timm's layout), so a ViT/DeiT checkpoint fills
everything but ``time_embed``, ``temporal_*`` and the classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from rsanet.models.resnet import stochastic_depth_rates
from rsanet.models.vit import (
    NORM_EPS,
    Attention,
    Block,
    PatchEmbed3d,
    VideoTransformer,
    init_vit_weights,
    resize_pos_embed,
    resize_time_embed,
)


class DividedBlock(Block):
    """Temporal attention, then spatial attention, then the MLP, on tokens
    (B, 1 + T * S, dim) (class token first, then frame-major patches, S per frame): ViT's
    :class:`Block` (``norm1``, ``attn``, ``norm2``, ``mlp``: the spatial half) with a
    temporal attention before it."""

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
        super().__init__(
            dim,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop=drop,
            attn_drop=attn_drop,
            drop_path=drop_path,
        )
        self.temporal_norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.temporal_attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop
        )
        self.temporal_fc = nn.Linear(dim, dim)

    def temporal(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """Each patch attends over the T frames at its position; the class token is
        unchanged: (B, 1 + T * S, dim) -> same."""
        b, n, c = x.shape
        s = (n - 1) // frames
        patches = x[:, 1:]
        by_place = patches.reshape(b, frames, s, c).transpose(1, 2).reshape(b * s, frames, c)
        branch = self.temporal_attn(self.temporal_norm1(by_place))
        branch = branch.reshape(b, s, frames, c).transpose(1, 2).reshape(b, frames * s, c)
        patches = patches + self.drop_path(self.temporal_fc(branch))
        return torch.cat([x[:, :1], patches], dim=1)

    def spatial(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """Each frame's patches and a copy of the class token attend to one another; the
        class token's update is the mean over frames: (B, 1 + T * S, dim) -> same."""
        b, n, c = x.shape
        s = (n - 1) // frames
        cls = x[:, :1].expand(b, frames, c).reshape(b * frames, 1, c)
        per_frame = torch.cat([cls, x[:, 1:].reshape(b * frames, s, c)], dim=1)
        branch = self.attn(self.norm1(per_frame))
        cls_branch = branch[:, 0].reshape(b, frames, c).mean(dim=1, keepdim=True)
        branch = torch.cat([cls_branch, branch[:, 1:].reshape(b, frames * s, c)], dim=1)
        return x + self.drop_path(branch)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        x = self.spatial(self.temporal(x, frames), frames)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TimeSformer(VideoTransformer):
    """TimeSformer (divided space-time attention): (N, 3, T, H, W) -> (N, num_classes).

    Args:
        img_size: frame size the spatial position embeddings are built for (other sizes
            are served by resampling them, bicubic).
        patch_size: side of the square patches.
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: ViT's sizes.
        num_classes: classifier outputs (0: ``forward`` returns the class token's features).
        num_frames: frames the temporal embeddings are built for (others: resampled).
        drop_rate: dropout on embeddings, attention outputs, MLPs and before the classifier.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth of the last block (linear from 0).
        model_name: the registered name.

    ``temporal_fc`` starts at zero, so that with ``time_embed`` at zero a network whose
    ViT parts come from an image checkpoint computes that ViT on every frame.
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 400,
        num_frames: int = 8,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        model_name: str = "TimeSformer",
    ) -> None:
        super().__init__()
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        self.model_name = model_name
        self.in_chans = in_chans
        self.num_frames = num_frames
        self.num_features = self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed3d(in_chans, embed_dim, patch_size, 1)
        grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = nn.ModuleList(
            DividedBlock(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=rate,
            )
            for rate in stochastic_depth_rates(depth, drop_path_rate)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=NORM_EPS)
        self._init_head(num_classes, drop_rate)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_vit_weights)
        for block in self.blocks:
            nn.init.zeros_(block.temporal_fc.weight)
            nn.init.zeros_(block.temporal_fc.bias)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Clip (N, 3, T, H, W) -> tokens (N, 1 + T * h * w, dim) with positions, and T."""
        self.check_clip(x)
        x = self.patch_embed(x)  # (N, C, T, h, w)
        n, c, t, h, w = x.shape
        x = x.flatten(3).permute(0, 2, 3, 1)  # (N, T, h*w, C)
        pos = resize_pos_embed(self.pos_embed, (h, w))
        x = x + pos[:, 1:].unsqueeze(1) + resize_time_embed(self.time_embed, t).unsqueeze(2)
        cls = (self.cls_token + pos[:, :1]).expand(n, -1, -1)
        return self.pos_drop(torch.cat([cls, x.reshape(n, t * h * w, c)], dim=1)), t

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (N, 3, T, H, W) -> normalised tokens (N, 1 + T * H/p * W/p, dim)."""
        x, frames = self.embed(x)
        for block in self.blocks:
            x = block(x, frames)
        return self.norm(x)

    #: where a ViT/DeiT checkpoint's tokens, positions, blocks and norm go
    image_checkpoint_prefix = ""
    image_num_prefix = 1

    def image_checkpoint_keys(self) -> list[str]:
        """Keys an image ViT checkpoint fills (all but ``time_embed``, ``temporal_fc`` and
        the classifier; the temporal attention is copied from the spatial)."""
        return [
            k
            for k in self.state_dict()
            if not k.startswith(("time_embed", "head.")) and ".temporal_fc." not in k
        ]

    def profile_rows(self) -> dict[str, list[str]]:
        """Rows of ``rsanet profile``'s table: name -> child modules."""
        return {"embed": ["patch_embed"], "blocks": ["blocks"]}
