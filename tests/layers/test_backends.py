"""One function chooses who computes each operator; every backend is one ``rsanet::`` op."""

import logging

import pytest
import torch

from rsanet.layers import RSA, config, gpu, native
from rsanet.layers.backends import Backend, choose_backend
from rsanet.layers.ops import official_products
from rsanet.layers.ops.aggregate import _forward_with_operators
from support.layers import assert_close_relative, perturbed


@pytest.fixture
def native_kernels(monkeypatch):
    monkeypatch.delenv("RSANET_NATIVE", raising=False)
    if native.library() is None:
        pytest.skip("the fused CPU kernels cannot be built here (no C++ compiler?)")


def test_float32_cpu_tensors_take_the_cpu_kernels(native_kernels):
    x = torch.empty(2, 3)
    assert choose_backend("aggregate", x, None) is Backend.NATIVE
    assert choose_backend("official_products", x, None, None, x, None) is Backend.NATIVE
    assert choose_backend("neighbourhood_filter", x) is Backend.OPERATORS  # no fused kernel


def test_the_official_products_kernel_reads_bfloat16_filters_only(native_kernels, caplog):
    """K_H1 and the filtered values may be bfloat16 together; anything else in another
    type than float32 is refused with its name, by the backend choice and by the kernel."""
    caplog.set_level(logging.DEBUG, logger="rsanet.layers.backends")
    q, stored = torch.empty(4, 2, 3), torch.empty(4, 3, 3, dtype=torch.bfloat16)
    assert choose_backend("official_products", q, stored, None, stored, None) is Backend.NATIVE
    mixed = (q, stored, None, stored.float(), None)
    assert choose_backend("official_products", *mixed) is Backend.OPERATORS
    assert "K_H1 (torch.bfloat16) and the filtered values (torch.float32) differ" in caplog.text
    with pytest.raises(TypeError, match=r"K_H1 \(torch.bfloat16\) and the filtered values"):
        native.official_products(*mixed)
    reduced_queries = (q.bfloat16(), None, None, stored, None)
    assert choose_backend("official_products", *reduced_queries) is Backend.OPERATORS
    assert "queries in torch.bfloat16 not supported" in caplog.text


def test_refusals_are_logged_with_their_reason(native_kernels, caplog):
    caplog.set_level(logging.DEBUG, logger="rsanet.layers.backends")
    x = torch.empty(2, 8, dtype=torch.float64)
    assert choose_backend("aggregate", x) is Backend.OPERATORS
    assert "aggregate: native refused, dtype torch.float64 not supported" in caplog.text
    assert "aggregate: triton refused, device cpu is not a GPU" in caplog.text
    assert "aggregate: operators chosen" in caplog.text
    caplog.clear()
    assert choose_backend("filter_input_grad", torch.empty(1, 12)) is Backend.OPERATORS
    assert "native refused, 12 channels, not a multiple of 8" in caplog.text


def test_the_switches_are_separate_and_read_at_every_call(native_kernels, monkeypatch):
    x = torch.empty(4)
    monkeypatch.setenv("RSANET_TRITON", "0")
    assert not config.triton_enabled() and config.native_enabled()
    assert choose_backend("aggregate", x) is Backend.NATIVE  # the C++ kernels stay on
    monkeypatch.setenv("RSANET_NATIVE", "0")
    assert choose_backend("aggregate", x) is Backend.OPERATORS
    monkeypatch.delenv("RSANET_TRITON")
    assert config.triton_enabled() and not config.native_enabled()
    # Triton stays on with the C++ kernels off (shown on CPU tensors, as if they were a GPU's)
    monkeypatch.setattr(gpu, "installed", lambda: True)
    assert gpu.refusal("aggregate", []) is None
    assert "RSANET_TRITON=0" not in (gpu.refusal("aggregate", [x]) or "")
    monkeypatch.setenv("RSANET_TRITON", "0")
    assert gpu.refusal("aggregate", []) == "switched off (RSANET_TRITON=0)"


def test_tracing_for_export_is_chosen_before_any_kernel(native_kernels):
    choices = []

    def choice(x):
        choices.append(choose_backend("aggregate", x))
        return x + 1

    torch.jit.trace(choice, torch.empty(3), check_trace=False)
    assert choices == [Backend.TRACING]


def test_the_layer_is_one_rsanet_op_for_torch_export():
    torch.manual_seed(0)
    layer = RSA(8, 8, num_heads=2, kernel_size=3, computation="reassociated").eval()
    x = torch.randn(1, 8, 3, 5, 5)
    program = torch.export.export(layer, (x,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "rsanet.aggregate_neighbourhoods.default" in targets
    assert "rsanet.neighbourhood_filter.default" in targets
    with torch.no_grad():
        assert torch.allclose(program.module()(x), layer(x), rtol=1e-5, atol=1e-6)


def test_official_order_inference_is_one_op_under_export():
    torch.manual_seed(1)
    layer = RSA(8, 8, num_heads=2, kernel_size=3, computation="official").eval()
    x = torch.randn(1, 8, 3, 4, 4)
    with torch.no_grad():
        program = torch.export.export(layer, (x,))
        expected = layer(x)
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "rsanet.official_products.default" in targets
    assert torch.allclose(program.module()(x), expected, rtol=1e-5, atol=1e-6)


def aggregate_operands(dtype, relational=True, requires_grad=False):
    generator = torch.Generator().manual_seed(2)
    n, t, h, w, nh, dd, dv = 1, 2, 3, 3, 2, 3, 8
    kernel_size = [3, 3, 3]

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_(requires_grad)

    return (
        randn(n, t, h * w, nh, dd),
        randn(dd, *kernel_size),
        randn(n, t + 2, h + 2, w + 2, dv),
        randn(dv, *kernel_size) if relational else None,
        randn(dv, dv),
        kernel_size,
        True,
        1,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # C++ kernels, operators
@pytest.mark.parametrize("relational", [True, False])
def test_aggregate_op_passes_opcheck(dtype, relational):
    arguments = aggregate_operands(dtype, relational, requires_grad=True)
    op = torch.ops.rsanet.aggregate_neighbourhoods.default
    torch.library.opcheck(op, arguments, atol=1e-4, rtol=1e-4)


def test_aggregate_op_kernels_agree_with_the_operators():
    arguments = aggregate_operands(torch.float32)
    out, aggregated = torch.ops.rsanet.aggregate_neighbourhoods(*arguments)
    expected_out, expected_aggregated = _forward_with_operators(*arguments)
    assert_close_relative(out, expected_out, rtol=2e-5)
    assert_close_relative(aggregated, expected_aggregated, rtol=2e-5)


@pytest.mark.parametrize("channels", [8, 6])  # the C++ input gradient, the convolution's
def test_filter_op_passes_opcheck(channels):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 4, 4, channels, generator=generator).requires_grad_()
    weight = torch.randn(channels * 2, 3, 3, 3, generator=generator).requires_grad_()
    op = torch.ops.rsanet.neighbourhood_filter.default
    torch.library.opcheck(op, (x, weight, [3, 3, 3]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_official_products_op_passes_opcheck(dtype):
    generator = torch.Generator().manual_seed(4)
    p, nh, dk, dv, dd = 6, 2, 4, 4, 3

    def randn(*shape):  # requiring gradients: opcheck runs the registered backward too
        return torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_()

    arguments = (randn(p, nh, dk), randn(p, dk, dd), randn(dk, dd), randn(p, dv, dd + dv), None)
    op = torch.ops.rsanet.official_products.default
    torch.library.opcheck(op, arguments, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "key_summary,basic,relational,mixing",
    [(True, True, True, True), (True, False, True, False), (False, False, False, False)],
)
def test_official_products_gradients_pass_gradcheck(key_summary, basic, relational, mixing):
    """The backward's formulas (the PyTorch operators that compute it off the C++ kernel's
    float32 CPU path) against numerical derivatives, in float64."""
    generator = torch.Generator().manual_seed(8)
    p, nh, dk, dv = 5, 2, 3, 4
    dd = 2 if key_summary else dk

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_()

    operands = (
        randn(p, nh, dk),
        randn(p, dk, dd) if key_summary else None,
        randn(dk, dd) if basic else None,
        randn(p, dv, dd + dv if relational else dd),
        randn(dv, dv) if mixing else None,
    )
    assert choose_backend("official_products_backward", *operands) is Backend.OPERATORS
    assert torch.autograd.gradcheck(official_products, operands)


def test_the_layer_compiles_with_the_ops_in_its_graph():
    torch.manual_seed(5)
    layer = perturbed(RSA(8, 8, num_heads=2, kernel_size=3, computation="reassociated"))
    x = torch.randn(1, 8, 3, 4, 4)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    expected = layer(x)
    assert torch.allclose(compiled(x), expected, rtol=1e-5, atol=1e-6)
