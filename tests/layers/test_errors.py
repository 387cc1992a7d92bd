"""Bad arguments fail at construction (or on the first call) with a message naming them."""

import pytest
import torch

from rsanet.layers import RSA, LocalSelfAttention, TemporalShift, build_transform


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(num_heads=3), r"num_heads=3 must divide out_channels=16"),
        (dict(num_heads=0), r"num_heads must be a positive integer, got 0"),
        (dict(kernel_size=(3, 4, 5)), r"kernel_size must be odd on every axis.*\(3, 4, 5\)"),
        (dict(kernel_size=(3, 5)), r"kernel_size must be an int or 3 positive ints"),
        (dict(kernel="motion"), r"kernel must be one of \['basic', 'relational', "),
        (dict(context="V"), r"context must be one of .*got 'V'"),
        (dict(groups=3), r"groups=3 must divide key_channels=8"),
        (dict(groups=0), r"groups must be a positive integer"),
        (dict(groups=2, kernel="basic"), r"groups=2 only applies to a relational kernel"),
        (dict(kernel="basic", latent_channels=4), r"latent_channels must equal key_channels=8"),
        (dict(value_channels=4), r"out_channels=16 must equal num_heads \* value_channels"),
        (dict(stride=(2, 2, 2)), r"stride must not stride in time"),
        (dict(stride=(1, 2, 3)), r"stride must be a positive int s"),
        (dict(out_channels=-1), r"out_channels must be a positive integer, got -1"),
        (dict(computation="fast"), r"computation must be one of \['auto', 'reassociated', "),
    ],
)
def test_rsa_rejects_bad_arguments(kwargs, pattern):
    kwargs = {"in_channels": 8, "out_channels": 16, "num_heads": 2, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        RSA(**kwargs)


@pytest.mark.parametrize(
    "shape,pattern",
    [
        ((2, 8, 4, 4), r"expects a 5-D tensor \(N, C, T, H, W\), got shape \(2, 8, 4, 4\)"),
        ((1, 3, 2, 4, 4), r"expects 8 input channels \(N, 8, T, H, W\), got shape \(1, 3,"),
    ],
)
@pytest.mark.parametrize("cls", [RSA, LocalSelfAttention])
def test_wrong_input_shapes_are_named(cls, shape, pattern):
    layer = cls(8, 8, num_heads=2, kernel_size=3)
    with pytest.raises(ValueError, match=cls.__name__ + " " + pattern):
        layer(torch.randn(*shape))


def test_temporal_shift_and_factory_errors():
    with pytest.raises(ValueError, match="5-D tensor"):
        TemporalShift()(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"unknown transform 'attention'; known: \['conv2d'"):
        build_transform("attention", 8, 8)
    with pytest.raises(ValueError, match=r"transform 'conv2d': .*num_heads"):
        build_transform("conv2d", 8, 8, num_heads=2)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        build_transform("conv3d", 8, 8, kernel_size=2)
