"""Atomic writes and the guards every writer shares."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from rsanet.atomic import (
    DiskFullError,
    OverwriteError,
    atomic_path,
    atomic_write_text,
    refuse_overwrite,
    remove_stale_temporaries,
    stale_temporaries,
)


def test_an_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "ck.pt"
    source.write_bytes(b"weights")
    (tmp_path / "link.pt").symlink_to(source)
    for spelling in (source, tmp_path / "sub" / ".." / "ck.pt", tmp_path / "link.pt"):
        with pytest.raises(OverwriteError, match="destroy the input"):
            refuse_overwrite(spelling, [source], what="export")
    refuse_overwrite(tmp_path / "other.pt", [source, None, "rtsp://camera/stream"])
    assert source.read_bytes() == b"weights"


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".onnx.tmp")
        tmp.write_text("half")
        raise RuntimeError("the exporter failed")
    assert target.read_text() == "old" and stale_temporaries(target) == []
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and stale_temporaries(target) == []


def test_a_full_disk_is_one_clear_error_and_the_old_file_stays(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    atomic_write_text(target, "previous")

    def fill(handle) -> None:
        handle.write("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    from rsanet.atomic import atomic_write

    with pytest.raises(DiskFullError, match="no space left .* intact"):
        atomic_write(target, fill, "w")
    assert target.read_text() == "previous" and stale_temporaries(target) == []


def test_stale_temporaries_of_a_killed_save_are_swept(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    leftover = tmp_path / ".last.pt.abc123.tmp"
    leftover.write_bytes(b"half a checkpoint")
    unrelated = tmp_path / ".best.pt.abc123.tmp"
    unrelated.write_bytes(b"")
    assert remove_stale_temporaries(target) == [leftover]
    assert not leftover.exists() and unrelated.exists()
