"""The Triton kernels (rsanet.layers.gpu) compute what the PyTorch operators compute.

On a GPU machine they run compiled on CUDA tensors; elsewhere ``tests/conftest.py`` sets
``TRITON_INTERPRET=1`` and Triton's interpreter runs the same kernels on CPU tensors (slowly:
the shapes here are small), with the layer's dispatch pointed at them.
"""

import os
import subprocess
import sys

import pytest
import torch

from rsanet.layers import RSA, config, gpu, rsa_reference
from rsanet.layers.backends import Backend, choose_backend
from rsanet.layers.ops import Scratch, unfold_channels_last
from rsanet.layers.ops.aggregate import _chunk_backward_with_operators
from support.layers import assert_close_relative, perturbed

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def triton_kernels(monkeypatch):
    """The layer's fused products on the Triton kernels, compiled or interpreted."""
    triton = pytest.importorskip("triton")
    monkeypatch.delenv("RSANET_TRITON", raising=False)
    if DEVICE == "cpu":
        assert triton.knobs.runtime.interpret, "tests/conftest.py sets TRITON_INTERPRET=1"
        monkeypatch.setenv("RSANET_NATIVE", "0")
        monkeypatch.setattr(gpu, "refusal", interpreted_refusal)
    else:  # exact float32 in the operators we compare with
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def interpreted_refusal(op, tensors):
    """:func:`rsanet.layers.gpu.refusal` with CPU tensors accepted (Triton's interpreter)."""
    if not config.triton_enabled():
        return "switched off"
    if not all(t.dtype == torch.float32 for t in tensors if t is not None):
        return "not float32"
    return None


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator).to(DEVICE)


def chunk_operands(heads, channels, kernel_size, frames=2, height=3, width=4, seed=0):
    """khat (P, nh, M) and a padded channels-last chunk (1, T+kt-1, H+kh-1, W+kw-1, dv)."""
    kt, kh, kw = kernel_size
    m = kt * kh * kw
    khat = randn(frames * height * width, heads, m, seed=seed)
    padded = randn(1, frames + kt - 1, height + kh - 1, width + kw - 1, channels, seed=seed + 1)
    return khat, padded


# nh below the 16 rows of a padded tl.dot operand; dv below, at and just above a power of two;
# M below and above one block of 32 neighbours
SHAPES = [(3, 12, (3, 3, 3)), (8, 32, (3, 3, 5)), (2, 17, (1, 3, 3))]


@pytest.mark.parametrize("heads,channels,kernel_size", SHAPES)
@pytest.mark.parametrize("relational", [True, False])
def test_forward_products_match_batched_gemms(
    triton_kernels, heads, channels, kernel_size, relational
):
    khat, padded = chunk_operands(heads, channels, kernel_size)
    unfolded = unfold_channels_last(padded, kernel_size)
    correlation = torch.full_like(khat, float("nan")) if relational else None
    aggregated = gpu.aggregate(khat, padded, kernel_size, correlation)
    expected = torch.bmm(khat, unfolded)
    assert_close_relative(aggregated, expected, rtol=1e-5)
    if relational:
        assert_close_relative(correlation, torch.bmm(expected, unfolded.transpose(1, 2)), rtol=1e-5)


@pytest.mark.parametrize("heads,channels,kernel_size", SHAPES)
@pytest.mark.parametrize("relational", [True, False])
def test_backward_products_match_the_operator_backward(
    triton_kernels, heads, channels, kernel_size, relational
):
    khat, padded = chunk_operands(heads, channels, kernel_size, seed=3)
    aggregated = randn(*khat.shape[:2], channels, seed=5)
    grad_aggregated = randn(*aggregated.shape, seed=6)
    grad_correlation = randn(*khat.shape, seed=7) if relational else None
    grad_padded = randn(*padded.shape, seed=8)  # the kernels add onto what is there
    expected_grad_padded = grad_padded.clone()
    correlation, expected_grad_khat = _chunk_backward_with_operators(
        khat,
        grad_correlation,
        aggregated,
        grad_aggregated,
        padded,
        expected_grad_padded,
        kernel_size,
        Scratch(padded, enabled=False),
    )
    expected_grad_aggregated = grad_aggregated.clone()
    if relational:
        expected_grad_aggregated += torch.bmm(
            grad_correlation, unfold_channels_last(padded, kernel_size)
        )

    grad_khat = torch.full_like(khat, float("nan"))
    ours_correlation = torch.full_like(khat, float("nan")) if relational else None
    gpu.aggregate_backward(
        khat,
        grad_correlation,
        aggregated,
        grad_aggregated,
        padded,
        grad_khat,
        ours_correlation,
        grad_padded,
        kernel_size,
    )
    assert_close_relative(grad_aggregated, expected_grad_aggregated, rtol=1e-5)
    assert_close_relative(grad_khat, expected_grad_khat, rtol=1e-5)
    assert_close_relative(grad_padded, expected_grad_padded, rtol=1e-5)
    if relational:
        assert_close_relative(ours_correlation, correlation, rtol=1e-5)


def test_non_contiguous_operands_are_refused(triton_kernels):
    khat, padded = chunk_operands(3, 12, (3, 3, 3))
    strided = khat.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    with pytest.raises(ValueError, match="contiguous"):
        gpu.aggregate(strided, padded, (3, 3, 3), None)


def outputs_and_gradients(layer: RSA, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        inference = layer(x)
    x = x.detach().requires_grad_()
    y = layer(x)
    weights = randn(*y.shape, seed=5)
    return [inference, y, *torch.autograd.grad((y * weights).sum(), [x, *layer.parameters()])]


@pytest.mark.parametrize(
    "kernel,context",
    [("basic+relational", "basic+relational"), ("basic", "relational"), ("relational", "basic")],
)
def test_layer_on_the_kernels_matches_operators_and_reference(
    triton_kernels, monkeypatch, kernel, context
):
    torch.manual_seed(0)
    layer = RSA(8, 12, num_heads=3, kernel_size=(3, 3, 3), kernel=kernel, context=context)
    layer = perturbed(layer).to(DEVICE)
    layer.computation = "reassociated"
    x = randn(2, 8, 3, 3, 4, seed=1)
    assert choose_backend("aggregate", x) is Backend.TRITON
    fused = outputs_and_gradients(layer, x)
    monkeypatch.setenv("RSANET_TRITON", "0")
    assert choose_backend("aggregate", x) is Backend.OPERATORS
    operators = outputs_and_gradients(layer, x)
    for ours, theirs in zip(fused, operators, strict=True):
        assert_close_relative(ours, theirs, rtol=2e-5)
    with torch.no_grad():
        reference = rsa_reference(layer.double(), x.double())
    assert_close_relative(fused[0].double(), reference, rtol=2e-5)


def test_kernels_apply_to_float32_gpu_tensors_only(monkeypatch):
    monkeypatch.delenv("RSANET_TRITON", raising=False)
    assert not gpu.available(torch.empty(0))  # CPU: the C++ kernels or the operators
    cpu_choice = choose_backend("aggregate", torch.empty(0))
    assert cpu_choice in (Backend.NATIVE, Backend.OPERATORS)
    if torch.cuda.is_available() and gpu.installed():
        assert gpu.available(torch.empty(0, device="cuda"))
        assert not gpu.available(torch.empty(0, device="cuda", dtype=torch.float16))
        monkeypatch.setenv("RSANET_TRITON", "0")
        assert not gpu.available(torch.empty(0, device="cuda"))
    if gpu.installed():
        monkeypatch.delenv("RSANET_TRITON", raising=False)
        assert gpu.available()  # no tensor to refuse
    monkeypatch.setattr(gpu, "installed", lambda: False)
    assert not gpu.available()


COMPILE_FOR = """
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from rsanet.layers.gpu import kernels

capability = int(sys.argv[1])
integers = ["frames", "height", "width", "padded_height", "padded_width"]
for heads, channels in [(8, 64), (3, 12)]:
    for relational in (True, False):
        sizes = dict(HEADS=heads, CHANNELS=channels, NEIGHBOURS=245, RELATIONAL=relational,
                     CHANNELS_P=max(16, 1 << (channels - 1).bit_length()))
        for kernel, heads_p, block in [
            (kernels.aggregate_forward, 16, 32),
            (kernels.aggregate_backward, 16, 32),
            (kernels.spread_backward, 1 << (heads - 1).bit_length(), 16),
        ]:
            constants = dict(sizes, HEADS_P=heads_p, BLOCK=block)
            signature = {
                name: "constexpr" if name in constants
                else "i32" if name in integers
                else "*i64" if name == "offsets"
                else "*fp32"
                for name in kernel.arg_names
            }
            source = ASTSource(kernel, signature, constexprs=constants)
            compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32))
            assert len(compiled.asm["cubin"]) > 0
            print(kernel.__name__, heads, channels, relational, "ok")
"""


@pytest.mark.parametrize("capability", [80, 90])  # A100, H100/H200
def test_kernels_compile_for_nvidia_gpus(capability, tmp_path):
    """Compiled ahead of time down to machine code (ptxas), no GPU needed: catches what the
    interpreter lets through (tl.dot operand sizes, types) at RSANet-R50's stage-4 shape and
    at sizes below the blocks."""
    pytest.importorskip("triton")
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    environment["TRITON_CACHE_DIR"] = str(tmp_path)
    environment["TRITON_DEFAULT_FP_FUSION"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", COMPILE_FOR, str(capability)],
        env=environment,
        capture_output=True,
        text=True,
    )
    if "ptxas" in result.stderr and "not found" in result.stderr.lower():
        pytest.skip("Triton's CUDA backend has no ptxas here")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(" ok") == 12
