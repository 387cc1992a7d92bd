"""Transforms on clips (N, C, T, H, W): relational self-attention and its baselines."""

from rsanet.layers.conv import spatial_conv, spatiotemporal_conv
from rsanet.layers.factory import TRANSFORMS, build_transform, set_activation_checkpointing
from rsanet.layers.ops import l2_normalize, unfold_channels_last
from rsanet.layers.rsa import CONTEXTS, KERNELS, RSA
from rsanet.layers.rsa_reference import gather_neighbourhoods, rsa_reference
from rsanet.layers.self_attention import LocalSelfAttention
from rsanet.layers.temporal_shift import TemporalShift, temporal_shift

__all__ = [
    "CONTEXTS",
    "KERNELS",
    "RSA",
    "TRANSFORMS",
    "LocalSelfAttention",
    "TemporalShift",
    "build_transform",
    "gather_neighbourhoods",
    "l2_normalize",
    "rsa_reference",
    "set_activation_checkpointing",
    "spatial_conv",
    "spatiotemporal_conv",
    "temporal_shift",
    "unfold_channels_last",
]
