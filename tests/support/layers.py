"""Helpers shared by the layer tests."""

from __future__ import annotations

import torch

from rsanet.layers import RSA


def perturbed(layer: RSA, seed: int = 0) -> RSA:
    """Move every parameter off its initial value (I off the identity, P1 off its init)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return layer


def assert_close_relative(actual, expected, rtol=1e-9):
    scale = expected.abs().max()
    assert (actual - expected).abs().max() <= rtol * scale, (
        f"max relative error {((actual - expected).abs().max() / scale).item():.3e}"
    )
