"""The registered networks: one small factory per name.

Families (the transform at the RSA positions varies, everything else is equal):

=============  ==============================================================
``tsn_*``      1x3x3 convolutions only (no temporal modelling)
``tsm_r*``     TSM: residual temporal shift in every block (Lin et al. 2019)
``tsm_tiny``   temporal shift + 1x3x3 convolution at the RSA positions
``rsanet_*``   relational self-attention at the RSA positions
``sa_*``       local self-attention at the RSA positions, same neighbourhood
``conv3d_*``   3x3x3 convolutions at the RSA positions
``timesformer_*``  TimeSformer, divided space-time attention (Bertasius et al. 2021)
``vivit_*``    ViViT Model 2, the factorised encoder (Arnab et al. 2021)
``mvit_*``     MViT (v1), multiscale stages with pooling attention (Fan et al. 2021)
``uniformer_*``  UniFormer, local then global relation aggregators (Li et al. 2022)
=============  ==============================================================

Every factory takes its class's keyword arguments as overrides (``ResNetTSN``,
``TimeSformer``, ``ViViTFactorisedEncoder``, ``MViT``, ``UniFormer``). ResNet defaults: 174 classes
(Something-Something V1), 8 frames, the paper's head dropout 0.3 and stochastic depth
up to 0.2 for the full-size networks; the ``*_tiny`` networks default to neither dropout
nor stochastic depth (short CPU runs). The video transformers default to 174 classes and
their papers' clip lengths and regularisation.
"""

from __future__ import annotations

from typing import Any

from rsanet.models.mvit import MViT
from rsanet.models.registry import register_model
from rsanet.models.resnet import RSA_R50_POSITIONS, ResNetTSN
from rsanet.models.timesformer import TimeSformer
from rsanet.models.uniformer import UniFormer
from rsanet.models.vivit import ViViTFactorisedEncoder

#: the paper's RSA layer settings (nh = 8, dk = dv = D = planes / 8 are the layer defaults)
RSA_OPTIONS: dict[str, Any] = {
    "num_heads": 8,
    "kernel_size": (5, 7, 7),
    "kernel": "basic+relational",
    "context": "basic+relational",
}
SA_OPTIONS: dict[str, Any] = {"num_heads": 8, "kernel_size": (5, 7, 7)}
CONV3D_OPTIONS: dict[str, Any] = {"kernel_size": 3}

#: ResNet-18/34 have 2 or more blocks per stage; block 0 of stages 2-4 is strided, so
#: RSANet-R18 puts one RSA layer in the second block of every stage.
RSA_R18_POSITIONS: tuple[tuple[int, ...], ...] = ((1,), (1,), (1,), (1,))

#: rsanet_tiny and its family: ResNet-50's structure (Bottleneck, 3-4-6-3 blocks, RSA at
#: the paper's positions) at a quarter of the width; 4 heads keep 4 key/value channels per
#: head in stage 1.
TINY: dict[str, Any] = {
    "block": "bottleneck",
    "layers": (3, 4, 6, 3),
    "widths": (16, 32, 64, 128),
    "stem_width": 16,
    "drop_rate": 0.0,
    "drop_path_rate": 0.0,
}
TINY_HEADS = 4

R18 = {"block": "basic", "layers": (2, 2, 2, 2)}
R34 = {"block": "basic", "layers": (3, 4, 6, 3)}
R50 = {"block": "bottleneck", "layers": (3, 4, 6, 3)}
R101 = {"block": "bottleneck", "layers": (3, 4, 23, 3)}
PAPER_RECIPE = {"drop_rate": 0.3, "drop_path_rate": 0.2}


def _build(name: str, defaults: dict[str, Any], overrides: dict[str, Any]) -> ResNetTSN:
    kwargs = {"num_classes": 174, "num_frames": 8, **defaults, **overrides}
    return ResNetTSN(model_name=name, **kwargs)


def _at(transform: str, positions: Any, options: dict[str, Any]) -> dict[str, Any]:
    return {"placement": {transform: positions}, "transform_options": {transform: dict(options)}}


# -- TSN (no temporal modelling) ------------------------------------------------------


@register_model
def tsn_r18(**kwargs: Any) -> ResNetTSN:
    """TSN ResNet-18."""
    return _build("tsn_r18", {**R18, **PAPER_RECIPE}, kwargs)


@register_model
def tsn_r34(**kwargs: Any) -> ResNetTSN:
    """TSN ResNet-34."""
    return _build("tsn_r34", {**R34, **PAPER_RECIPE}, kwargs)


@register_model
def tsn_r50(**kwargs: Any) -> ResNetTSN:
    """TSN ResNet-50: the paper's backbone without RSA."""
    return _build("tsn_r50", {**R50, **PAPER_RECIPE}, kwargs)


@register_model
def tsn_r101(**kwargs: Any) -> ResNetTSN:
    """TSN ResNet-101."""
    return _build("tsn_r101", {**R101, **PAPER_RECIPE}, kwargs)


# -- TSM ------------------------------------------------------------------------------


@register_model
def tsm_r18(**kwargs: Any) -> ResNetTSN:
    """TSM ResNet-18: residual temporal shift (1/8 forward, 1/8 backward) in every block."""
    return _build("tsm_r18", {**R18, **PAPER_RECIPE, "temporal_shift": "all"}, kwargs)


@register_model
def tsm_r50(**kwargs: Any) -> ResNetTSN:
    """TSM ResNet-50: residual temporal shift (1/8 forward, 1/8 backward) at the start of
    every block's residual branch, as in the TSM paper; all weights are ResNet-50's."""
    return _build("tsm_r50", {**R50, **PAPER_RECIPE, "temporal_shift": "all"}, kwargs)


# -- RSANet ---------------------------------------------------------------------------


@register_model
def rsanet_r50(**kwargs: Any) -> ResNetTSN:
    """RSANet-R50 (the paper's network): RSA (5x7x7, nh 8, dk = dv = D = planes/8,
    basic+relational kernel and context) at blocks [[2], [1, 3], [1, 3, 5], [1]]."""
    return _build(
        "rsanet_r50", {**R50, **PAPER_RECIPE, **_at("rsa", RSA_R50_POSITIONS, RSA_OPTIONS)}, kwargs
    )


@register_model
def rsanet_r18(**kwargs: Any) -> ResNetTSN:
    """RSANet-R18: RSA (paper settings) in place of the second 3x3 convolution of the
    second block of every stage."""
    return _build(
        "rsanet_r18", {**R18, **PAPER_RECIPE, **_at("rsa", RSA_R18_POSITIONS, RSA_OPTIONS)}, kwargs
    )


@register_model
def sa_r50(**kwargs: Any) -> ResNetTSN:
    """Local self-attention (5x7x7 neighbourhood, 8 heads) at RSANet-R50's positions."""
    return _build(
        "sa_r50",
        {**R50, **PAPER_RECIPE, **_at("self_attention", RSA_R50_POSITIONS, SA_OPTIONS)},
        kwargs,
    )


@register_model
def conv3d_r50(**kwargs: Any) -> ResNetTSN:
    """3x3x3 convolutions at RSANet-R50's positions."""
    return _build(
        "conv3d_r50",
        {**R50, **PAPER_RECIPE, **_at("conv3d", RSA_R50_POSITIONS, CONV3D_OPTIONS)},
        kwargs,
    )


# -- tiny family (CPU demos, tests and the equal-placement study) ---------------------


@register_model
def rsanet_tiny(**kwargs: Any) -> ResNetTSN:
    """RSANet-R50's structure at widths 16-32-64-128 with 4-head RSA (5x7x7): 1.87M params."""
    return _build(
        "rsanet_tiny",
        {**TINY, **_at("rsa", RSA_R50_POSITIONS, {**RSA_OPTIONS, "num_heads": TINY_HEADS})},
        kwargs,
    )


@register_model
def tsn_tiny(**kwargs: Any) -> ResNetTSN:
    """rsanet_tiny with 1x3x3 convolutions at the RSA positions."""
    return _build("tsn_tiny", dict(TINY), kwargs)


@register_model
def tsm_tiny(**kwargs: Any) -> ResNetTSN:
    """rsanet_tiny with temporal shift + 1x3x3 convolution at the RSA positions."""
    return _build("tsm_tiny", {**TINY, **_at("tsm", RSA_R50_POSITIONS, {})}, kwargs)


@register_model
def sa_tiny(**kwargs: Any) -> ResNetTSN:
    """rsanet_tiny with 4-head local self-attention (5x7x7) at the RSA positions."""
    return _build(
        "sa_tiny",
        {
            **TINY,
            **_at("self_attention", RSA_R50_POSITIONS, {**SA_OPTIONS, "num_heads": TINY_HEADS}),
        },
        kwargs,
    )


@register_model
def conv3d_tiny(**kwargs: Any) -> ResNetTSN:
    """rsanet_tiny with 3x3x3 convolutions at the RSA positions."""
    return _build(
        "conv3d_tiny", {**TINY, **_at("conv3d", RSA_R50_POSITIONS, CONV3D_OPTIONS)}, kwargs
    )


# -- video transformers ---------------------------------------------------------------
#
# Full-size models at their papers' sizes (ViT-B/16 for TimeSformer and ViViT); the tiny
# ones (under 2M parameters, 8 x 8 patches, built for 48 x 48 frames and resampling their
# position embeddings for other sizes) for CPU runs and tests.

VIT_B: dict[str, Any] = {"embed_dim": 768, "num_heads": 12, "patch_size": 16, "img_size": 224}
VIT_TINY: dict[str, Any] = {"embed_dim": 128, "num_heads": 4, "patch_size": 8, "img_size": 48}


def _build_transformer(cls: type, name: str, defaults: dict[str, Any], overrides: dict) -> Any:
    kwargs = {"num_classes": 174, **defaults, **overrides}
    return cls(model_name=name, **kwargs)


@register_model
def timesformer_b(**kwargs: Any) -> TimeSformer:
    """TimeSformer (divided space-time attention) on ViT-B/16, 8 x 224 x 224 clips."""
    defaults = {**VIT_B, "depth": 12, "num_frames": 8, "drop_path_rate": 0.1}
    return _build_transformer(TimeSformer, "timesformer_b", defaults, kwargs)


@register_model
def timesformer_tiny(**kwargs: Any) -> TimeSformer:
    """TimeSformer with 6 blocks of width 128 (4 heads), 8 x 8 patches: 1.7M params."""
    defaults = {**VIT_TINY, "depth": 6, "num_frames": 8, "drop_path_rate": 0.0}
    return _build_transformer(TimeSformer, "timesformer_tiny", defaults, kwargs)


@register_model
def vivit_b(**kwargs: Any) -> ViViTFactorisedEncoder:
    """ViViT-B factorised encoder: 2 x 16 x 16 tubelets, 12 spatial and 4 temporal ViT-B
    blocks, 32 x 224 x 224 clips (the paper's Kinetics setting)."""
    defaults = {**VIT_B, "tubelet": 2, "spatial_depth": 12, "temporal_depth": 4, "num_frames": 32}
    return _build_transformer(ViViTFactorisedEncoder, "vivit_b", defaults, kwargs)


@register_model
def vivit_tiny(**kwargs: Any) -> ViViTFactorisedEncoder:
    """ViViT factorised encoder with 2 x 8 x 8 tubelets, 4 spatial and 2 temporal blocks of
    width 128 (4 heads): 1.25M params."""
    defaults = {**VIT_TINY, "tubelet": 2, "spatial_depth": 4, "temporal_depth": 2, "num_frames": 8}
    return _build_transformer(ViViTFactorisedEncoder, "vivit_tiny", defaults, kwargs)


@register_model
def mvit_b(**kwargs: Any) -> MViT:
    """MViT-B 16x4: 16 blocks in stages of 1-2-11-2, widths 96-192-384-768, heads 1-2-4-8,
    3x7x7 patches at stride 2x4x4, key/value stride 1x8x8 in stage 1."""
    return _build_transformer(MViT, "mvit_b", {"num_frames": 16}, kwargs)


#: MViT-S has no released configuration; this is the one in docs/models.md ("MViT-S")
MVIT_S: dict[str, Any] = {
    "embed_dim": 128,
    "num_heads": 1,
    "depths": (3, 7, 6),
    "patch_kernel": (3, 8, 8),
    "patch_stride": (2, 8, 8),
    "patch_padding": (1, 3, 3),
    "kv_stride": (1, 4, 4),
}


@register_model
def mvit_s(**kwargs: Any) -> MViT:
    """MViT-S 16x4 (reconstructed, see docs/models.md): 16 blocks in stages of 3-7-6,
    widths 128-256-512, heads 1-2-4, 3x8x8 patches at stride 2x8x8."""
    return _build_transformer(MViT, "mvit_s", {**MVIT_S, "num_frames": 16}, kwargs)


@register_model
def mvit_tiny(**kwargs: Any) -> MViT:
    """MViT with stages of 1-2-3-2 blocks, widths 24-48-96-192, heads 1-2-4-8, built for
    8 x 48 x 48 clips: 1.4M params. (The last stage needs two blocks: the first pools the
    queries, and a single block's pooled queries would never reach the class token.)"""
    defaults = {
        "img_size": 48,
        "num_frames": 8,
        "embed_dim": 24,
        "num_heads": 1,
        "depths": (1, 2, 3, 2),
        "kv_stride": (1, 4, 4),
        "drop_rate": 0.0,
        "drop_path_rate": 0.0,
    }
    return _build_transformer(MViT, "mvit_tiny", defaults, kwargs)


@register_model
def uniformer_s(**kwargs: Any) -> UniFormer:
    """UniFormer-S for video: stages of 3-4-8-3 blocks (local, local, global, global),
    widths 64-128-320-512, head dimension 64, a 3x4x4 stem at stride 2x4x4, 16 x 224 x 224
    clips, drop path 0.1 (the authors' Kinetics recipe)."""
    defaults = {"depths": (3, 4, 8, 3), "num_frames": 16, "drop_path_rate": 0.1}
    return _build_transformer(UniFormer, "uniformer_s", defaults, kwargs)


@register_model
def uniformer_b(**kwargs: Any) -> UniFormer:
    """UniFormer-B for video: UniFormer-S with stages of 5-8-20-7 blocks."""
    defaults = {"depths": (5, 8, 20, 7), "num_frames": 16, "drop_path_rate": 0.1}
    return _build_transformer(UniFormer, "uniformer_b", defaults, kwargs)


@register_model
def uniformer_tiny(**kwargs: Any) -> UniFormer:
    """Ours, not the paper's: UniFormer's structure (the same stem, strides and local /
    global split) with stages of 1-2-3-1 blocks, widths 32-64-128-256, head dimension 32,
    for SynthMotion's 8 x 48 x 48 clips on a CPU."""
    defaults = {
        "depths": (1, 2, 3, 1),
        "widths": (32, 64, 128, 256),
        "head_dim": 32,
        "num_frames": 8,
        "drop_path_rate": 0.0,
    }
    return _build_transformer(UniFormer, "uniformer_tiny", defaults, kwargs)
