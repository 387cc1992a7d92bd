"""The authors' RSANet-R50 checkpoint layout maps onto our rsanet_r50, key by key.

A synthetic checkpoint in their conventions (``module.base_model.`` + torchvision names
with 1 x k x k kernels, official RSA parameters at ``layer{s}.{i}.conv2.*``, layer 1.2
holding the golden case computed by the authors' own RSA code, and the per-frame Conv1d
classifier ``module.new_fc`` of shape (classes, 2048, 1)): every tensor lands in its
place, with or without the ``module.`` prefix, and misfits are named. The network's
outputs are checked against the authors' own network in test_official_network.py.
"""

from pathlib import Path

import pytest
import torch

from rsanet.compat import rsa_from_official
from rsanet.compat.official_checkpoint import (
    OFFICIAL_RSA_ARGS,
    load_official_checkpoint,
    official_clip_to_ours,
)
from rsanet.layers import RSA
from rsanet.models import CheckpointMismatchError
from support.resnet_layout import random_state_dict, resnet_layout

GOLDEN = Path(__file__).parents[1] / "golden" / "rsa_layer_cases.pt"
RSA_BLOCKS = ["layer1.2", "layer2.1", "layer2.3", "layer3.1", "layer3.3", "layer3.5", "layer4.1"]
PLANES = {"1": 64, "2": 128, "3": 256, "4": 512}


def golden_case():
    cases = torch.load(GOLDEN, weights_only=False)
    return next(c for c in cases if c["name"] == "rsanet_default_d64")


def official_rsa_tensors(planes: int, seed: int) -> dict[str, torch.Tensor]:
    """An official VplusR/VplusR layer's parameters (nh 8, dk = dv = dd = planes/8, 5x7x7)."""
    g = torch.Generator().manual_seed(seed)
    d = planes // 8
    shapes = {
        "projection.weight": (8 * d + d + d, planes, 1, 1, 1),
        "H1.weight": (d * d, 1, 5, 7, 7),  # grouped convolution, groups = dk
        "H2.weight": (d, 1, 5, 7, 7),
        "G.weight": (d, 1, 5, 7, 7),
        "P1": (1, d, d),
        "I": (1, d, d),
    }
    return {k: torch.randn(s, generator=g) * 0.1 for k, s in shapes.items()}


@pytest.fixture(scope="module")
def official():
    """(their state dict without ``module.``, the per-layer RSA dicts)."""
    layout = resnet_layout("bottleneck", (3, 4, 6, 3), num_classes=None, kernel_dims=3)
    layout = {
        k: v for k, v in layout.items() if not any(k.startswith(f"{b}.conv2.") for b in RSA_BLOCKS)
    }
    state = {f"base_model.{k}": v for k, v in random_state_dict(layout, seed=5).items()}
    layers = {}
    for i, block in enumerate(RSA_BLOCKS):
        if block == "layer1.2":
            layers[block] = dict(golden_case()["state_dict"])
        else:
            layers[block] = official_rsa_tensors(PLANES[block[5]], seed=10 + i)
        state |= {f"base_model.{block}.conv2.{k}": v for k, v in layers[block].items()}
    g = torch.Generator().manual_seed(6)
    state["new_fc.weight"] = torch.randn(174, 2048, 1, generator=g) * 0.05
    state["new_fc.bias"] = torch.randn(174, generator=g)
    return state, layers


@pytest.fixture(scope="module")
def loaded(official):
    state, _ = official
    return load_official_checkpoint({"state_dict": {f"module.{k}": v for k, v in state.items()}})


def test_every_tensor_lands_in_its_place(official, loaded):
    state, layers = official
    ours = loaded.state_dict()
    assert loaded.model_name == "rsanet_r50" and not loaded.training
    for key, tensor in state.items():
        in_rsa = any(key.startswith(f"base_model.{b}.conv2.") for b in RSA_BLOCKS)
        if key.startswith("base_model.") and not in_rsa:
            assert torch.equal(ours[key[len("base_model.") :]], tensor), key
    assert torch.equal(loaded.fc.weight, state["new_fc.weight"][:, :, 0])
    assert torch.equal(loaded.fc.bias, state["new_fc.bias"])
    for block in RSA_BLOCKS:
        planes = PLANES[block[5]]
        reference = rsa_from_official(
            {"d_in": planes, "d_out": planes, **OFFICIAL_RSA_ARGS}, layers[block]
        )
        layer = loaded.get_submodule(f"{block}.conv2")
        assert isinstance(layer, RSA)
        assert layer.extra_repr() == reference.extra_repr()
        for key, tensor in reference.state_dict().items():
            assert torch.equal(layer.state_dict()[key], tensor), (block, key)


def test_rsa_layer_reproduces_the_authors_code(loaded):
    case = golden_case()
    with torch.no_grad():
        out = loaded.layer1[2].conv2(case["input"])
    assert (out - case["output_f32"]).abs().max() <= 1e-5


def test_file_without_module_prefix(official, loaded, tmp_path):
    state, _ = official
    path = tmp_path / "resnet_rgb_model_best.pth.tar"
    torch.save({"epoch": 50, "arch": "ResNet", "best_prec1": 51.9, "state_dict": state}, path)
    model = load_official_checkpoint(path, num_classes=174, num_frames=16)
    assert model.num_frames == 16
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key


def test_misfits_are_named(official):
    state, _ = official
    with pytest.raises(
        CheckpointMismatchError,
        match=r"new_fc\.weight has shape \(174, 2048, 1\): "
        r"174 classes, not num_classes=10; pass num_classes=174",
    ):
        load_official_checkpoint(state, num_classes=10)
    bad = dict(state)
    bad["base_model.layer2.0.conv1.weight"] = torch.zeros(128, 256, 1, 3, 3)
    with pytest.raises(
        CheckpointMismatchError,
        match=(
            r"official checkpoint does not fit rsanet_r50: 1 shape mismatch\(es\): "
            r"layer2\.0\.conv1\.weight: official checkpoint \(128, 256, 1, 3, 3\) "
            r"vs model \(128, 256, 1, 1, 1\)"
        ),
    ):
        load_official_checkpoint(bad)
    missing = {k: v for k, v in state.items() if k != "base_model.layer4.2.bn3.running_var"}
    with pytest.raises(
        CheckpointMismatchError, match=r"missing .* layer4\.2\.bn3\.running_var \(2048,\)"
    ):
        load_official_checkpoint(missing)
    no_rsa = {k: v for k, v in state.items() if k != "base_model.layer3.3.conv2.H1.weight"}
    with pytest.raises(
        ValueError, match=r"missing official RSA parameter base_model\.layer3\.3\.conv2\.H1"
    ):
        load_official_checkpoint(no_rsa)
    wrong_rsa = dict(state)
    wrong_rsa["base_model.layer3.3.conv2.H2.weight"] = torch.zeros(32, 1, 3, 7, 7)
    with pytest.raises(
        ValueError, match=r"layer3\.3\.conv2\.H2\.weight has shape \(32, 1, 3, 7, 7\)"
    ):
        load_official_checkpoint(wrong_rsa)
    with pytest.raises(ValueError, match="not an official RSANet checkpoint"):
        load_official_checkpoint({"state_dict": {"conv1.weight": torch.zeros(1)}})
    with pytest.raises(ValueError, match=r"official clip layout is \(N, 24, H, W\)"):
        official_clip_to_ours(torch.zeros(1, 3, 8, 32, 32), 8)
