"""``train.time_budget_min``: a run that fits its budget is the run without one; a run that
does not ends at the step that spends it, with the cosine at its end, validated and saved."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rsanet.cli import main
from rsanet.engine import config_from_dict, train
from rsanet.engine import trainer as trainer_module
from rsanet.engine.optim import warmup_cosine_factor
from rsanet.models import read_checkpoint

#: the simulated wall time of one optimiser step
STEP_SECONDS = 10.0


@pytest.fixture
def slow_clock(monkeypatch):
    """The run's wall time is STEP_SECONDS per optimiser step taken, whatever the machine."""
    monkeypatch.setattr(trainer_module._Run, "_wall", lambda run: STEP_SECONDS * run.step)


def test_the_clock_moves_the_cosine_only_where_it_is_ahead():
    # 10 warm-up steps, then a cosine over 90: step 55 is halfway
    assert warmup_cosine_factor(55, 100, 10, clock_progress=0.2) == pytest.approx(0.5)
    assert warmup_cosine_factor(55, 100, 10, clock_progress=0.75) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 0.75))
    )
    assert warmup_cosine_factor(20, 100, 10, 0.1, clock_progress=1.3) == pytest.approx(0.1)
    assert warmup_cosine_factor(3, 100, 10, clock_progress=0.9) == pytest.approx(0.4)  # warm-up


def test_a_budget_the_run_fits_changes_nothing(tmp_path, tiny_config):
    plain = train(config_from_dict(tiny_config()), tmp_path / "plain")
    budget = train(
        config_from_dict(tiny_config(train={"time_budget_min": 60.0})), tmp_path / "budget"
    )
    assert not budget["budget_spent"] and budget["steps"] == plain["steps"] == 8
    a, b = (read_checkpoint(tmp_path / run / "last.pt") for run in ("plain", "budget"))
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key


def test_a_spent_budget_ends_the_run_at_that_step_with_the_cosine_at_its_end(
    tmp_path, tiny_config, slow_clock, capsys
):
    """3 epochs of 4 steps would take 120 s; the budget is 60 s. The clock reaches the
    budget (less the time the first validation took) at the seventh step, in epoch 2."""
    config = tiny_config(
        train={"epochs": 3, "time_budget_min": 1.0, "eval_every": 3},
        log={"every_steps": 1},
    )
    out = tmp_path / "run"
    result = train(config_from_dict(config), out)
    assert result["budget_spent"] and not result["stopped_early"]
    assert (result["epochs_completed"], result["steps"]) == (2, 7)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["train_samples"] for r in epochs] == [28, 21]  # the last epoch's 3 steps
    assert "val_top1" not in epochs[0] and "val_top1" in epochs[1]  # validated at the end
    assert epochs[1]["budget_spent"] and "budget_spent" not in epochs[0]
    # after the warm-up (4 steps, 30 s on the clock when the cosine's first rate is set),
    # the cosine follows the 30 s left, not the 8 steps left: the rate logged after step
    # s + 1 is set by the clock before it, s steps of 10 s
    lrs = [r["lr"] for r in records if r["event"] == "step"]
    peak = 0.002
    progress = [max((s - 3) / 8, (STEP_SECONDS * s - 30.0) / 30.0) for s in range(3, 7)]
    assert lrs[3:] == pytest.approx(
        [peak * 0.5 * (1 + math.cos(math.pi * p)) for p in progress], abs=1e-9
    )
    assert lrs[-1] == pytest.approx(0.0, abs=1e-9)
    last = read_checkpoint(out / "last.pt")
    assert last["budget_spent"] and last["epoch"] == 2 and last["step"] == 7
    assert (out / "best.pt").is_file()
    printed = capsys.readouterr().out
    assert "| 0m20s of the time budget left" in printed  # after epoch 1: 4 steps of 10 s
    assert "time budget of 1 min spent in epoch 2 of 3" in printed

    # a run that spent its budget is over: resuming it trains no more
    again = train(config_from_dict(config), out, resume=True)
    assert again["budget_spent"] and again["steps"] == 7


def test_the_budget_is_a_train_setting_of_the_command(tmp_path, tiny_yaml, capsys):
    path = tiny_yaml(train={"epochs": 1})
    out = tmp_path / "run"
    code = main(["train", str(path), "--output", str(out), "--set", "train.time_budget_min=30"])
    assert code == 0
    assert "a time budget of 30 min" in capsys.readouterr().out
    code = main(["train", str(path), "--output", str(out), "--set", "train.time_budget_min=0"])
    assert code == 2
    assert "train.time_budget_min must be > 0 minutes or null" in capsys.readouterr().err
