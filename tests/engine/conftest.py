"""Shared fixtures of the engine tests: tiny SynthMotion runs on one CPU thread."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

#: a run of a few seconds: tsn_tiny, 4 frames of 32 x 32, 28 training videos
TINY: dict[str, Any] = {
    "model": {"name": "tsn_tiny"},
    "data": {
        "format": "synthmotion",
        "num_frames": 4,
        "size": 32,
        "train_options": {"num_videos": 28},
        "val_options": {"num_videos": 14},
    },
    "optim": {
        "name": "adamw",
        "lr": 0.002,
        "weight_decay": 0.01,
        "warmup_epochs": 1,
        "label_smoothing": 0.1,
    },
    "train": {"epochs": 2, "batch_size": 7, "num_threads": 1},
    "eval": {"batch_size": 7},
    "log": {"progress": "never", "tensorboard": False},
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def tiny_config():
    """``tiny_config(**section_changes)``: the TINY configuration dict with changes."""

    def make(**changes: dict[str, Any]) -> dict[str, Any]:
        return merge(TINY, changes)

    return make


@pytest.fixture
def tiny_yaml(tmp_path: Path, tiny_config):
    """``tiny_yaml(name="run.yaml", **changes)``: the TINY configuration written to YAML."""
    import yaml

    def write(name: str = "tiny.yaml", **changes: dict[str, Any]) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tiny_config(**changes)))
        return path

    return write


class FullDisk:
    """While ``full`` is set, every write through :mod:`rsanet.atomic` stores half its
    bytes and then fails with ENOSPC, as on a disk that fills up mid-write."""

    def __init__(self) -> None:
        self.full = False
        self.failures = 0


@pytest.fixture
def full_disk(monkeypatch) -> FullDisk:
    """A :class:`FullDisk` switch over the file handles that atomic writes open."""
    import errno
    import os

    disk = FullDisk()
    real_fdopen = os.fdopen

    class Handle:
        def __init__(self, handle: Any) -> None:
            self._handle = handle

        def write(self, data: Any) -> int:
            if disk.full:
                self._handle.write(data[: len(data) // 2])
                disk.failures += 1
                raise OSError(errno.ENOSPC, "No space left on device")
            return self._handle.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._handle, name)

        def __enter__(self) -> Handle:
            return self

        def __exit__(self, *exc: object) -> None:
            self._handle.close()

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: Handle(real_fdopen(*a, **k)))
    return disk
