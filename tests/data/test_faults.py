"""Faults of the data readers and of ``rsanet data check`` / ``rsanet data synth``: rows that
lead outside the data root, paths with spaces, binary or undecodable annotation files, empty
ones, and reports and SynthMotion files that are written atomically and never over an
input."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest

from rsanet.cli import main
from rsanet.data import (
    AnnotationError,
    build_dataset,
    check_dataset,
    read_annotations,
    write_synthmotion,
)

OUTSIDE = "outside the data root"


# -- the data root ------------------------------------------------------------------------


def _write_format(folder: Path, fmt: str, names: list[str]) -> Path:
    """One split file of ``fmt`` (and its class-name file) in ``folder`` with one row per
    name, all of class 0; returns the split file."""
    if fmt == "something-v1":
        (folder / "something-something-v1-labels.csv").write_text("Holding something\n")
        path = folder / "something-something-v1-train.csv"
        path.write_text("".join(f"{name};Holding something\n" for name in names))
    elif fmt == "something-v2":
        (folder / "something-something-v2-labels.json").write_text('{"Holding something": "0"}')
        path = folder / "something-something-v2-train.json"
        path.write_text(
            json.dumps([{"id": name, "template": "Holding [something]"} for name in names])
        )
    elif fmt == "diving48":
        (folder / "Diving48_vocab.json").write_text('[["Back", "15som", "05Twis", "FREE"]]')
        path = folder / "Diving48_V2_train.json"
        rows = [{"vid_name": n, "label": 0, "start_frame": 0, "end_frame": 9} for n in names]
        path.write_text(json.dumps(rows))
    elif fmt == "finegym":
        (folder / "gym99_categories.txt").write_text("Clabel: 0; set: 1; Glabel: 1; (VT) jump\n")
        path = folder / "gym99_train_element_v1.1.txt"
        path.write_text("".join(f"{name} 0\n" for name in names))
    else:
        path = folder / "train.txt"
        path.write_text("".join(f"{name} 9 0\n" for name in names))
    return path


EXTENSIONS = {"something-v2": ".webm", "diving48": ".mp4", "finegym": ".mp4"}


@pytest.mark.parametrize("fmt", ["something-v1", "something-v2", "diving48", "finegym", "list"])
def test_rows_leading_outside_the_root_are_bad_samples_unless_allowed(tmp_path, fmt):
    root = tmp_path / "root"
    root.mkdir()
    escaping = ["../../etc/passwd", "/etc/passwd", "sub/../../../etc/passwd"]
    inside = ["ok", "sub/../also_ok", str(root / "absolute_inside")]
    annotations = _write_format(tmp_path, fmt, inside + escaping)
    ext = EXTENSIONS.get(fmt, "")

    result = read_annotations(fmt, annotations, root, quiet=True)
    assert [record.path for record in result.records] == [
        str(root / f"{name}{ext}") for name in ("ok", "also_ok", "absolute_inside")
    ]  # normalised: the path read is the path checked
    assert len(result.bad) == 3
    for bad, name in zip(result.bad, escaping, strict=True):
        assert bad.path.startswith(f"{annotations}:")  # the row, as every malformed row
        assert bad.reason.startswith(OUTSIDE) and repr(name + ext) in bad.reason
        assert "allow_outside_root=True" in bad.reason

    allowed = read_annotations(fmt, annotations, root, quiet=True, allow_outside_root=True)
    assert len(allowed.records) == 6 and not allowed.bad
    assert allowed.records[4].path == f"/etc/passwd{ext}"
    with pytest.raises(AnnotationError, match=OUTSIDE):
        read_annotations(fmt, annotations, root, policy="raise")


def test_the_default_root_is_the_annotation_folder_and_links_inside_it_are_followed(
    tmp_path, coded_video
):
    """The rule is about what a row says: a symbolic link inside the root is the root
    owner's choice (a root of links to another disk) and is followed."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "clip.mp4").write_bytes(coded_video.read_bytes())
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "disk").symlink_to(elsewhere)
    (lists / "train.txt").write_text("disk/clip.mp4 120 0\n../elsewhere/clip.mp4 120 0\n")
    result = read_annotations("list", lists / "train.txt", None, quiet=True)
    assert [record.path for record in result.records] == [str(lists / "disk" / "clip.mp4")]
    assert result.bad[0].reason.startswith(OUTSIDE)
    assert "--allow-outside-root" in result.bad[0].reason


def test_build_dataset_skips_and_logs_outside_rows_and_takes_the_option(
    tmp_path, coded_video, caplog
):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.mp4").write_bytes(coded_video.read_bytes())
    (tmp_path / "secret.mp4").write_bytes(coded_video.read_bytes())
    (tmp_path / "train.txt").write_text("a.mp4 120 0\n../secret.mp4 120 1\n")
    with caplog.at_level(logging.WARNING, logger="rsanet.data"):
        dataset = build_dataset("list", tmp_path / "train.txt", root, size=32)
    assert [Path(r.path).name for r in dataset.records] == ["a.mp4"]
    assert dataset.annotation_errors[0].reason.startswith(OUTSIDE)
    assert any("train.txt:2" in r.message and OUTSIDE in r.message for r in caplog.records)
    # the option flows as a format option (data.options: {allow_outside_root: true})
    both = build_dataset("list", tmp_path / "train.txt", root, size=32, allow_outside_root=True)
    assert len(both) == 2 and both[1][0].shape == (3, 8, 32, 32)
    with pytest.raises(TypeError, match="allow_outside_root must be true or false"):
        build_dataset("list", tmp_path / "train.txt", root, allow_outside_root="false")
    (tmp_path / "evil.txt").write_text("/etc/passwd 1 0\n")
    with pytest.raises(ValueError, match=r"no samples: all 1 rows of .*evil.txt.*" + OUTSIDE):
        build_dataset("list", tmp_path / "evil.txt", root)


def test_check_reports_outside_rows_and_the_flag_allows_them(tmp_path, coded_video, capsys):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.mp4").write_bytes(coded_video.read_bytes())
    (tmp_path / "b.mp4").write_bytes(coded_video.read_bytes())
    (tmp_path / "train.txt").write_text(f"a.mp4 120 0\n{tmp_path / 'b.mp4'} 120 1\n")
    argv = ["data", "check", str(tmp_path / "train.txt"), "--format", "list", "--root", str(root)]
    assert main([*argv, "--json", "--workers", "0"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] == 1 and report["bad"][0]["path"].endswith("train.txt:2")
    assert report["bad"][0]["reason"].startswith(OUTSIDE)
    assert main([*argv, "--workers", "0", "--allow-outside-root"]) == 0
    assert capsys.readouterr().out.strip() == "checked 2 samples: 2 ok, 0 bad"


# -- paths with spaces --------------------------------------------------------------------


def test_list_and_finegym_paths_with_spaces(tmp_path, coded_video):
    root = tmp_path / "my data"
    (root / "class one").mkdir(parents=True)
    (root / "class one" / "a clip  with spaces.mp4").write_bytes(coded_video.read_bytes())
    (tmp_path / "train.txt").write_text(
        "class one/a clip  with spaces.mp4 120 0\n  \tindented/x 4 0\nonly 12\n"
    )
    dataset = build_dataset("list", tmp_path / "train.txt", root, size=32)
    assert dataset.records[0].path == str(root / "class one" / "a clip  with spaces.mp4")
    assert dataset.records[1].path == str(root / "indented" / "x")
    assert dataset[0][0].shape == (3, 8, 32, 32)
    assert [bad.reason for bad in dataset.annotation_errors] == [
        "expected 3 fields 'path num_frames label', got 2"
    ]
    gym = _write_format(tmp_path, "finegym", ["clip with space"])
    result = read_annotations("finegym", gym, root)
    assert result.records[0].path == str(root / "clip with space.mp4")


# -- annotation files that are not text ---------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content", "reason"),
    [
        ("list", "video", "a binary file"),
        ("list", "utf16", "a binary file"),
        ("list", "latin1", "not UTF-8 text"),
        ("something-v2", "video", "a binary file"),
        ("diving48", "latin1", "not UTF-8 text"),
        ("something-v1", "video", "a binary file"),
    ],
)
def test_binary_or_undecodable_annotation_files_name_the_file(
    tmp_path, coded_video, fmt, content, reason
):
    path = _write_format(tmp_path, fmt, ["a"])
    if content == "video":
        path.write_bytes(coded_video.read_bytes())
    elif content == "utf16":
        path.write_text("a 9 0\n", encoding="utf-16")
    else:
        path.write_bytes("first 9 0\nsecond\xe9 9 0\n".encode("latin-1"))
    with pytest.raises(AnnotationError) as caught:
        read_annotations(fmt, path, tmp_path)
    assert str(caught.value).startswith(str(path))
    assert reason in str(caught.value)
    if content == "latin1":
        assert str(caught.value).startswith(f"{path}:2: ")  # the line to fix


def test_binary_label_file_and_empty_files_are_errors_naming_the_file(tmp_path, coded_video):
    path = _write_format(tmp_path, "list", ["a"])
    (tmp_path / "classes.txt").write_bytes(coded_video.read_bytes())
    with pytest.raises(AnnotationError, match=r"classes.txt: a binary file"):
        read_annotations("list", path, tmp_path)
    (tmp_path / "classes.txt").unlink()
    path.write_text("# only a comment\n\n")
    with pytest.raises(AnnotationError, match=r"train.txt: no annotation rows"):
        read_annotations("list", path, tmp_path)
    (tmp_path / "clips" / "empty class").mkdir(parents=True)
    with pytest.raises(AnnotationError, match="no videos or frame folders"):
        read_annotations("folder", None, tmp_path / "clips")


@pytest.mark.parametrize("content", ["video", "empty"])
def test_check_of_a_binary_or_empty_list_is_one_line_and_exit_2(
    tmp_path, coded_video, capsys, content
):
    path = tmp_path / "train.txt"
    path.write_bytes(coded_video.read_bytes() if content == "video" else b"")
    assert main(["data", "check", str(path), "--format", "list", "--workers", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith(f"rsanet data: error: {path}: ")
    assert "Traceback" not in captured.err


# -- the report of `rsanet data check` ----------------------------------------------------


@pytest.fixture
def checked(tmp_path, coded_video, media) -> Path:
    root = tmp_path / "root"
    media.write_frames(root / "frames", media.coded_frames(9))
    (root / "ok.mp4").write_bytes(coded_video.read_bytes())
    (tmp_path / "train.txt").write_text("ok.mp4 120 0\nframes 9 1\ngone.mp4 5 0\n")
    (tmp_path / "classes.txt").write_text("zero\none\n")
    return tmp_path


def _check(folder: Path, *extra: str) -> int:
    return main(
        [
            "data",
            "check",
            str(folder / "train.txt"),
            "--format",
            "list",
            "--root",
            str(folder / "root"),
            "--workers",
            "0",
            *extra,
        ]
    )


def test_check_writes_its_json_report_atomically(checked, capsys):
    report = checked / "reports" / "check.json"
    report.parent.mkdir()
    stale = report.parent / ".check.json.killed.tmp"  # left by a killed write
    stale.write_text("{")
    assert _check(checked, "--out", str(report), "--json") == 1
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(report.read_text()) == printed
    assert printed["total"] == 3 and printed["bad"][0]["reason"].startswith("missing")
    assert sorted(p.name for p in report.parent.iterdir()) == ["check.json"]


def test_a_full_disk_keeps_the_previous_report(checked, capsys, monkeypatch):
    report = checked / "check.json"
    report.write_text('{"previous": true}\n')

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert _check(checked, "--out", str(report)) == 2
    err = capsys.readouterr().err
    assert "no space left" in err and str(report) in err and "Traceback" not in err
    assert report.read_text() == '{"previous": true}\n'
    assert sorted(p.name for p in checked.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    "target", ["train.txt", "classes.txt", "root/ok.mp4", "root/frames/00001.jpg", "root"]
)
def test_check_refuses_a_report_over_an_input_or_a_sample(checked, capsys, target):
    path = checked / target
    before = path.read_bytes() if path.is_file() else None
    assert _check(checked, "--out", str(path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("rsanet data: error: ")
    assert ("is a folder" if path.is_dir() else "choose another path") in err
    if before is not None:
        assert path.read_bytes() == before


def test_check_dataset_refuses_before_decoding(checked, monkeypatch):
    import rsanet.data.check as check

    def never(job):
        raise AssertionError("decoded although the report path was refused")

    monkeypatch.setattr(check, "_check_job", never)
    with pytest.raises(ValueError, match="would overwrite the sample"):
        check_dataset("list", checked / "train.txt", checked / "root", out=checked / "root/ok.mp4")


# -- `rsanet data synth` ------------------------------------------------------------------


def _synth(out: Path, *extra: str) -> int:
    return main(
        ["data", "synth", "--out", str(out), "--videos", "3", "--val-videos", "1"]
        + ["--frames", "4", "--size", "32", *extra]
    )


def test_synth_refuses_a_file_or_another_data_sets_lists(tmp_path, capsys):
    target = tmp_path / "ck.pt"
    target.write_bytes(b"weights")
    assert _synth(target) == 2
    assert "is a file" in capsys.readouterr().err
    assert target.read_bytes() == b"weights"
    other = tmp_path / "sthv1"
    other.mkdir()
    (other / "train.txt").write_text("123 40 7\n")
    (other / "classes.txt").write_text("Holding something\n")
    assert _synth(other, "--format", "frames") == 2
    assert "holds the list files of another data set" in capsys.readouterr().err
    assert (other / "train.txt").read_text() == "123 40 7\n"
    assert not (other / "frames").exists()


def test_synth_is_atomic_and_sweeps_what_a_killed_run_left(tmp_path, capsys, monkeypatch):
    out = tmp_path / "synth"
    (out / "videos" / "train").mkdir(parents=True)
    killed = out / "videos" / "train" / ".000000.mp4.x1y2.mp4.tmp"
    killed.write_bytes(b"half a video")
    assert _synth(out) == 0
    assert not killed.exists()
    assert sorted(p.name for p in (out / "videos" / "train").iterdir()) == [
        "000000.mp4",
        "000001.mp4",
        "000002.mp4",
    ]
    assert _synth(out) == 0  # a rerun into its own folder is allowed
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    import PIL.Image

    saved = PIL.Image.Image.save
    calls = []

    def fill_up(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) > 9:
            raise OSError(errno.ENOSPC, "No space left on device", str(fp))
        return saved(self, fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image.Image, "save", fill_up)
    assert _synth(out, "--format", "frames") == 2
    err = capsys.readouterr().err
    assert "cannot write SynthMotion" in err and "No space left" in err
    assert "Traceback" not in err
    frames = out / "frames" / "train"
    assert sorted(p.name for p in frames.iterdir()) == ["000000", "000001"]  # whole or absent
    assert all(len(list(folder.iterdir())) == 4 for folder in frames.iterdir())
    assert {p: p.read_bytes() for p in before} == before  # the mp4 lists and videos: intact


def test_write_synthmotion_writes_lists_atomically(tmp_path, monkeypatch):
    paths = write_synthmotion(tmp_path, 2, num_val_videos=1, num_frames=4, size=32)
    import rsanet.data.synthmotion as synthmotion

    written = []
    monkeypatch.setattr(
        synthmotion, "atomic_write_text", lambda path, text: written.append(Path(path).name)
    )
    write_synthmotion(tmp_path, 2, num_val_videos=1, num_frames=4, size=32)
    assert written == ["classes.txt", "train.txt", "val.txt"]
    assert paths["train"].read_text().splitlines()[0] == "videos/train/000000.mp4 4 0"
