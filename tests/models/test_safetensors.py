"""Weights to share: ``NAME.safetensors`` and ``NAME.json`` rebuild the model with identical
logits and without any pickle; missing or damaged files are clear errors naming the file."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest
import torch

import rsanet
from rsanet.models import (
    WeightsFileError,
    read_checkpoint,
    read_weights_file,
    save_weights_file,
)
from rsanet.models.weights import NotACheckpointError

SRC = Path(rsanet.__file__).parent


def randomised(name: str = "rsanet_tiny", seed: int = 0, **kwargs) -> torch.nn.Module:
    """A model whose every weight and BatchNorm statistic is random (a fresh network zeroes
    the last BatchNorm of each residual branch, hiding most layers from the logits)."""
    torch.manual_seed(seed)
    model = rsanet.create_model(name, **kwargs)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.randn_like(value) * 0.2 + (1.0 if "running_var" in key else 0))
                if "running_var" in key:
                    value.abs_()
    return model.eval()


@pytest.fixture
def no_pickle(monkeypatch):
    """Any use of pickle raises (and torch.load, which unpickles)."""

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """rsanet_tiny (4 classes) saved as tiny.safetensors + tiny.json, a clip, and the
    model (logits are computed in each test, under its thread settings)."""
    model = randomised(num_classes=4)
    folder = tmp_path_factory.mktemp("shared")
    files = save_weights_file(
        folder / "tiny.safetensors",
        model,
        classes=["a", "b", "c", "d"],
        input_size=(32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    clip = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    return files, clip, model


def logits_of(model: torch.nn.Module, clip: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(clip)


def test_files_and_description(shared):
    (tensors, description), _, _ = shared
    assert (tensors.name, description.name) == ("tiny.safetensors", "tiny.json")
    info = json.loads(description.read_text())
    assert info["format"] == "rsanet-safetensors" and info["model"] == "rsanet_tiny"
    assert info["model_config"] == {"num_classes": 4, "num_frames": 8}
    assert info["classes"] == ["a", "b", "c", "d"] and info["weights"] == "raw"
    assert (info["num_frames"], info["input_size"]) == (8, [32, 32])
    assert (info["mean"], info["std"]) == ([0.5] * 3, [0.25] * 3)
    assert info["safetensors"] == "tiny.safetensors" and len(info["sha256"]) == 64
    assert sorted(p.name for p in tensors.parent.iterdir()) == ["tiny.json", "tiny.safetensors"]


@pytest.mark.parametrize("which", ["tiny.safetensors", "tiny.json"])
def test_round_trip_gives_identical_logits_without_pickle(shared, no_pickle, which):
    (tensors, _), clip, original = shared
    model = rsanet.load_model(tensors.parent / which)
    assert not model.training and model.rsanet_weights == "raw"
    assert torch.equal(logits_of(model, clip), logits_of(original, clip))


def test_predictor_reads_it_without_pickle(shared, no_pickle):
    from rsanet.inference import Predictor, load_classifier

    (tensors, _), clip, original = shared
    classifier = load_classifier(tensors)
    assert classifier.classes == ["a", "b", "c", "d"] and classifier.input_size == 32
    assert (classifier.mean, classifier.std) == ((0.5,) * 3, (0.25,) * 3)
    predictor = Predictor.from_checkpoint(tensors)
    assert predictor.size == 32 and predictor.num_frames == 8
    assert "mean=[0.5, 0.5, 0.5]" in repr(predictor.transform)
    assert torch.equal(predictor.backend(clip), logits_of(original, clip))


def test_a_video_transformer_config_round_trips(tmp_path):
    """Tuples of the configuration (kernel sizes, depths) come back as tuples."""
    model = randomised("mvit_tiny", num_classes=3, depths=(1, 2, 1, 2))
    save_weights_file(tmp_path / "m", model)
    loaded = rsanet.load_model(tmp_path / "m.safetensors")
    clip = torch.randn(1, 3, 8, 48, 48)
    assert torch.equal(logits_of(loaded, clip), logits_of(model, clip))


def copy_pair(shared, folder: Path) -> tuple[Path, Path]:
    (tensors, description), _, _ = shared
    out = folder / tensors.name, folder / description.name
    out[0].write_bytes(tensors.read_bytes())
    out[1].write_bytes(description.read_bytes())
    return out


def test_missing_json_names_the_file_and_the_fix(shared, tmp_path):
    tensors, description = copy_pair(shared, tmp_path)
    description.unlink()
    with pytest.raises(WeightsFileError, match="tiny.json is missing") as error:
        rsanet.load_model(tensors)
    assert "rsanet export CHECKPOINT --format safetensors" in str(error.value)


def test_missing_tensors(shared, tmp_path):
    tensors, description = copy_pair(shared, tmp_path)
    tensors.unlink()
    with pytest.raises(FileNotFoundError, match="no weights file at .*tiny.safetensors"):
        rsanet.load_model(description)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "tiny.json is not valid JSON"),
        ("[1, 2]", "is not the description of an rsanet weights file"),
        ('{"format": "rsanet-safetensors", "format_version": 9}', "newer than this rsanet"),
        ('{"format": "rsanet-safetensors"}', '"model" .* is missing'),
    ],
)
def test_corrupt_json(shared, tmp_path, text, message):
    tensors, description = copy_pair(shared, tmp_path)
    description.write_text(text)
    with pytest.raises(WeightsFileError, match=message):
        rsanet.load_model(tensors)


def test_truncated_or_foreign_tensors(shared, tmp_path):
    tensors, description = copy_pair(shared, tmp_path)
    tensors.write_bytes(tensors.read_bytes()[:1000])
    with pytest.raises(WeightsFileError, match="does not match tiny.json .*sha256"):
        rsanet.load_model(tensors)
    info = json.loads(description.read_text())
    del info["sha256"]  # a hand-written description: the file itself is checked
    description.write_text(json.dumps(info))
    with pytest.raises(WeightsFileError, match="tiny.safetensors is not a readable safetensors"):
        read_weights_file(tensors)


def test_the_torch_reader_points_to_load_model(shared):
    (tensors, _), _, _ = shared
    with pytest.raises(NotACheckpointError, match="safetensors weights file.*load_model"):
        read_checkpoint(tensors)


def test_every_torch_load_in_the_package_is_weights_only():
    """Checkpoints from anywhere are read without running arbitrary pickled code."""
    calls = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                calls.append((path.name, keywords.get("weights_only")))
    assert calls and all(flag == "True" for _, flag in calls), calls
