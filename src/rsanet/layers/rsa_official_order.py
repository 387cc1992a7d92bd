"""RSA computed in the authors' order of operations, with our layer's parameters.

The baseline of ``benchmarks/rsa_layer.py`` and the meaning of ``RSA.official_macs``:
projection, L2 norms, H1 as a grouped convolution over the keys, H2 and G as convolutions of
every value channel (N*dv, 1, T, H, W), then per-position products: kernel = q (K_H1 + P1),
context = (V_G + I)^T F, y = kernel . context.
"""

from __future__ import annotations

import torch

from rsanet.layers.rsa import RSA


def rsa_official_order(layer: RSA, x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> (N, nh*dv, T', H', W'), equal to ``layer(x)`` up to rounding."""
    return layer.pool(layer.aggregate_official_order(*layer.project(x)))
