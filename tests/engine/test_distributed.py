"""Two CPU processes under torchrun (gloo): the run finishes, metrics are summed over the
processes, and only rank 0 writes."""

from __future__ import annotations

import json

import torch

from rsanet.models import read_checkpoint
from support.distributed import torchrun


def test_two_processes(tmp_path, tiny_yaml):
    config = tiny_yaml(train={"epochs": 2, "batch_size": 8}, log={"tensorboard": True})
    out = tmp_path / "run"
    done = torchrun("train", str(config), "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es) on cpu" in done.stdout
    assert done.stdout.count("best val top-1") == 1  # rank 0 prints the summary

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]  # one writer
    # 28 videos -> 14 per process -> 3 batches of 4 clips per process and epoch
    assert [r["step"] for r in epochs] == [3, 6]
    assert all(r["train_samples"] == 24 for r in epochs)  # summed over both processes
    assert all(r["val_num_samples"] == 14 for r in epochs)  # 7 + 7, no padding

    last = read_checkpoint(out / "last.pt")
    assert (last["epoch"], last["step"], last["world_size"]) == (2, 6, 2)
    assert (out / "best.pt").is_file() and (out / "config.yaml").is_file()
    assert len(list((out / "tensorboard").iterdir())) == 1
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )


def test_batch_must_split_over_the_processes(tmp_path, tiny_yaml):
    done = torchrun("train", str(tiny_yaml()), "--output", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode != 0
    assert (
        "train.batch_size (7) must be a multiple of the number of processes (2) x "
        "train.grad_accum_steps (1)"
    ) in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_time_budget_ends_both_processes_at_the_same_step(tmp_path, tiny_yaml):
    """Under torchrun a spent budget ends the run on both processes after one step, then
    validates and saves (a process stopping alone would leave the other waiting)."""
    config = tiny_yaml(train={"epochs": 2, "batch_size": 8, "time_budget_min": 0.001})
    out = tmp_path / "run"
    done = torchrun("train", str(config), "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "time budget of 0.001 min spent in epoch 1 of 2, 1 steps" in done.stdout
    last = read_checkpoint(out / "last.pt")
    assert (last["epoch"], last["step"], last["budget_spent"]) == (1, 1, True)
    assert last["metrics"]["val_num_samples"] == 14  # the partial epoch is validated
