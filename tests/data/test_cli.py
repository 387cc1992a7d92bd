"""``rsanet data check`` and ``rsanet data synth``, run through their argparse parsers."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from rsanet.cli import CLIError
from rsanet.cli import data as data_cli


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rsanet")
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def listed(tmp_path, coded_video, media):
    """A list with two good videos, a zero-byte one, random bytes, a missing path, a
    truncated mp4 and a malformed line."""
    root = tmp_path / "root"
    media.write_frames(root / "frames_ok", media.coded_frames(9))
    (root / "ok.mp4").write_bytes(coded_video.read_bytes())
    (root / "zero.mp4").write_bytes(b"")
    (root / "noise.webm").write_bytes(np.random.default_rng(2).bytes(1000))
    data = coded_video.read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "train.txt").write_text(
        "frames_ok 9 0\nok.mp4 120 1\nzero.mp4 5 0\nnoise.webm 5 1\ngone.mp4 5 1\n"
        "cut.mp4 120 0\nbroken line\n"
    )
    return tmp_path


def test_check_json_lists_every_bad_sample(listed, capsys):
    code = _run(
        [
            "data",
            "check",
            str(listed / "train.txt"),
            "--format",
            "list",
            "--root",
            str(listed / "root"),
            "--json",
            "--workers",
            "2",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (report["total"], report["ok"]) == (7, 2)
    reasons = {entry["path"].rsplit("/", 1)[-1]: entry["reason"] for entry in report["bad"]}
    assert set(reasons) == {"zero.mp4", "noise.webm", "gone.mp4", "cut.mp4", "train.txt:7"}
    assert reasons["zero.mp4"].startswith("empty file")
    assert reasons["gone.mp4"].startswith("missing")
    assert reasons["cut.mp4"].startswith("cannot open as a video: truncated")
    assert reasons["train.txt:7"].startswith("expected 3 fields")


def test_check_text_summary_and_clean_data(listed, capsys):
    code = _run(
        [
            "data",
            "check",
            str(listed / "train.txt"),
            "--format",
            "list",
            "--root",
            str(listed / "root"),
            "--workers",
            "0",
            "--min-frames",
            "10",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "frames_ok: too short: 9 frames, at least 10 needed" in out
    assert out.strip().endswith("checked 7 samples: 1 ok, 6 bad")
    (listed / "clean.txt").write_text("frames_ok 9 0\nok.mp4 120 1\n")
    assert (
        _run(
            [
                "data",
                "check",
                str(listed / "clean.txt"),
                "--format",
                "list",
                "--root",
                str(listed / "root"),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == "checked 2 samples: 2 ok, 0 bad"


def test_check_a_folder_of_class_folders(tmp_path, coded_video, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes(coded_video.read_bytes())
    (tmp_path / "b" / "y.mp4").write_bytes(b"")
    assert (
        _run(["data", "check", str(tmp_path), "--format", "folder", "--json", "--workers", "0"])
        == 1
    )
    report = json.loads(capsys.readouterr().out)
    assert report == {
        "total": 2,
        "ok": 1,
        "bad": [{"path": str(tmp_path / "b" / "y.mp4"), "reason": report["bad"][0]["reason"]}],
    }


def test_user_errors_are_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file .* not found"):
        _run(["data", "check", str(tmp_path / "none.txt"), "--format", "list"])
    with pytest.raises(CLIError, match="--min-frames must be >= 1"):
        _run(["data", "check", "x", "--format", "list", "--min-frames", "0"])
    with pytest.raises(CLIError, match="--size must be >= 16"):
        _run(["data", "synth", "--out", str(tmp_path), "--videos", "2", "--size", "33"])
    with pytest.raises(SystemExit):
        _run(["data", "check", "x", "--format", "kinetics"])


def test_synth_writes_videos_and_list_files(tmp_path, capsys):
    out = tmp_path / "synth"
    assert (
        _run(
            [
                "data",
                "synth",
                "--out",
                str(out),
                "--videos",
                "3",
                "--val-videos",
                "1",
                "--frames",
                "6",
                "--size",
                "32",
                "--format",
                "frames",
            ]
        )
        == 0
    )
    assert "build_dataset('list'" in capsys.readouterr().out
    assert (out / "train.txt").read_text().splitlines() == [
        "frames/train/000000 6 0",
        "frames/train/000001 6 1",
        "frames/train/000002 6 2",
    ]
    assert len(list((out / "frames" / "train" / "000002").glob("*.jpg"))) == 6
    assert (out / "val.txt").read_text() == "frames/val/000000 6 0\n"
    assert (
        _run(
            [
                "data",
                "check",
                str(out / "train.txt"),
                "--format",
                "list",
                "--min-frames",
                "6",
                "--workers",
                "0",
            ]
        )
        == 0
    )
