"""ViViT, Model 2: the factorised encoder (Arnab et al., ICCV 2021).

A clip is cut into t x p x p tubelets (tubelet embedding: one strided 3-D convolution).
The *spatial encoder*, a ViT, runs on the tubelets of each temporal index separately (its
own class token and position embeddings); the class token it outputs for each temporal
index is that time step's representation. The *temporal encoder*, a second transformer
with its own class token and temporal position embeddings, runs over those T / t tokens;
its class token is classified.

Names: ``patch_embed.proj`` (the tubelet convolution), ``spatial.*`` and ``temporal.*``
(each a :class:`~rsanet.models.vit.ViTEncoder`: ``cls_token``, ``pos_embed``, ``blocks``,
``norm``) and ``head``; a ViT/DeiT checkpoint fills ``patch_embed`` (its 2-D kernel put in
the central frame of the tubelet, or averaged over it) and ``spatial``.
"""

from __future__ import annotations

import torch

from rsanet.models.vit import PatchEmbed3d, VideoTransformer, ViTEncoder, init_vit_weights


class ViViTFactorisedEncoder(VideoTransformer):
    """ViViT factorised encoder: (N, 3, T, H, W) -> (N, num_classes).

    Args:
        img_size: frame size the spatial position embeddings are built for (others are
            served by bicubic resampling).
        patch_size, tubelet: the tubelet is ``tubelet x patch_size x patch_size``.
        embed_dim, num_heads, mlp_ratio, qkv_bias: sizes of both encoders.
        spatial_depth, temporal_depth: blocks of the spatial and the temporal encoder.
        num_frames: frames the temporal position embeddings are built for
            (``num_frames // tubelet`` time steps; others: linear resampling).
        distilled: a DeiT distillation token in the spatial encoder (each time step is
            then the mean of its class and distillation outputs).
        drop_rate, attn_drop_rate, drop_path_rate: dropout and stochastic depth (in each
            encoder rising linearly from 0 to ``drop_path_rate``).
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        tubelet: int = 2,
        in_chans: int = 3,
        num_classes: int = 400,
        num_frames: int = 32,
        embed_dim: int = 768,
        spatial_depth: int = 12,
        temporal_depth: int = 4,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        distilled: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        model_name: str = "ViViT",
    ) -> None:
        super().__init__()
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        if num_frames < tubelet:
            raise ValueError(f"num_frames ({num_frames}) must be at least tubelet ({tubelet})")
        self.model_name = model_name
        self.in_chans = in_chans
        self.num_frames = num_frames
        self.num_features = self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed3d(in_chans, embed_dim, patch_size, tubelet)
        grid = img_size // patch_size
        common = dict(
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
        )
        self.spatial = ViTEncoder(
            embed_dim,
            spatial_depth,
            num_heads,
            num_tokens=grid * grid,
            grid=True,
            distilled=distilled,
            drop_path_rate=drop_path_rate,
            **common,
        )
        self.temporal = ViTEncoder(
            embed_dim,
            temporal_depth,
            num_heads,
            num_tokens=num_frames // tubelet,
            grid=False,
            drop_path_rate=drop_path_rate,
            **common,
        )
        self._init_head(num_classes, drop_rate)
        self.patch_embed.apply(init_vit_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (N, 3, T, H, W) -> normalised temporal tokens (N, 1 + T / tubelet, dim)."""
        self.check_clip(x)
        x = self.patch_embed(x)  # (N, C, T', h, w)
        n, c, t, h, w = x.shape
        per_step = x.flatten(3).permute(0, 2, 3, 1).reshape(n * t, h * w, c)
        steps = self.spatial.pooled(self.spatial(per_step, (h, w)))  # (N * T', C)
        return self.temporal(steps.reshape(n, t, c))

    #: where a ViT/DeiT checkpoint's tokens, positions, blocks and norm go
    image_checkpoint_prefix = "spatial."

    @property
    def image_num_prefix(self) -> int:
        return self.spatial.num_prefix

    def image_checkpoint_keys(self) -> list[str]:
        """Keys an image ViT checkpoint fills: the tubelet embedding and the spatial
        encoder."""
        return [k for k in self.state_dict() if k.startswith(("patch_embed.", "spatial."))]

    def profile_rows(self) -> dict[str, list[str]]:
        """Rows of ``rsanet profile``'s table: name -> child modules."""
        return {"embed": ["patch_embed"], "spatial": ["spatial"], "temporal": ["temporal"]}
