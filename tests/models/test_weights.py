"""ImageNet inflation, our checkpoints (save, rebuild, load) and misfitting checkpoints."""

import fractions
import os

import pytest
import torch
from resnet_layout import random_state_dict, resnet2d_features, resnet_layout

import rsanet
from rsanet.layers import RSA
from rsanet.models import (
    CheckpointMismatchError,
    create_model,
    load_imagenet_resnet,
    load_model,
    read_checkpoint,
    save_checkpoint,
)

R50 = ("bottleneck", (3, 4, 6, 3))
R18 = ("basic", (2, 2, 2, 2))


@pytest.fixture(scope="module")
def imagenet_r50():
    return random_state_dict(resnet_layout(*R50), seed=1)


def test_imagenet_kernels_are_inflated_to_1xkxk(imagenet_r50):
    model = create_model("rsanet_r50")
    fc_before = model.fc.weight.clone()
    rsa_before = model.layer3[1].conv2.relational_kernel_weight.clone()
    result = load_imagenet_resnet(model, imagenet_r50)
    ours = model.state_dict()
    for key, tensor in imagenet_r50.items():
        if key.startswith("fc.") or key in result.unused:
            continue
        if tensor.dim() == 4:
            assert ours[key].shape == (tensor.shape[0], tensor.shape[1], 1, *tensor.shape[2:])
            assert torch.equal(ours[key][:, :, 0], tensor), key
        else:
            assert torch.equal(ours[key], tensor), key
    # the RSA layers (the replaced 3x3 convolutions) and the classifier are left alone
    replaced = [
        f"{b}.conv2.weight"
        for b in (
            "layer1.2",
            "layer2.1",
            "layer2.3",
            "layer3.1",
            "layer3.3",
            "layer3.5",
            "layer4.1",
        )
    ]
    assert sorted(result.unused) == sorted(["fc.weight", "fc.bias", *replaced])
    assert torch.equal(model.fc.weight, fc_before)
    assert torch.equal(model.layer3[1].conv2.relational_kernel_weight, rsa_before)
    assert "layer3.1.bn2.weight" in result.loaded  # bn2 after the RSA layer is ImageNet's
    assert all(
        k.startswith(("fc.", *[r[: -len("weight")] for r in replaced])) for k in result.not_loaded
    )
    assert "layer3.1.conv2.projection.weight" in result.not_loaded
    assert set(result.loaded) | set(result.not_loaded) == set(ours)


def test_inflated_tsn_computes_the_2d_resnet_on_every_frame():
    torch.manual_seed(0)
    block, layers = R18
    state = random_state_dict(resnet_layout(block, layers), seed=2)
    model = create_model("tsn_r18", num_classes=3).eval()
    result = load_imagenet_resnet(model, state)
    assert result.unused == ["fc.weight", "fc.bias"]
    clip = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(clip)  # (N, C, T, h, w)
        frames = clip.transpose(1, 2).reshape(6, 3, 64, 64)
        expected = resnet2d_features(state, frames, block, layers)
    expected = expected.reshape(2, 3, *expected.shape[1:]).transpose(1, 2)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)


def test_pretrained_path_and_module_prefix(tmp_path):
    state = random_state_dict(resnet_layout(*R18, num_classes=1000), seed=3)
    path = tmp_path / "resnet18.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    model = rsanet.create_model("rsanet_r18", num_classes=4, pretrained=path)
    assert torch.equal(model.layer2[0].conv1.weight[:, :, 0], state["layer2.0.conv1.weight"])
    assert isinstance(model.layer2[1].conv2, RSA)
    # old torchvision files have no num_batches_tracked: still a fit
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    load_imagenet_resnet(create_model("tsn_r18"), old)


def test_imagenet_misfit_names_keys_and_both_shapes():
    state = random_state_dict(resnet_layout(*R18), seed=4)
    with pytest.raises(
        CheckpointMismatchError,
        match=(
            r"ImageNet checkpoint does not fit tsn_r50: .*shape mismatch.*"
            r"layer1\.0\.conv1\.weight: checkpoint \(64, 64, 3, 3\) vs model \(64, 64, 1, 1, 1\)"
        ),
    ):
        load_imagenet_resnet(create_model("tsn_r50"), state)
    partial = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    with pytest.raises(
        CheckpointMismatchError, match=r"missing from the checkpoint, e\.g\. layer4\.0"
    ):
        load_imagenet_resnet(create_model("tsn_r18"), partial)
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        create_model("tsn_r18", pretrained="/nonexistent/resnet18.pth")


def test_checkpoint_round_trip_rebuilds_the_model(tmp_path):
    torch.manual_seed(0)
    model = create_model(
        "rsanet_tiny", num_classes=5, num_frames=4, drop_path_rate=0.1, zero_init_residual=False
    )
    for bn in model.modules():  # make BatchNorm statistics non-trivial
        if isinstance(bn, torch.nn.BatchNorm3d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
    model.eval()
    path = save_checkpoint(tmp_path / "ckpt" / "model.pt", model, classes=list("abcde"), epoch=3)
    assert os.listdir(tmp_path / "ckpt") == ["model.pt"]  # no temporary file left behind
    checkpoint = read_checkpoint(path)
    assert checkpoint["model"] == "rsanet_tiny"
    assert checkpoint["model_config"] == {
        "num_classes": 5,
        "num_frames": 4,
        "drop_path_rate": 0.1,
        "zero_init_residual": False,
    }
    assert checkpoint["classes"] == list("abcde") and checkpoint["epoch"] == 3
    restored = rsanet.load_model(path)
    assert not restored.training
    assert restored.rsanet_config == model.rsanet_config
    assert restored.layer4[2].drop_path.drop_prob == pytest.approx(0.1)
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)
    assert isinstance(load_model(checkpoint), type(model))  # a loaded dict works too


def test_save_checkpoint_overwrites_atomically_and_checks_arguments(tmp_path):
    model = create_model("tsn_tiny", num_classes=2)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model)
    save_checkpoint(path, model, note="again")
    assert read_checkpoint(path)["note"] == "again"
    with pytest.raises(ValueError, match=r"extra entries may not be named \['state_dict'\]"):
        save_checkpoint(path, model, state_dict={})
    bare = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="build it with rsanet.create_model"):
        save_checkpoint(path, bare)


def test_checkpoint_misfit_names_keys_and_both_shapes(tmp_path):
    model = create_model("tsn_tiny", num_classes=2)
    checkpoint = read_checkpoint(save_checkpoint(tmp_path / "m.pt", model))
    checkpoint["state_dict"]["layer2.0.conv1.weight"] = torch.zeros(3, 3, 1, 1, 1)
    with pytest.raises(
        CheckpointMismatchError,
        match=(
            r"checkpoint does not fit tsn_tiny: 1 shape mismatch\(es\): layer2\.0\.conv1\.weight: "
            r"checkpoint \(3, 3, 1, 1, 1\) vs model \(32, 64, 1, 1, 1\)"
        ),
    ):
        load_model(checkpoint)
    del checkpoint["state_dict"]["layer2.0.conv1.weight"]
    checkpoint["state_dict"]["layer9.weight"] = torch.zeros(1)
    with pytest.raises(
        CheckpointMismatchError,
        match=(
            r"1 key\(s\) missing from the checkpoint, e\.g\. "
            r"layer2\.0\.conv1\.weight \(32, 64, 1, 1, 1\)"
            r".*1 unexpected key\(s\) in the checkpoint, e\.g\. layer9\.weight \(1,\)"
        ),
    ):
        load_model(checkpoint)
    with pytest.raises(ValueError, match="not an rsanet checkpoint"):
        load_model({"state_dict": {}})
    with pytest.raises(ValueError, match=r"unknown model 'resnet_x'"):
        load_model({**checkpoint, "model": "resnet_x"})


def test_unsafe_checkpoint_files_are_refused_with_a_hint(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"model": "tsn_tiny", "extra": fractions.Fraction(1, 3)}, path)
    with pytest.raises(ValueError, match=r"torch\.load\(path, weights_only=False\)"):
        read_checkpoint(path)
