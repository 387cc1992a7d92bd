"""RSA computed as the authors' code computes it, with our layer's parameters.

The baseline of ``benchmarks/rsa_layer.py`` and the meaning of ``RSA.official_macs``: a
faithful re-statement of their forward pass (projection, L2 norms, H1 as a grouped
convolution over the keys, H2 and G as convolutions of every value channel
(N*dv, 1, T, H, W), then per-position products with einsum over permuted views, in their
order: kernel = q^T (K_H1 + P1), context = (V_G + I)^T F, y = kernel . context).
``RSA.aggregate_official_order`` is the same order of operations made fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rsanet.layers.ops import l2_normalize
from rsanet.layers.rsa import RSA


def rsa_official_order(layer: RSA, x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> (N, nh*dv, T', H', W'), equal to ``layer(x)`` up to rounding."""
    n, _, t, h, w = x.shape
    nh, dk, dv, dd = (
        layer.num_heads,
        layer.key_channels,
        layer.value_channels,
        layer.latent_channels,
    )
    features = F.conv3d(x, layer.projection.weight)  # channels-first, as the authors' 1x1 conv
    queries = l2_normalize(features[:, : nh * dk].reshape(n, nh, dk, t, h, w), dim=2)
    keys = l2_normalize(features[:, nh * dk : nh * dk + dk], dim=1)
    values = l2_normalize(features[:, features.shape[1] - dv :], dim=1)
    shape = layer.kernel_size
    pad = tuple(k // 2 for k in shape)
    queries = queries.permute(0, 3, 4, 5, 1, 2).reshape(-1, nh, dk)  # (P, nh, dk)

    if layer.has_relational_kernel:
        h1 = layer.expanded_relational_kernel_weight().reshape(dk * dd, 1, *shape)
        key_summary = F.conv3d(keys, h1, padding=pad, groups=dk)  # (N, dk*D, T, H, W)
        key_summary = key_summary.reshape(n, dk, dd, t, h, w).permute(0, 3, 4, 5, 1, 2)
        key_summary = key_summary.reshape(-1, dk, dd)
        if layer.basic_kernel_weight is not None:
            key_summary = key_summary + layer.basic_kernel_weight
        kernel = torch.einsum("pck,pcd->pkd", queries.transpose(1, 2), key_summary)
    else:
        kernel = queries

    per_channel = values.reshape(n * dv, 1, t, h, w)
    latent = F.conv3d(per_channel, layer.latent_weight.reshape(dd, 1, *shape), padding=pad)
    context = latent.reshape(n, dv, dd, t, h, w).permute(0, 3, 4, 5, 1, 2).reshape(-1, dv, dd)
    if layer.has_relational_context:
        g = layer.relational_context_weight.reshape(dv, 1, *shape)
        mixing = F.conv3d(per_channel, g, padding=pad)  # V_G: (N*dv, dv, T, H, W)
        mixing = mixing.reshape(n, dv, dv, t, h, w).permute(0, 3, 4, 5, 1, 2).reshape(-1, dv, dv)
        if layer.context_mixing is not None:
            mixing = mixing + layer.context_mixing
        context = torch.einsum("pcv,pcd->pvd", mixing, context)

    out = torch.einsum("phd,pvd->pvh", kernel, context)  # (P, dv, nh): value-major
    out = out.reshape(n, t, h, w, dv * nh).permute(0, 4, 1, 2, 3)
    return layer.pool(out)
