"""Faults of ``rsanet train`` and ``rsanet eval``: outputs that would destroy an input, a
full disk, temporaries of a killed save, NaN or infinite weights and logits, empty or
absurd configurations. Each one is a clear one-line error, and no good file is lost."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from rsanet.cli import main
from rsanet.engine import ConfigError, config_from_dict, load_config, train
from rsanet.engine import trainer as trainer_module
from rsanet.models import create_model, read_checkpoint, save_checkpoint


def all_finite(path: Path) -> bool:
    state = read_checkpoint(path)["state_dict"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"rsanet {command}: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def tiny_checkpoint(path: Path, fc_weight: float | None = None) -> Path:
    """An untrained tsn_tiny for SynthMotion (14 classes, 4 frames), with every weight of
    its classifier set to ``fc_weight`` when given."""
    torch.manual_seed(0)
    model = create_model("tsn_tiny", num_classes=14, num_frames=4)
    if fc_weight is not None:
        with torch.no_grad():
            model.fc.weight.fill_(fc_weight)
    return save_checkpoint(path, model)


# -- training: non-finite weights -------------------------------------------------------


def test_divergent_run_stops_and_never_saves_non_finite_weights(tmp_path, tiny_yaml, capsys):
    """``--set optim.lr=3e5``: the loss stays finite while a BatchNorm variance overflows
    to inf; the run stops at that step (exit 1), and no checkpoint holds inf."""
    out = tmp_path / "run"
    code = main(
        ["train", str(tiny_yaml()), "--output", str(out), "--set", "optim.lr=3e5", "train.epochs=2"]
    )
    line = one_error_line(capsys.readouterr().err, "train")
    assert code == 1
    assert "NaN or infinite" in line or "loss is" in line
    assert " at step " in line and "(epoch " in line
    for checkpoint in out.glob("*.pt"):
        assert all_finite(checkpoint), checkpoint


def test_non_finite_statistics_keep_the_last_good_checkpoint(tmp_path, tiny_config, monkeypatch):
    """A BatchNorm statistic turned inf by the second step of epoch 2 (the loss finite):
    the error names that step, and last.pt stays the good state of epoch 1."""
    config = config_from_dict(tiny_config(train={"epochs": 3}))
    real = trainer_module.build_optimizer

    def poisoned(model, optim_config):
        optimizer, calls = real(model, optim_config), [0]

        def after_step(*args: object) -> None:
            calls[0] += 1
            if calls[0] == 6:  # epoch 2, batch 2 (4 steps per epoch)
                model.bn1.running_var.fill_(math.inf)

        optimizer.register_step_post_hook(after_step)
        return optimizer

    monkeypatch.setattr(trainer_module, "build_optimizer", poisoned)
    with pytest.raises(trainer_module.NonFiniteStateError) as error:
        train(config, tmp_path / "run")
    message = str(error.value)
    assert "at step 6 (epoch 2, batch 2 of 4) in bn1.running_var" in message
    assert f"the last good checkpoint is {tmp_path / 'run' / 'last.pt'} (epoch 1)" in message
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    assert (last["epoch"], last["step"]) == (1, 4) and all_finite(tmp_path / "run" / "last.pt")


def test_a_non_finite_checkpoint_is_never_written_nor_resumed(tmp_path):
    from rsanet.engine.checkpoint import (
        NonFiniteStateError,
        read_training_checkpoint,
        save_training_checkpoint,
    )

    model = create_model("tsn_tiny", num_classes=3)
    with torch.no_grad():
        model.fc.bias[0] = math.nan
    with pytest.raises(NonFiniteStateError, match=r"not saving .*: .* in fc\.bias"):
        save_training_checkpoint(tmp_path / "last.pt", model, optimizer={}, epoch=1, step=1)
    assert not (tmp_path / "last.pt").exists()
    save_checkpoint(tmp_path / "old.pt", model, optimizer={}, epoch=1, step=1)  # an old run's
    with pytest.raises(ValueError, match=r"holds NaN or infinite values \(fc\.bias\)"):
        read_training_checkpoint(tmp_path / "old.pt")


# -- training: the disk, the outputs, the temporaries -------------------------------------


def test_full_disk_stops_training_with_one_line_and_keeps_last_pt(
    tmp_path, tiny_yaml, full_disk, monkeypatch, capsys
):
    """The disk fills up while epoch 2's checkpoint is written: one line (exit 1), last.pt
    still holds epoch 1, no partial file is left, and --resume continues once there is
    room."""
    out = tmp_path / "run"
    real = trainer_module.save_training_checkpoint

    def save(path, model, **state):
        full_disk.full = state["epoch"] == 2
        return real(path, model, **state)

    monkeypatch.setattr(trainer_module, "save_training_checkpoint", save)
    code = main(["train", str(tiny_yaml()), "--output", str(out)])
    line = one_error_line(capsys.readouterr().err, "train")
    assert code == 1 and full_disk.failures >= 1
    assert "no space left on the device while writing" in line and "--resume" in line
    assert read_checkpoint(out / "last.pt")["epoch"] == 1
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == []

    full_disk.full = False
    monkeypatch.setattr(trainer_module, "save_training_checkpoint", real)
    assert main(["train", str(tiny_yaml()), "--output", str(out), "--resume"]) == 0
    assert read_checkpoint(out / "last.pt")["epoch"] == 2


def test_stale_temporaries_of_a_killed_save_are_removed_on_resume(tmp_path, tiny_config, capsys):
    out = tmp_path / "run"
    config = config_from_dict(tiny_config(train={"epochs": 2, "stop_after_epochs": 1}))
    train(config, out)
    leftovers = [out / ".last.pt.k1ll3d.tmp", out / ".best.pt.x9.tmp", out / ".config.yaml.abc.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a save")
    (out / "notes.tmp").write_text("not ours")
    train(config_from_dict(tiny_config(train={"epochs": 2})), out, resume=True)
    assert not any(path.exists() for path in leftovers)
    assert (out / "notes.tmp").exists()
    assert "removed 3 temporary file(s)" in capsys.readouterr().err


def test_run_files_may_not_overwrite_an_input(tmp_path, tiny_yaml, tiny_config, capsys):
    """A configuration file or model.pretrained that is one of the files the run writes is
    refused (exit 2) before anything is written."""
    out = tmp_path / "run"
    out.mkdir()
    config = out / "metrics.jsonl"  # a YAML file under the name of a run file
    config.write_text(yaml.safe_dump(tiny_config()))
    before = config.read_bytes()
    assert main(["train", str(config), "--output", str(out)]) == 2
    assert "writing it would destroy the input" in one_error_line(capsys.readouterr().err, "train")
    assert config.read_bytes() == before and sorted(p.name for p in out.iterdir()) == [
        "metrics.jsonl"
    ]

    weights = out / "best.pt"
    weights.write_bytes(b"an ImageNet ResNet, say")
    code = main(
        [
            "train",
            str(tiny_yaml()),
            "--output",
            str(out),
            "--set",
            f"model.pretrained={out / '.' / 'best.pt'}",
        ]
    )
    assert code == 2
    line = one_error_line(capsys.readouterr().err, "train")
    assert "(for model.pretrained)" in line and "destroy the input" in line
    assert weights.read_bytes() == b"an ImageNet ResNet, say"

    # the run's own config.yaml may be given back (it is rewritten with the resolved one)
    run = tmp_path / "own"
    train(config_from_dict(tiny_config(train={"epochs": 2, "stop_after_epochs": 1})), run)
    assert main(["train", str(run / "config.yaml"), "--output", str(run), "--resume"]) == 0


# -- configurations ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n# nothing but a comment\n", "{}\n"])
def test_an_empty_configuration_file_is_an_error(tmp_path, monkeypatch, capsys, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="empty.yaml is empty: a configuration names"):
        load_config(path)

    def no_training(*args, **kwargs):
        raise AssertionError("an empty configuration must not start a training run")

    monkeypatch.setattr(trainer_module, "train", no_training)
    assert main(["train", str(path), "--output", str(tmp_path / "run")]) == 2
    assert "is empty" in one_error_line(capsys.readouterr().err, "train")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=inf", "optim.lr must be a finite number, got inf"),
        ("optim.lr=.inf", "optim.lr must be a finite number, got inf"),
        ("optim.weight_decay=nan", "optim.weight_decay must be a finite number"),
        ("optim.clip_grad_norm=inf", "optim.clip_grad_norm must be a finite number"),
        ("optim.betas=[0.9, .inf]", "optim.betas[1] must be a finite number"),
        ("optim.min_lr=1e9", "optim.min_lr (1000000000.0) exceeds optim.lr (0.02)"),
        ("train.num_threads=1000000000", "train.num_threads must be in 1..1024"),
        ("data.num_workers=1000000", "data.num_workers must be in 0..1024"),
        ("train.seed=1180591620717411303424", "train.seed must fit in 64 bits"),
        ("data.size=1000000", "one clip of data.num_frames=8 frames of data.size=1000000"),
        ("data.num_frames=100000000", "lower data.num_frames or data.size"),
    ],
)
def test_absurd_values_are_configuration_errors(override, message):
    """Checked when the configuration is read, before any work (so that a regression
    cannot start a run with a billion threads or workers)."""
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_an_infinite_value_is_one_line_from_the_command(tmp_path, tiny_yaml, capsys):
    out = tmp_path / "run"
    assert main(["train", str(tiny_yaml()), "--output", str(out), "--set", "optim.lr=inf"]) == 2
    line = one_error_line(capsys.readouterr().err, "train")
    assert line.endswith("optim.lr must be a finite number, got inf")
    assert not out.exists()


# -- eval -------------------------------------------------------------------------------


def test_eval_reports_non_finite_logits_as_an_error(tmp_path, tiny_yaml, capsys):
    """Weights that are finite but make the logits overflow, and weights that hold NaN:
    exit 1 with one line, no accuracy printed and no file written."""
    config = tiny_yaml()
    for name, weight in (("huge", 3e38), ("nan", math.nan)):
        checkpoint = tiny_checkpoint(tmp_path / f"{name}.pt", fc_weight=weight)
        out = tmp_path / f"eval_{name}"
        code = main(["eval", str(config), "--checkpoint", str(checkpoint), "--output", str(out)])
        captured = capsys.readouterr()
        line = one_error_line(captured.err, "eval")
        assert code == 1 and "NaN or infinite" in line and str(checkpoint) in line
        assert "top-1" not in captured.out and not out.exists()


def test_eval_outputs_may_not_overwrite_an_input(tmp_path, tiny_yaml, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    checkpoint = tiny_checkpoint(out / "predictions.jsonl")
    before = checkpoint.read_bytes()
    code = main(["eval", str(tiny_yaml()), "--checkpoint", str(checkpoint), "--output", str(out)])
    assert code == 2
    assert "destroy the input" in one_error_line(capsys.readouterr().err, "eval")
    assert checkpoint.read_bytes() == before


def test_eval_on_a_full_disk_keeps_the_previous_files(tmp_path, tiny_yaml, full_disk, capsys):
    config, out = tiny_yaml(), tmp_path / "eval"
    checkpoint = tiny_checkpoint(tmp_path / "model.pt")
    assert (
        main(["eval", str(config), "--checkpoint", str(checkpoint), "--json", "--output", str(out)])
        == 0
    )
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"metrics.json", "predictions.jsonl", "confusion_matrix.png"}
    (out / ".metrics.json.0ld.tmp").write_text("{")  # a killed evaluation's leftover

    full_disk.full = True
    code = main(["eval", str(config), "--checkpoint", str(checkpoint), "--output", str(out)])
    line = one_error_line(capsys.readouterr().err, "eval")
    assert code == 1 and "no space left on the device while writing" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no partial file

    full_disk.full = False
    assert (
        main(["eval", str(config), "--checkpoint", str(checkpoint), "--json", "--output", str(out)])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert json.loads((out / "metrics.json").read_text())["top1"] == result["top1"]
