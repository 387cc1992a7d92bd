"""The fused CPU kernels (rsanet.layers.native) compute what the PyTorch operators compute."""

import itertools

import pytest
import torch

from rsanet.layers import CONTEXTS, KERNELS, RSA, native, rsa_reference
from rsanet.layers.ops import neighbourhood_filter
from support.layers import assert_close_relative, perturbed


@pytest.fixture
def fused(monkeypatch):
    monkeypatch.delenv("RSANET_NATIVE", raising=False)
    if not native.available(torch.empty(0)):
        pytest.skip("the fused CPU kernels cannot be built here (no C++ compiler?)")


def outputs_and_gradients(layer: RSA, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        inference = layer(x)
    x = x.detach().requires_grad_()
    y = layer(x)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=y.dtype)
    gradients = torch.autograd.grad((y * weights).sum(), [x, *layer.parameters()])
    return [inference, y, *gradients]


def assert_fused_matches(layer: RSA, x: torch.Tensor, monkeypatch, rtol: float = 2e-5):
    """Fused float32 against PyTorch's float32 operators and the float64 reference."""
    assert native.available(x)
    fused = outputs_and_gradients(layer, x)
    monkeypatch.setenv("RSANET_NATIVE", "0")
    assert not native.available(x)
    operators = outputs_and_gradients(layer, x)
    monkeypatch.delenv("RSANET_NATIVE")
    for ours, theirs in zip(fused, operators, strict=True):
        assert_close_relative(ours, theirs, rtol=rtol)
    with torch.no_grad():
        reference = rsa_reference(layer.double(), x.double())
    layer.float()
    assert_close_relative(fused[0].double(), reference, rtol=rtol)


@pytest.mark.parametrize("kernel,context", list(itertools.product(KERNELS, CONTEXTS)))
def test_fused_kernel_matches_operators_for_every_combination(fused, monkeypatch, kernel, context):
    torch.manual_seed(0)
    layer = RSA(12, 12, num_heads=3, kernel_size=(3, 3, 5), kernel=kernel, context=context)
    layer = perturbed(layer)
    layer.computation = "reassociated"
    x = torch.randn(2, 12, 4, 5, 6)
    assert_fused_matches(layer, x, monkeypatch)


@pytest.mark.parametrize("kernel,context", list(itertools.product(KERNELS, CONTEXTS)))
@pytest.mark.parametrize(
    "heads,value_channels,latent_channels",
    # RSANet-R50's stages 1-2 and rsanet_tiny's (the shapes with constant sizes in C++), and
    # sizes that fill no tile
    [(8, 8, 8), (2, 16, 16), (4, 4, 4), (4, 8, 8), (2, 8, 8), (2, 5, 3)],
)
def test_official_order_kernels_match_operators(
    fused, monkeypatch, kernel, context, heads, value_channels, latent_channels
):
    """The authors' order: the C++ products in inference, and their forward and backward in
    training, against PyTorch's batched GEMMs (differentiated by autograd) and the float64
    reference."""
    torch.manual_seed(7)
    if kernel == "basic":
        latent_channels = value_channels  # P1 is the identity: D = dk = dv
    layer = RSA(
        6,
        heads * value_channels,
        num_heads=heads,
        kernel_size=(3, 3, 3),
        kernel=kernel,
        context=context,
        latent_channels=latent_channels,
        computation="official",
    )
    layer = perturbed(layer)
    backward_calls = []
    original = native.official_products_backward
    monkeypatch.setattr(
        native,
        "official_products_backward",
        lambda *operands: backward_calls.append(1) or original(*operands),
    )
    assert_fused_matches(layer, torch.randn(2, 6, 3, 5, 4), monkeypatch)
    assert len(backward_calls) == 1  # the fused pass, not the one with the switch off


@pytest.mark.parametrize("kernel,context", list(itertools.product(KERNELS, CONTEXTS)))
@pytest.mark.parametrize("out_channels,heads", [(32, 2), (16, 4)])  # gemm tiles, 4 x 4 loops
def test_official_order_kernel_reads_bfloat16_filters(
    fused, monkeypatch, kernel, context, out_channels, heads
):
    """Under bf16 autocast in inference the filters (K_H1, F, V_G) stay bfloat16 and the
    kernel widens them as it reads them: the same output as the operators on the same
    bfloat16 filters, and close to float32."""
    torch.manual_seed(6)
    layer = RSA(6, out_channels, num_heads=heads, kernel_size=3, kernel=kernel, context=context)
    layer = perturbed(layer).eval()
    layer.computation = "official"
    x = torch.randn(2, 6, 3, 5, 4)
    widened = []
    original = native.official_products
    monkeypatch.setattr(
        native,
        "official_products",
        lambda *operands: widened.append(operands[3].dtype) or original(*operands),
    )
    with torch.inference_mode():
        full = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fused_output = layer(x)
            monkeypatch.setenv("RSANET_NATIVE", "0")
            operators = layer(x)
    assert widened == [torch.float32, torch.bfloat16]
    assert fused_output.dtype == torch.float32
    assert_close_relative(fused_output, operators, rtol=1e-5)
    assert_close_relative(fused_output, full, rtol=3e-2)


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_kernel_matches_at_full_tiles_in_chunks_and_threads(fused, monkeypatch, threads):
    """8 heads of 32 channels fill the kernel's register tiles; three chunks of two frames
    (the last one shorter) and two threads spreading gradients onto overlapping halos."""
    torch.manual_seed(1)
    torch.set_num_threads(threads)
    layer = perturbed(RSA(16, 256, num_heads=8, kernel_size=(3, 5, 5)))
    x = torch.randn(2, 16, 5, 6, 7)
    per_frame = 6 * 7 * layer.neighbourhood_size * layer.value_channels * x.element_size()
    layer.max_unfold_bytes = 2 * per_frame
    assert_fused_matches(layer, x, monkeypatch, rtol=5e-5)


@pytest.mark.parametrize("width", [5, 6, 7, 8])  # rows of 4 positions and the 1-3 left over
@pytest.mark.parametrize("kernel_size", [(3, 3, 5), (5, 7, 7), (1, 1, 3)])
def test_filter_input_gradient_matches_the_convolution(fused, monkeypatch, width, kernel_size):
    torch.manual_seed(3)
    x = torch.randn(2, 4, 3, width, 16, requires_grad=True)
    weight = torch.randn(16 * 3, *kernel_size, requires_grad=True)
    grad = torch.randn(2, 4, 3, width, 16, 3)
    assert native.filter_applies(x)
    fused_gradients = torch.autograd.grad(
        neighbourhood_filter(x, weight, kernel_size), [x, weight], grad
    )
    monkeypatch.setenv("RSANET_NATIVE", "0")
    assert not native.filter_applies(x)
    gradients = torch.autograd.grad(neighbourhood_filter(x, weight, kernel_size), [x, weight], grad)
    for ours, theirs in zip(fused_gradients, gradients, strict=True):
        assert_close_relative(ours, theirs, rtol=1e-5)


def test_other_dtypes_take_the_operators(fused):
    assert not native.available(torch.empty(0, dtype=torch.float64))
    assert not native.available(torch.empty(0), torch.empty(0, dtype=torch.bfloat16))
    assert not native.filter_applies(torch.empty(1, 2, 2, 2, 12))  # channels not in eights


def test_build_into_an_empty_cache(fused, monkeypatch, tmp_path):
    monkeypatch.setenv("RSANET_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_library", None)
    library = native.library()
    assert library is not None and native.library() is library
    assert len(list(tmp_path.glob("rsanet/kernels-*.so"))) == 1


def test_a_failed_build_warns_once_and_the_layer_uses_operators(monkeypatch, tmp_path):
    monkeypatch.setenv("RSANET_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setattr(native, "_failed", False)
    with pytest.warns(RuntimeWarning, match="fused CPU kernel unavailable"):
        assert native.library() is None
    assert not native.available(torch.empty(0))  # no second attempt, no second warning
    torch.manual_seed(2)
    layer = perturbed(RSA(8, 8, num_heads=2, kernel_size=3, computation="reassociated"))
    x = torch.randn(1, 8, 3, 4, 4)
    with torch.no_grad():
        expected = rsa_reference(layer.double(), x.double())
    assert_close_relative(layer.float()(x).double(), expected, rtol=2e-5)
