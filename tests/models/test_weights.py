"""ImageNet inflation, our checkpoints (save, rebuild, load) and misfitting checkpoints."""

import fractions
import os
import random

import pytest
import torch

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
from support.resnet_layout import random_state_dict, resnet2d_features, resnet_layout

R50 = ("bottleneck", (3, 4, 6, 3))
R18 = ("basic", (2, 2, 2, 2))
RSA_BLOCKS = ["layer1.2", "layer2.1", "layer2.3", "layer3.1", "layer3.3", "layer3.5", "layer4.1"]


@pytest.fixture(scope="module")
def imagenet_r50():
    return random_state_dict(resnet_layout(*R50), seed=1)


def _inflated(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.unsqueeze(2) if tensor.dim() == 4 else tensor


def test_default_leaves_whole_rsa_blocks_as_initialised(imagenet_r50):
    """The authors' rule: every key of a block holding RSA keeps its initialisation."""
    model = create_model("rsanet_r50")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = load_imagenet_resnet(model, imagenet_r50)
    ours = model.state_dict()
    blocks = [name for name, _ in model.named_blocks()]
    assert [b for b, block in model.named_blocks() if isinstance(block.conv2, RSA)] == RSA_BLOCKS
    for block in blocks:
        checkpoint_keys = {k for k in imagenet_r50 if k.startswith(f"{block}.")}
        model_keys = {k for k in ours if k.startswith(f"{block}.")}
        if block in RSA_BLOCKS:
            assert checkpoint_keys <= set(result.unused), block
            assert model_keys <= set(result.not_loaded), block
            assert not model_keys & set(result.loaded), block
            for key in model_keys:
                assert torch.equal(ours[key], before[key]), key
            assert torch.all(ours[f"{block}.bn3.weight"] == 0), block  # zero_init_residual
        else:
            assert model_keys - {k for k in model_keys if k.endswith("num_batches_tracked")} <= (
                set(result.loaded)
            ), block
            for key in checkpoint_keys:
                assert torch.equal(ours[key], _inflated(imagenet_r50[key])), key
    skipped = [k for k in imagenet_r50 if k.startswith(tuple(f"{b}." for b in RSA_BLOCKS))]
    assert sorted(result.unused) == sorted(["fc.weight", "fc.bias", *skipped])
    assert all(k.startswith(("fc.", *[f"{b}." for b in RSA_BLOCKS])) for k in result.not_loaded)
    assert set(result.loaded) | set(result.not_loaded) == set(ours)
    for key, tensor in imagenet_r50.items():  # everything else is inflated and copied
        if key not in result.unused:
            assert torch.equal(ours[key], _inflated(tensor)), key


def test_keep_non_transform_layers_option_loads_around_the_rsa_layer(imagenet_r50):
    """Ours, not the authors': only the replaced 3x3 convolution keeps its initialisation."""
    model = create_model("rsanet_r50")
    fc_before = model.fc.weight.clone()
    rsa_before = model.layer3[1].conv2.relational_kernel_weight.clone()
    result = load_imagenet_resnet(model, imagenet_r50, transform_blocks="imagenet-except-transform")
    ours = model.state_dict()
    for key, tensor in imagenet_r50.items():
        if key.startswith("fc.") or key in result.unused:
            continue
        if tensor.dim() == 4:
            assert ours[key].shape == (tensor.shape[0], tensor.shape[1], 1, *tensor.shape[2:])
            assert torch.equal(ours[key][:, :, 0], tensor), key
        else:
            assert torch.equal(ours[key], tensor), key
    replaced = [f"{b}.conv2.weight" for b in RSA_BLOCKS]
    assert sorted(result.unused) == sorted(["fc.weight", "fc.bias", *replaced])
    assert torch.equal(model.fc.weight, fc_before)
    assert torch.equal(model.layer3[1].conv2.relational_kernel_weight, rsa_before)
    stats = ("weight", "bias", "running_mean", "running_var")
    bns = [f"{bn}.{stat}" for bn in ("bn1", "bn2", "bn3") for stat in stats]
    parts = ["conv1.weight", "conv3.weight", *bns]
    for block in RSA_BLOCKS:
        for part in parts:
            assert f"{block}.{part}" in result.loaded, (block, part)
            assert torch.equal(ours[f"{block}.{part}"], _inflated(imagenet_r50[f"{block}.{part}"]))
    assert all(
        k.startswith(("fc.", *[r[: -len("weight")] for r in replaced])) for k in result.not_loaded
    )
    assert "layer3.1.conv2.projection.weight" in result.not_loaded
    assert set(result.loaded) | set(result.not_loaded) == set(ours)
    with pytest.raises(ValueError, match=r"transform_blocks must be one of 'fresh', "):
        load_imagenet_resnet(model, imagenet_r50, transform_blocks="paper")


def test_pretrained_rsa_blocks_start_as_identity_residuals(imagenet_r50, tmp_path):
    """With the default initialisation an RSA block adds nothing to its shortcut, so the
    pretrained network starts as the ImageNet ResNet without those blocks."""
    path = tmp_path / "resnet50.pth"
    torch.save(imagenet_r50, path)
    model = create_model("rsanet_r50", num_classes=5, pretrained=path).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for name, block in model.named_blocks():
            if name not in RSA_BLOCKS:
                continue
            assert block.downsample is None
            assert torch.all(block.bn3.weight == 0) and torch.all(block.bn3.bias == 0), name
            x = torch.randn(2, block.conv1.in_channels, 3, 5, 5)
            assert torch.equal(block.residual(x), torch.zeros_like(x)), name
            assert torch.equal(block(x.clone()), torch.relu(x)), name
        # an ImageNet block's residual branch is not zero
        assert not torch.all(model.layer3[2].bn3.weight == 0)
    kept = create_model(
        "rsanet_r50", pretrained=path, pretrained_transform_blocks="imagenet-except-transform"
    )
    assert torch.equal(kept.layer3[1].bn3.weight, imagenet_r50["layer3.1.bn3.weight"])
    with pytest.raises(ValueError, match=r"pretrained_transform_blocks must be one of 'fresh'"):
        create_model("rsanet_r18", pretrained_transform_blocks="authors")
    create_model("rsanet_r18", pretrained_transform_blocks="fresh")  # no effect without a file


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


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, to make an export
def test_files_that_are_not_checkpoints_say_what_they_are(tmp_path):
    """Random bytes, an empty file, a video, text, a truncated checkpoint, a TorchScript
    export: NotACheckpointError saying what the file is; the advice to load with
    weights_only=False is kept for real checkpoints holding foreign objects."""
    from rsanet.models.weights import NotACheckpointError

    model = create_model("tsn_tiny", num_classes=2)
    good = save_checkpoint(tmp_path / "good.pt", model).read_bytes()
    files = {
        "random.pt": (random.Random(1).randbytes(4096), "is not a PyTorch checkpoint (its"),
        "empty.pt": (b"", "is empty (0 bytes)"),
        "clip.mp4": (b"\x00\x00\x00\x20ftypisom" + os.urandom(512), "is an MP4/MOV video"),
        "notes.pt": (b"lr: 0.1\nepochs: 3\n", "is a text file"),
        "cut.pt": (good[: len(good) // 2], "is truncated or damaged"),
    }
    for name, (data, message) in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(NotACheckpointError) as error:
            read_checkpoint(path)
        assert str(error.value).startswith(f"{path} {message}"), name
        assert "weights_only" not in str(error.value)

    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(scripted))
    with pytest.raises(NotACheckpointError, match="is a TorchScript export"):
        read_checkpoint(scripted)

    legacy = tmp_path / "legacy.pt"  # torch's pre-zip format is still a checkpoint
    torch.save({"a": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(legacy)["a"], torch.ones(2))


def test_only_foreign_objects_get_the_weights_only_advice(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"model": "tsn_tiny", "extra": fractions.Fraction(1, 3)}, path)
    with pytest.raises(ValueError, match=r"\(e\.g\. fractions\.Fraction\)") as error:
        read_checkpoint(path)
    assert "weights_only=False" in str(error.value)
