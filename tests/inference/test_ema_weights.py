"""The weights shipped are the weights validated: for a checkpoint trained with EMA,
``rsanet.load_model``, the predictor, ``rsanet predict`` and ``rsanet export`` (every format)
use its EMA weights, as ``rsanet eval`` does; ``weights="raw"`` / ``--weights raw`` the
others."""

from __future__ import annotations

import json

import pytest
import torch

import rsanet
from rsanet.engine.config import config_from_dict
from rsanet.engine.evaluate import load_for_eval
from rsanet.inference import Predictor, TorchScriptBackend, load_classifier
from rsanet.models import save_checkpoint
from support.inference import CLASSES, randomise_norms

CLIP = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def ema_checkpoint(tmp_path_factory):
    """rsanet_tiny whose EMA weights (``ema``) differ from its raw ones (``state_dict``)."""
    torch.manual_seed(0)
    raw = randomise_norms(rsanet.create_model("rsanet_tiny", num_classes=len(CLASSES)), 0)
    ema = randomise_norms(rsanet.create_model("rsanet_tiny", num_classes=len(CLASSES)), 1)
    path = tmp_path_factory.mktemp("ema") / "ema.pt"
    return save_checkpoint(path, raw, classes=list(CLASSES), ema=ema.state_dict())


def logits(model) -> torch.Tensor:
    with torch.inference_mode():
        return model(CLIP)


@pytest.fixture
def evaluated(ema_checkpoint):
    """The logits of the network ``rsanet eval`` tests (EMA), and of the raw weights."""
    config = config_from_dict({"model": {"name": "rsanet_tiny"}})
    ema_model, _ = load_for_eval(ema_checkpoint, config)
    config = config_from_dict({"model": {"name": "rsanet_tiny"}, "eval": {"use_ema": False}})
    raw_model, _ = load_for_eval(ema_checkpoint, config)
    ema, raw = logits(ema_model), logits(raw_model)
    assert not torch.allclose(ema, raw, atol=1e-3)
    return ema, raw


def test_load_model_uses_the_weights_eval_scores(ema_checkpoint, evaluated):
    ema, raw = evaluated
    model = rsanet.load_model(ema_checkpoint)
    assert model.rsanet_weights == "ema" and torch.equal(logits(model), ema)
    assert torch.equal(logits(rsanet.load_model(ema_checkpoint, weights="ema")), ema)
    assert torch.equal(logits(rsanet.load_model(ema_checkpoint, weights="raw")), raw)


def test_a_checkpoint_without_ema(checkpoint):
    model = rsanet.load_model(checkpoint)
    assert model.rsanet_weights == "raw"
    with pytest.raises(ValueError, match="has no EMA weights"):
        rsanet.load_model(checkpoint, weights="ema")


def test_predictor_uses_the_weights_eval_scores(ema_checkpoint, evaluated):
    ema, raw = evaluated
    assert load_classifier(ema_checkpoint).weights == "ema"
    predictor = Predictor.from_checkpoint(ema_checkpoint)
    assert torch.equal(predictor.backend(CLIP), ema)
    predictor = Predictor.from_checkpoint(ema_checkpoint, weights="raw")
    assert torch.equal(predictor.backend(CLIP), raw)


def test_predict_command_uses_the_weights_eval_scores(cli, ema_checkpoint, small_clip):
    def scores(*options):
        result = cli(
            "predict", small_clip, "--checkpoint", ema_checkpoint, "--size", 32, "--json", *options
        )
        assert result.code == 0, result.err
        return [(t["label"], t["score"]) for t in json.loads(result.out.splitlines()[0])["top"]]

    def top(weights):
        predictor = Predictor.from_checkpoint(ema_checkpoint, size=32, weights=weights)
        return predictor.predict_file(small_clip).top

    for options, weights in (((), "ema"), (("--weights", "raw"), "raw")):
        printed, expected = scores(*options), top(weights)
        assert [label for label, _ in printed] == [label for label, _ in expected]
        assert [s for _, s in printed] == pytest.approx([s for _, s in expected], abs=1e-5)
    assert scores() != scores("--weights", "raw")


@pytest.mark.parametrize("option", [[], ["--weights", "raw"]])
def test_export_uses_the_weights_eval_scores(cli, tmp_path, ema_checkpoint, evaluated, option):
    ema, raw = evaluated
    expected = raw if option else ema
    out = tmp_path / "model.pt"
    result = cli(
        "export", ema_checkpoint, "--format", "torchscript", "--size", 32, "--out", out, *option
    )
    assert result.code == 0, result.err
    assert ("(raw weights)" if option else "(ema weights)") in result.out
    assert torch.allclose(TorchScriptBackend(out)(CLIP), expected, atol=1e-4)

    out = tmp_path / "model.safetensors"
    result = cli("export", ema_checkpoint, "--format", "safetensors", "--out", out, *option)
    assert result.code == 0, result.err
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["weights"] == ("raw" if option else "ema")
    assert torch.equal(logits(rsanet.load_model(out)), expected)


def test_a_weights_file_of_ema_weights_refuses_raw(cli, tmp_path, ema_checkpoint):
    out = tmp_path / "model.safetensors"
    assert cli("export", ema_checkpoint, "--format", "safetensors", "--out", out).code == 0
    with pytest.raises(ValueError, match="holds the EMA weights only"):
        rsanet.load_model(out, weights="raw")
    assert rsanet.load_model(out, weights="ema").rsanet_weights == "ema"
