"""Our RSA is interchangeable with the authors' layer: every golden case, outputs and grads."""

import json
from pathlib import Path

import pytest
import torch

from rsanet.compat import rsa_from_official, rsa_kwargs_from_official
from rsanet.compat.official_layer import PARAMETER_NAMES
from rsanet.layers import RSA

GOLDEN = Path(__file__).parents[1] / "golden"
CASES = torch.load(GOLDEN / "rsa_layer_cases.pt", weights_only=False)
CONSTRAINTS = json.loads((GOLDEN / "rsa_layer_constraints.json").read_text())


def test_all_seventeen_cases_are_present():
    assert len(CASES) == 17


def run(case, dtype, computation="auto"):
    layer = rsa_from_official(case["config"], case["state_dict"]).to(dtype)
    layer.computation = computation
    x = case["input"].to(dtype).requires_grad_()
    y = layer(x)
    (y * case["grad_weights"].to(dtype)).sum().backward()
    return layer, y, x.grad


@pytest.mark.parametrize("computation", ["reassociated", "official"])
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_float64_outputs_and_gradients(case, computation):
    layer, y, grad_input = run(case, torch.float64, computation)
    for actual, expected in ((y, case["output"]), (grad_input, case["grad_input"])):
        assert actual.shape == expected.shape
        assert (actual - expected).abs().max() <= 1e-9 * expected.abs().max()
    ours = dict(layer.named_parameters())
    for official, grad in case["grad_params"].items():
        mine = ours[PARAMETER_NAMES[official]].grad.reshape(grad.shape)
        assert (mine - grad).abs().max() <= 1e-9 * grad.abs().max(), official


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_float32_outputs_and_gradients(case):
    _, y, grad_input = run(case, torch.float32)
    assert (y - case["output_f32"]).abs().max() <= 1e-5
    assert (grad_input - case["grad_input_f32"]).abs().max() <= 1e-5


@pytest.mark.parametrize("constraint", CONSTRAINTS, ids=[c["case"] for c in CONSTRAINTS])
def test_constructor_constraints(constraint):
    """Configurations whose official forward fails are rejected at construction; the ones
    that work build a layer with the official (odd) stride behaviour."""
    config = constraint["config"]
    if not constraint["ok"]:
        with pytest.raises(ValueError, match=r"latent_channels|dv == dk|odd"):
            RSA(**rsa_kwargs_from_official(config))
        return
    layer = RSA(**rsa_kwargs_from_official(config))
    x = torch.randn(1, config["d_in"], 2, 8, 8)
    expected_side = 4 if max(config["stride"]) > 1 else 8
    assert layer(x).shape[-2:] == (expected_side, expected_side)


def test_our_layer_supports_basic_plus_relational_context_with_dv_not_dk():
    layer = RSA(8, 24, num_heads=2, key_channels=8, value_channels=12, kernel_size=3)
    assert layer.context_mixing.shape == (12, 12)
    assert layer(torch.randn(1, 8, 2, 4, 4)).shape == (1, 24, 2, 4, 4)


def test_state_dict_mismatch_names_the_key():
    case = CASES[0]
    broken = dict(case["state_dict"])
    broken.pop("H2.weight")
    with pytest.raises(ValueError, match="H2.weight"):
        rsa_from_official(case["config"], broken)
    with pytest.raises(ValueError, match="kernel_type"):
        rsa_from_official({**case["config"], "kernel_type": "Q"}, case["state_dict"])
