"""Local self-attention, temporal shift, convolutions and the transform factory."""

import pytest
import torch

from rsanet.layers import (
    TRANSFORMS,
    LocalSelfAttention,
    TemporalShift,
    build_transform,
    gather_neighbourhoods,
)


def self_attention_by_hand(layer: LocalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q K^T + q P^T) V per position and head, over the neighbours inside the clip."""
    n, _, t, h, w = x.shape
    nh, dk, dv = layer.num_heads, layer.key_channels, layer.value_channels
    f = layer.projection(x)
    q = (f[:, : nh * dk] * dk**-0.5).reshape(n, nh, dk, t, h, w).permute(0, 3, 4, 5, 1, 2)
    q = q.reshape(-1, nh, dk)
    keys = gather_neighbourhoods(f[:, nh * dk : 2 * nh * dk], layer.kernel_size)
    values = gather_neighbourhoods(f[:, 2 * nh * dk :], layer.kernel_size)
    inside = gather_neighbourhoods(torch.ones(1, 1, t, h, w, dtype=x.dtype), layer.kernel_size)
    inside = inside[:, :, 0].repeat(n, 1) > 0  # (P, M)
    out = torch.empty(q.shape[0], nh, dv, dtype=x.dtype)
    for p in range(q.shape[0]):
        for head in range(nh):
            k = keys[p][inside[p]][:, head * dk : (head + 1) * dk]
            v = values[p][inside[p]][:, head * dv : (head + 1) * dv]
            pos = layer.position_embedding[inside[p]]
            weights = torch.softmax(k @ q[p, head] + pos @ q[p, head], dim=0)
            out[p, head] = weights @ v
    return out.reshape(n, t, h, w, nh * dv).permute(0, 4, 1, 2, 3)


@pytest.mark.parametrize("kernel_size", [(3, 3, 3), (1, 3, 5)])
def test_local_self_attention_matches_explicit_masked_softmax(kernel_size):
    torch.manual_seed(0)
    layer = LocalSelfAttention(6, 8, num_heads=2, kernel_size=kernel_size).double()
    x = torch.randn(2, 6, 3, 4, 5, dtype=torch.float64)
    assert torch.allclose(layer(x), self_attention_by_hand(layer, x), rtol=1e-10, atol=1e-12)


def test_local_self_attention_ignores_padding_at_borders():
    """A constant value field: every masked softmax averages equal values, so the output is
    that constant everywhere (zero padding counted as neighbours would pull borders down)."""
    layer = LocalSelfAttention(4, 4, num_heads=1, kernel_size=3).double()
    with torch.no_grad():
        layer.projection.weight.zero_()
        layer.projection.weight[8:, 0] = 1.0  # values = first input channel
    x = torch.zeros(1, 4, 3, 4, 4, dtype=torch.float64)
    x[:, 0] = 2.5
    assert torch.allclose(layer(x), torch.full((1, 4, 3, 4, 4), 2.5, dtype=torch.float64))


def test_temporal_shift_moves_one_eighth_each_way():
    x = torch.arange(16 * 3, dtype=torch.float32).reshape(1, 16, 3, 1, 1)
    y = TemporalShift()(x)
    assert torch.equal(y[:, :2, 1:], x[:, :2, :-1]) and (y[:, :2, 0] == 0).all()
    assert torch.equal(y[:, 2:4, :-1], x[:, 2:4, 1:]) and (y[:, 2:4, -1] == 0).all()
    assert torch.equal(y[:, 4:], x[:, 4:])


def test_convolutions_do_what_their_names_say():
    conv2d = build_transform("conv2d", 4, 6, stride=2)
    conv3d = build_transform("conv3d", 4, 6)
    assert conv2d.kernel_size == (1, 3, 3) and conv2d.stride == (1, 2, 2)
    assert conv3d.kernel_size == (3, 3, 3) and conv3d.padding == (1, 1, 1)
    x = torch.zeros(1, 4, 5, 6, 6)
    x[:, :, 2] = 1.0  # one lit frame
    with torch.no_grad():
        lit2d = conv2d(x).abs().sum(dim=(0, 1, 3, 4)) > 0
        lit3d = conv3d(x).abs().sum(dim=(0, 1, 3, 4)) > 0
    assert lit2d.tolist() == [False, False, True, False, False]  # no temporal mixing
    assert lit3d.tolist() == [False, True, True, True, False]


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@pytest.mark.parametrize("stride", [1, 2])
def test_every_transform_maps_shapes_and_backpropagates(name, stride):
    options = (
        {"num_heads": 2, "kernel_size": (3, 3, 3)} if name in ("rsa", "self_attention") else {}
    )
    layer = build_transform(name, 8, 16, stride=stride, **options)
    x = torch.randn(2, 8, 4, 7, 7, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 16, 4, 7 // stride + (7 % stride), 7 // stride + (7 % stride))
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_local_self_attention_macs_formula():
    layer = LocalSelfAttention(16, 32, num_heads=4, kernel_size=(3, 5, 5))
    # projection 16 -> (2*4*8 + 32) channels, then 4 heads x 75 neighbours x (2*8 + 8)
    assert layer.macs(2, 3, 4) == 2 * 3 * 4 * (16 * 96 + 4 * 75 * 24)
