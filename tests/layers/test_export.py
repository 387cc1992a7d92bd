"""RSA and local self-attention export to ONNX and TorchScript with the same outputs."""

import io

import pytest
import torch

from rsanet.layers import RSA, LocalSelfAttention

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

LAYERS = {
    "rsa": lambda: RSA(16, 16, num_heads=2, kernel_size=(3, 5, 5), stride=2),
    "rsa_basic_relational": lambda: RSA(
        16, 16, num_heads=2, kernel_size=3, kernel="basic", context="relational"
    ),
    "self_attention": lambda: LocalSelfAttention(16, 16, num_heads=2, kernel_size=(3, 5, 5)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_onnx_and_torchscript_match_pytorch(name):
    torch.manual_seed(0)
    layer = LAYERS[name]().eval()
    x = torch.randn(1, 16, 4, 8, 8)
    with torch.no_grad():
        expected = layer(x)
    buffer = io.BytesIO()
    torch.onnx.export(layer, (x,), buffer, opset_version=17, dynamo=False)
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
    session = ort.InferenceSession(buffer.getvalue())
    (exported,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert abs(torch.from_numpy(exported) - expected).max() < 1e-5
    traced = torch.jit.trace(layer, x)
    assert torch.allclose(traced(x), expected, atol=1e-6)


def test_inference_path_equals_training_path():
    torch.manual_seed(1)
    layer = RSA(8, 8, num_heads=2, kernel_size=3).double()
    x = torch.randn(1, 8, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        inference = layer(x)
    assert torch.equal(layer(x).detach(), inference)
