"""Atomic writes and generator states."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from rsanet.atomic import atomic_save
from rsanet.engine import checkpoint as ckpt


def test_atomic_save_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "x.pt"
    atomic_save({"a": torch.ones(2)}, path)
    atomic_save({"a": torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(2))
    assert os.listdir(path.parent) == ["x.pt"]
    mode = path.stat().st_mode & 0o777
    assert mode & 0o044  # readable as a normal file is, not mkstemp's 0600


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)

    def broken_save(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["last.pt"]


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    ckpt.seed_everything(3)
    torch.rand(3), np.random.rand(2), random.random()
    path = atomic_save({"rng": ckpt.rng_state()}, tmp_path / "rng.pt")
    expected = (
        torch.rand(4),
        np.random.rand(4),
        [random.random() for _ in range(4)],
        np.random.randn(3),
    )
    ckpt.seed_everything(99)
    ckpt.set_rng_state(torch.load(path, weights_only=True)["rng"])
    again = (
        torch.rand(4),
        np.random.rand(4),
        [random.random() for _ in range(4)],
        np.random.randn(3),
    )
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and expected[2] == again[2]
    assert np.array_equal(expected[3], again[3])


def test_model_only_checkpoint_cannot_be_resumed(tmp_path):
    from rsanet.models import create_model, save_checkpoint

    path = save_checkpoint(tmp_path / "m.pt", create_model("tsn_tiny", num_classes=3))
    with pytest.raises(ValueError, match="holds no training state"):
        ckpt.read_training_checkpoint(path)
