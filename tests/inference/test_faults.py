"""``rsanet predict`` under faults: outputs that are inputs, unwritable outputs, a model
that returns NaN, a webhook that never answers, annotated videos written atomically."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from rsanet.inference import Annotator, TorchBackend
from support.inference import rules_file


def fighting_rules(tmp_path, threshold: float = 0.5):
    return rules_file(tmp_path, {"fighting": {"threshold": threshold, "cooldown": 2}})


@pytest.mark.parametrize("output", ["--annotate", "--events"])
@pytest.mark.parametrize("victim", ["source", "checkpoint", "rules"])
def test_an_output_that_is_an_input_is_refused(
    cli, checkpoint, small_clip, tmp_path, output, victim
):
    import shutil

    source = shutil.copy(small_clip, tmp_path / "clip.mp4")
    ckpt = shutil.copy(checkpoint, tmp_path / "model.pt")
    rules = fighting_rules(tmp_path)
    target = {"source": source, "checkpoint": ckpt, "rules": rules}[victim]
    before = open(target, "rb").read()
    result = cli(
        "predict", source, "--checkpoint", ckpt, "--size", 32, "--rules", rules, output, target
    )
    assert result.code == 2 and "would destroy the input" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert open(target, "rb").read() == before


@pytest.mark.parametrize(
    "option, make, message",
    [
        ("--events", lambda d: d / "a-file" / "events.jsonl", "is not a folder"),
        ("--annotate", lambda d: d / "a-file" / "out.mp4", "is not a folder"),
        ("--events", lambda d: d, "is a folder"),
        ("--annotate", lambda d: d / "out.gif", "unsupported extension '.gif'"),
    ],
)
def test_unwritable_outputs_are_one_line(
    cli, checkpoint, small_clip, tmp_path, option, make, message
):
    (tmp_path / "a-file").write_text("not a folder")
    result = cli(
        "predict",
        small_clip,
        "--checkpoint",
        checkpoint,
        "--size",
        32,
        "--rules",
        fighting_rules(tmp_path),
        option,
        make(tmp_path),
    )
    assert result.code == 2 and message in result.err
    assert result.err.startswith("rsanet predict: error:") and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1


def _no_constant(name: str):
    raise AssertionError(f"{name} in a JSON output")


@pytest.fixture
def nan_model(monkeypatch):
    """Every model returns NaN logits (broken weights)."""
    original = TorchBackend.__call__

    def broken(self, clip):
        return original(self, clip) * float("nan")

    monkeypatch.setattr(TorchBackend, "__call__", broken)


def test_non_finite_scores_are_an_error_never_an_alert(
    cli, checkpoint, small_clip, tmp_path, nan_model
):
    events = tmp_path / "events.jsonl"
    result = cli(
        "predict",
        small_clip,
        "--checkpoint",
        checkpoint,
        "--size",
        32,
        "--json",
        "--window-seconds",
        0.8,
        "--rules",
        fighting_rules(tmp_path, threshold=0.0),
        "--events",
        events,
    )
    lines = [json.loads(x, parse_constant=_no_constant) for x in result.out.splitlines()]
    assert [x["type"] for x in lines] == ["summary"]  # no window, no alert
    assert result.code == 1 and "non-finite logit" in lines[0]["error"]
    assert lines[0]["alerts"] == 0 and events.read_text() == ""
    clip = cli("predict", small_clip, "--checkpoint", checkpoint, "--size", 32)
    assert clip.code == 2 and "non-finite logit" in clip.err


def test_a_webhook_that_never_answers_fails_the_run(
    cli, fighting_checkpoint, small_clip, tmp_path, closed_port
):
    events = tmp_path / "events.jsonl"
    result = cli(
        "predict",
        small_clip,
        "--checkpoint",
        fighting_checkpoint,
        "--size",
        32,
        "--json",
        "--window-seconds",
        0.8,
        "--rules",
        fighting_rules(tmp_path, threshold=0.9),
        "--events",
        events,
        "--webhook",
        f"http://alarm:s3cr/et@127.0.0.1:{closed_port}/hook",
        "--webhook-retries",
        1,
        "--webhook-timeout",
        1,
    )
    lines = [json.loads(x) for x in result.out.splitlines()]
    summary = lines[-1]
    alerts = [x for x in lines if x["type"] == "alert"]
    assert alerts and result.code == 1  # a lost delivery is a failed run
    webhook = summary["delivery"]["webhook"]
    assert webhook["failed"] == len(alerts) == webhook["lost"] and webhook["retries"] == len(alerts)
    assert webhook["url"] == f"http://alarm:***@127.0.0.1:{closed_port}/hook"
    logged = [json.loads(x, parse_constant=_no_constant) for x in events.read_text().splitlines()]
    assert logged == alerts  # kept on disk
    assert "s3cr" not in result.out + result.err
    assert "not delivered" in result.err


def _frames(count: int) -> np.ndarray:
    return np.full((count, 48, 64, 3), 120, np.uint8)


def test_annotated_video_is_written_atomically(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the previous recording")
    annotator = Annotator(out)
    for i, image in enumerate(_frames(10)):
        annotator.write(image, i / 25, "fighting", 0.9)
    assert out.read_bytes() == b"the previous recording"  # untouched while writing
    annotator.abort()  # a failed run: the previous file stays, no temporary is left
    assert out.read_bytes() == b"the previous recording"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]

    annotator = Annotator(out)
    for i, image in enumerate(_frames(10)):
        annotator.write(image, i / 25, "fighting", 0.9)
    annotator.close()
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_a_killed_runs_temporary_is_swept_and_a_failed_video_is_reported(
    cli, checkpoint, small_clip, tmp_path, monkeypatch
):
    out = tmp_path / "out.mp4"
    stale = tmp_path / ".out.mp4.k1ll3d.mp4.tmp"
    stale.write_bytes(b"half a video")

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Annotator, "write", full_disk)
    result = cli(
        "predict", small_clip, "--checkpoint", checkpoint, "--size", 32, "--json",
        "--window-seconds", 0.8, "--annotate", out,
    )  # fmt: skip
    summary = json.loads(result.out.splitlines()[-1])
    assert result.code == 1 and "No space left on device" in summary["error"]
    assert summary["windows"] > 0  # the analysis went on without the video
    assert result.err.count("No space left") == 1  # warned once
    assert not stale.exists() and not out.exists()
