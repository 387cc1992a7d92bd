"""The L2 normalisation of queries, keys and values (the authors' form: eps inside the root)."""

from __future__ import annotations

import torch

from rsanet.layers.backends import Backend, choose_backend

NORM_EPS = 1e-6


def l2_normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x / sqrt(sum(x^2) + 1e-6) along ``dim`` (the authors' normalisation, eps inside)."""
    return x / (x.pow(2).sum(dim=dim, keepdim=True) + NORM_EPS).sqrt()


def l2_normalize_last(x: torch.Tensor) -> torch.Tensor:
    """:func:`l2_normalize` along the last dimension, (..., C) -> (..., C), in three passes
    over x; in training only the output is kept for backward (not the un-normalised
    features)."""
    if choose_backend("l2_normalize", x) is Backend.TRACING:  # exporters know no vecdot
        return l2_normalize(x, dim=-1)
    if torch.is_grad_enabled():
        return L2NormalizeLast.apply(x)
    return x * (torch.linalg.vecdot(x, x).unsqueeze(-1) + NORM_EPS).rsqrt()


class L2NormalizeLast(torch.autograd.Function):
    """y = x r with r = (x.x + eps)^(-1/2); backward r (g - y (g.y)) needs only y and r."""

    @staticmethod
    def forward(ctx, x):
        scale = (torch.linalg.vecdot(x, x).unsqueeze(-1) + NORM_EPS).rsqrt()
        out = x * scale
        ctx.save_for_backward(out, scale)
        return out

    @staticmethod
    def backward(ctx, grad):
        out, scale = ctx.saved_tensors
        return (grad - out * torch.linalg.vecdot(grad, out).unsqueeze(-1)) * scale
