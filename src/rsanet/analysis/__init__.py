"""Analysis of trained networks: what the RSA layers learned (the paper's kernel figure)."""

from rsanet.analysis.kernels import (
    KernelComparison,
    compare_kernels,
    draw_kernels,
    layer_input,
    resolve_layer,
    rsa_layers,
    video_clip,
)

__all__ = [
    "KernelComparison",
    "compare_kernels",
    "draw_kernels",
    "layer_input",
    "resolve_layer",
    "rsa_layers",
    "video_clip",
]
