"""The fast RSA layer computes exactly the paper's y_n (reference implementation)."""

import itertools

import pytest
import torch

from rsanet.layers import CONTEXTS, KERNELS, RSA, gather_neighbourhoods, rsa_reference
from support.layers import assert_close_relative, perturbed


@pytest.mark.parametrize("computation", ["reassociated", "official"])
@pytest.mark.parametrize("kernel,context", list(itertools.product(KERNELS, CONTEXTS)))
def test_matches_reference_for_every_combination(kernel, context, computation):
    torch.manual_seed(0)
    layer = RSA(12, 12, num_heads=3, kernel_size=(3, 3, 5), kernel=kernel, context=context)
    layer = perturbed(layer).double()
    layer.computation = computation
    x = torch.randn(2, 12, 4, 5, 6, dtype=torch.float64)
    assert_close_relative(layer(x), rsa_reference(layer, x))


@pytest.mark.parametrize(
    "options",
    [
        dict(kernel_size=(1, 1, 1)),
        dict(kernel_size=(1, 3, 3), num_heads=1),
        dict(kernel_size=(5, 7, 7), num_heads=4),
        dict(kernel_size=3, key_channels=6, latent_channels=5),
        dict(kernel_size=(3, 5, 3), value_channels=5, num_heads=2, out_channels=10),
        dict(groups=1),
        dict(groups=2, key_channels=8),
        dict(groups=4, key_channels=8, latent_channels=3),
        dict(stride=2),
        dict(stride=(1, 3, 3), kernel="relational", context="relational"),
        dict(
            kernel="basic",
            context="basic+relational",
            value_channels=3,
            num_heads=4,
            out_channels=12,
        ),
    ],
)
def test_matches_reference_for_sizes_heads_groups_and_strides(options):
    torch.manual_seed(1)
    options = {"out_channels": 8, "num_heads": 2, "kernel_size": (3, 3, 3), **options}
    layer = perturbed(RSA(6, **options)).double()
    x = torch.randn(2, 6, 3, 7, 5, dtype=torch.float64)
    y = layer(x)
    assert_close_relative(y, rsa_reference(layer, x))
    layer.computation = "official" if layer.computation == "reassociated" else "reassociated"
    assert_close_relative(layer(x), y)
    stride = layer.stride
    assert y.shape == (2, layer.out_channels, 3, (7 - 1) // stride + 1, (5 - 1) // stride + 1)


@pytest.mark.parametrize("frames_per_chunk", [1, 4])  # 4: a shorter last chunk of 2 frames
def test_chunked_frames_equal_one_chunk(frames_per_chunk):
    torch.manual_seed(2)
    layer = perturbed(RSA(8, 8, num_heads=2, kernel_size=(3, 3, 3))).double()
    x = torch.randn(2, 8, 6, 5, 5, dtype=torch.float64, requires_grad=True)

    def output_and_gradients():
        with torch.no_grad():
            inference = layer(x)
        y = layer(x)
        gradients = torch.autograd.grad(y.square().sum(), [x, *layer.parameters()])
        return inference, y, gradients

    whole, whole_train, whole_gradients = output_and_gradients()
    per_frame = 5 * 5 * layer.neighbourhood_size * layer.value_channels * x.element_size()
    layer.max_unfold_bytes = frames_per_chunk * per_frame
    inference, y, gradients = output_and_gradients()
    assert_close_relative(inference, whole, rtol=1e-12)
    assert_close_relative(y, whole_train, rtol=1e-12)
    for chunked, one_chunk in zip(gradients, whole_gradients, strict=True):
        assert_close_relative(chunked, one_chunk, rtol=1e-12)


@pytest.mark.parametrize("computation", ["reassociated", "official"])
def test_gradcheck_tiny_case(computation):
    torch.manual_seed(3)
    layer = RSA(4, 4, num_heads=2, kernel_size=(3, 3, 3), groups=1, computation=computation)
    layer = perturbed(layer).double()
    x = torch.randn(1, 4, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-7)


def test_groups_equal_dot_product_form_when_one_group():
    """G = 1: the relational kernel sees one dot product q.k per neighbour, so H1 acts on it."""
    torch.manual_seed(4)
    layer = RSA(
        4, 4, num_heads=1, kernel_size=(1, 1, 3), kernel="relational", context="basic", groups=1
    ).double()
    x = torch.randn(1, 4, 1, 1, 5, dtype=torch.float64)
    q, k, v = layer.project(x)
    nk = gather_neighbourhoods(k, layer.kernel_size)[2]  # centre position: (M, dk)
    dots = nk @ q[0, 0, :, 0, 0, 2]  # (M,)
    h = layer.relational_kernel_weight.reshape(
        layer.latent_channels, 3
    ).t() @ layer.latent_weight.reshape(layer.latent_channels, 3)  # (M, M) = H1 H2
    kernel = dots @ h
    expected = kernel @ gather_neighbourhoods(v, layer.kernel_size)[2]
    assert torch.allclose(layer(x)[0, :, 0, 0, 2], expected, rtol=1e-12)


def test_float32_input_follows_module_dtype_and_is_close_to_float64():
    torch.manual_seed(5)
    layer = perturbed(RSA(8, 8, num_heads=2, kernel_size=(3, 5, 5)))
    x = torch.randn(1, 8, 4, 6, 6)
    y32 = layer(x)
    y64 = layer.double()(x.double())
    assert y32.dtype == torch.float32
    assert (y32.double() - y64).abs().max() < 1e-5


def test_official_macs_for_the_paper_stage3_layer():
    layer = RSA(256, 256, num_heads=8, kernel_size=(5, 7, 7))
    # projection 256*(8*32 + 32 + 32) + 3 neighbourhood convs 32*32*245 + small products
    per_position = 256 * 320 + 3 * 32 * 32 * 245 + 8 * 32 * 32 + 32 * 32 * 32 + 8 * 32 * 32
    assert layer.official_macs(8, 14, 14) == 8 * 14 * 14 * per_position


def test_neighbour_kernels_sum_to_the_kernel_the_layer_applies():
    """kappa^V + kappa^R applied to the basic context (I = identity) gives the output."""
    torch.manual_seed(6)
    layer = perturbed(RSA(8, 8, num_heads=2, kernel_size=(3, 3, 3), context="basic")).double()
    x = torch.randn(1, 8, 3, 4, 4, dtype=torch.float64)
    kernels = layer.neighbour_kernels(x)
    assert set(kernels) == {"basic", "relational"}
    assert kernels["basic"].shape == (1, 3, 4, 4, 2, 3, 3, 3)
    kappa = (kernels["basic"] + kernels["relational"]).reshape(-1, 2, 27)  # (P, nh, M)
    _, _, values = layer.project(x)
    neighbour_values = gather_neighbourhoods(values, layer.kernel_size)  # (P, M, dv)
    expected = (kappa @ neighbour_values).reshape(1, 3, 4, 4, 2, 4).permute(0, 5, 4, 1, 2, 3)
    assert torch.allclose(layer(x), expected.reshape(1, 8, 3, 4, 4), rtol=1e-12)


def test_auto_computation_picks_the_cheaper_order_per_shape():
    """RSANet-R50's stages: few value channels per head early (authors' order is cheaper),
    many late (the re-associated order is)."""
    choices = [
        RSA(c, c, num_heads=8, kernel_size=(5, 7, 7)).uses_official_order()
        for c in (64, 128, 256, 512)
    ]
    assert choices == [True, True, False, False]
    assert not RSA(64, 64, computation="reassociated").uses_official_order()


def test_evaluation_weighs_each_order_by_the_speed_of_its_kernels():
    """rsanet_tiny's stage-3 layer (4 heads of 16 value channels): the re-associated order
    has fewer multiply-accumulates (training takes it), but in evaluation the authors' order
    runs faster (its filters are convolutions) and is taken, with the same output.
    RSANet-R50's stage 3 (8 heads of 32) keeps the re-associated order in both modes."""
    torch.manual_seed(0)
    layer = RSA(64, 64, num_heads=4, kernel_size=(5, 7, 7))
    clip = torch.randn(1, 64, 5, 6, 6)
    with torch.no_grad():
        assert not layer.uses_official_order()
        trained_order = layer(clip)
        assert layer.eval().uses_official_order()
        torch.testing.assert_close(layer(clip), trained_order, rtol=1e-4, atol=1e-5)
    assert not RSA(256, 256, num_heads=8, kernel_size=(5, 7, 7)).eval().uses_official_order()


def test_activation_checkpointing_gives_the_same_gradients():
    from rsanet.layers import set_activation_checkpointing

    torch.manual_seed(7)
    model = torch.nn.Sequential(RSA(8, 8, num_heads=2, kernel_size=3)).double()
    x = torch.randn(1, 8, 3, 5, 5, dtype=torch.float64)
    model(x).square().sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    assert set_activation_checkpointing(model) == 1 and model[0].activation_checkpointing
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = model(x)
    y.square().sum().backward()
    assert all(
        torch.allclose(p.grad, g, rtol=1e-12)
        for p, g in zip(model.parameters(), plain, strict=True)
    )
    # only the layer input (and what the loss needs) is kept until backward
    assert sum(t.numel() for t in saved) <= 2 * x.numel()


def test_macs_follow_the_chosen_order():
    late = RSA(256, 256, num_heads=8, kernel_size=(5, 7, 7))
    per_position = 256 * 320 + 8 * 32 * 245 * 2 + 32 * 32 * 245 + 8 * 32 * 32 + 2 * 8 * 245 * 32
    assert late.macs(8, 14, 14) == 8 * 14 * 14 * (per_position + 8 * 32 * 32)
    early = RSA(64, 64, num_heads=8, kernel_size=(5, 7, 7))
    assert early.macs(8, 56, 56) == early.official_macs(8, 56, 56)


@pytest.mark.parametrize("kernel,context", [("basic", "relational"), ("basic+relational",) * 2])
def test_official_order_restatement_matches_the_layer(kernel, context):
    from rsanet.layers.rsa_official_order import rsa_official_order

    torch.manual_seed(8)
    layer = perturbed(RSA(8, 8, num_heads=2, kernel_size=3, kernel=kernel, context=context))
    x = torch.randn(1, 8, 3, 5, 5, dtype=torch.float64)
    layer = layer.double()
    assert_close_relative(rsa_official_order(layer, x), layer(x), rtol=1e-12)


@pytest.mark.parametrize("kernel_size", [(3, 3, 3), (1, 3, 5), (3, 1, 1)])
def test_neighbourhood_filter_is_the_grouped_3d_convolution(kernel_size):
    """Temporal taps as channels of a grouped 2D convolution = one 3D filter per channel."""
    from rsanet.layers.ops import neighbourhood_filter

    torch.manual_seed(9)
    channels, filters = 3, 4
    x = torch.randn(2, channels, 4, 5, 6, dtype=torch.float64)
    weight = torch.randn(channels * filters, *kernel_size, dtype=torch.float64)
    pad = tuple(k // 2 for k in kernel_size)
    expected = torch.nn.functional.conv3d(
        x, weight.unsqueeze(1), padding=pad, groups=channels
    )  # (N, C*F, T, H, W)
    out = neighbourhood_filter(x.permute(0, 2, 3, 4, 1), weight, kernel_size)
    assert out.shape == (2, 4, 5, 6, channels, filters)
    expected = expected.reshape(2, channels, filters, 4, 5, 6).permute(0, 3, 4, 5, 1, 2)
    assert_close_relative(out, expected, rtol=1e-12)
    # the hand-written backward (the shifted input is rebuilt, not saved)
    x_last = torch.randn(1, 3, 3, 4, channels, dtype=torch.float64, requires_grad=True)
    weight.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: neighbourhood_filter(a, b, kernel_size), (x_last, weight)
    )


@pytest.mark.parametrize("channels", [8, 32])  # unfold_backward and index_add branches
def test_fold_is_the_adjoint_of_unfold(channels):
    """<unfold(x), g> = <x, fold(g)> for every x, g: the fold adds each neighbour back."""
    from rsanet.layers.ops import fold_channels_last_, unfold_channels_last

    torch.manual_seed(10)
    kernel_size = (3, 3, 5)
    padded = torch.randn(1, 4, 6, 9, channels, dtype=torch.float64)
    unfolded = unfold_channels_last(padded, kernel_size)  # (2*4*5, 45, C)
    gradient = torch.randn_like(unfolded)
    folded = fold_channels_last_(torch.zeros_like(padded), gradient, kernel_size)
    assert torch.allclose((unfolded * gradient).sum(), (padded * folded).sum(), rtol=1e-12)
    base = torch.randn_like(padded)  # accumulates into what is there
    assert torch.allclose(fold_channels_last_(base.clone(), gradient, kernel_size), base + folded)


def test_gradients_match_the_reference_with_wide_value_heads():
    """dv = 32 takes the index_add fold in the hand-written backward."""
    torch.manual_seed(11)
    layer = perturbed(RSA(8, 64, num_heads=2, kernel_size=(3, 3, 3), computation="reassociated"))
    layer = layer.double()
    x = torch.randn(1, 8, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(1, 64, 3, 4, 5, dtype=torch.float64)
    grads = []
    for fn in (layer, lambda clip: rsa_reference(layer, clip)):
        layer.zero_grad()
        x.grad = None
        (fn(x) * weights).sum().backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in layer.parameters()])
    for ours, reference in zip(*grads, strict=True):
        assert_close_relative(ours, reference, rtol=1e-10)


def test_fused_normalisation_matches_the_authors_formula_and_its_gradient():
    from rsanet.layers.ops import l2_normalize, l2_normalize_last

    torch.manual_seed(12)
    x = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    x.data[0, 0] = 0.0  # eps keeps an all-zero vector finite
    assert_close_relative(l2_normalize_last(x), l2_normalize(x, dim=-1), rtol=1e-14)
    assert torch.autograd.gradcheck(l2_normalize_last, (x,))
    with torch.no_grad():
        assert_close_relative(l2_normalize_last(x), l2_normalize(x, dim=-1), rtol=1e-14)
