"""SynthCCTV: deterministic recordings in the AI Hub layout, read back by the aihub-cctv
reader with the right events, classes and normal sessions, and theft as dumping reversed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rsanet.cli import main
from rsanet.data import read_untrimmed
from rsanet.data.synthcctv import (
    DURATIONS,
    PERSON_SCALE,
    SYNTHCCTV_CLASSES,
    plan_session,
    render_frames,
    scene_labels,
    session_labels,
    write_synthcctv,
)

TINY = {"seconds": 4.0, "fps": 10, "size": (64, 48)}


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.mp4"))
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthcctv")
    summary = write_synthcctv(
        out, 4, classes=["fight", "theft", "loitering"], normal_fraction=0.25, seed=3, **TINY
    )
    return out, summary


def test_read_back_by_the_aihub_reader(written):
    out, summary = written
    data = read_untrimmed("aihub-cctv", out)
    assert data.bad == [] and data.duplicates == []
    assert len(data.videos) == len(summary["recordings"]) == summary["written"]
    labels = session_labels(4, ["fight", "theft", "loitering"], 0.25, 3)
    by_session: dict[str, list] = {}
    for video in data.videos:
        by_session.setdefault(video.metadata["session"], []).append(video)
        assert video.fps == 10 and video.frames == 40 and video.duration_s == 4.0
    assert len(by_session) == 4
    for index, label in enumerate(labels):
        videos = by_session[f"s{index + 1:04d}"]
        assert 2 <= len(videos) <= 3
        assert {v.metadata["camera"] for v in videos} == {
            f"cam{c:02d}" for c in range(1, len(videos) + 1)
        }
        plan = plan_session(3, index, label, **TINY)
        if label is None:
            assert all(v.events == () and v.labels == () for v in videos)
            assert "정상(normal)" in videos[0].path
            continue
        first, last = plan.event
        for video in videos:  # every camera: the same event at the same time
            [event] = video.events
            assert event.label == label and video.labels == (label,)
            assert event.start_s == pytest.approx(first / 10)
            assert event.end_s == pytest.approx(last / 10)
            assert 0 < event.start_s < event.end_s < video.duration_s
            assert video.actions and all(a.actor.startswith("person_") for a in video.actions)


def test_same_seed_same_bytes_and_a_rerun_skips(written, tmp_path):
    out, summary = written
    again = write_synthcctv(
        tmp_path, 4, classes=["fight", "theft", "loitering"], normal_fraction=0.25, seed=3, **TINY
    )
    assert _digests(tmp_path) == _digests(out)
    assert again["recordings"] == summary["recordings"]
    # an interrupted run: one recording's XML missing, a temporary left behind
    victim = tmp_path / again["recordings"][0]
    victim.with_suffix(".xml").unlink()
    (victim.parent / f".{victim.name}.abc123.mp4.tmp").write_bytes(b"half")
    resumed = write_synthcctv(
        tmp_path, 4, classes=["fight", "theft", "loitering"], normal_fraction=0.25, seed=3, **TINY
    )
    assert resumed["written"] == 1 and resumed["skipped"] == len(again["recordings"]) - 1
    assert _digests(tmp_path) == _digests(out)
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(ValueError, match="other settings"):
        write_synthcctv(tmp_path, 4, seed=4, **TINY)


def test_same_bytes_in_another_process(tmp_path):
    code = (
        "import sys; from rsanet.data.synthcctv import write_synthcctv; "
        "write_synthcctv(sys.argv[1], 1, classes=['dumping'], normal_fraction=0, seed=7, "
        "seconds=4.0, fps=10, size=(64, 48))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "a")], check=True, env=env)
    write_synthcctv(tmp_path / "b", 1, classes=["dumping"], normal_fraction=0, seed=7, **TINY)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b") != {}


def test_other_seed_other_frames():
    a = render_frames(plan_session(0, 0, "fight", **TINY), 0, 0, 10)
    b = render_frames(plan_session(1, 0, "fight", **TINY), 0, 0, 10)
    assert a.shape == (10, 48, 64, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b).mean() > 5


def test_class_set_and_normal_fraction_are_honoured():
    labels = session_labels(40, ["assault", "dumping"], 0.25, 0)
    counts = Counter(labels)
    assert counts == {None: 10, "assault": 15, "dumping": 15}
    assert labels != sorted(labels, key=str)  # shuffled
    assert session_labels(5, ["fight"], 1.0, 0) == [None] * 5


def test_each_scene_staged_with_several_classes(tmp_path):
    """With two events per scene, every scene with an event is filmed twice, with two
    different classes under the same session id (a split by session keeps them together);
    the walkers, cameras and ground are the scene's, whichever event is staged."""
    classes = ["fight", "fainting", "loitering"]
    assert scene_labels("loitering", classes, 2) == ["loitering", "fight"]
    assert scene_labels(None, classes, 2) == [None]
    assert scene_labels("fight", classes, 9) == classes
    write_synthcctv(
        tmp_path, 4, classes=classes, normal_fraction=0.25, seed=3, events_per_scene=2, **TINY
    )
    data = read_untrimmed("aihub-cctv", tmp_path)
    by_session: dict[str, set] = {}
    for video in data.videos:
        by_session.setdefault(video.metadata["session"], set()).update(video.labels or {None})
    first = session_labels(4, classes, 0.25, 3)
    for index, label in enumerate(first):
        assert by_session[f"s{index + 1:04d}"] == set(scene_labels(label, classes, 2))
    index = first.index("fight")
    a, b = (plan_session(3, index, c, **TINY) for c in ("fight", "fainting"))
    assert [(c.cx, c.cy, c.scale, c.mirror) for c in a.cameras] == [
        (c.cx, c.cy, c.scale, c.mirror) for c in b.cameras
    ]
    assert len(a.walkers) == len(b.walkers) and a.place == b.place and a.season == b.season
    with pytest.raises(ValueError, match="events_per_scene must be >= 1"):
        write_synthcctv(tmp_path / "x", 2, events_per_scene=0, **TINY)


@pytest.mark.parametrize("label", SYNTHCCTV_CLASSES)
def test_every_class_event_inside_the_recording(label):
    for index in range(3):
        plan = plan_session(index, index, label, seconds=30.0)
        first, last = plan.event
        low, high = DURATIONS[label]
        assert low - 0.05 <= (last - first) / plan.fps <= high + 0.05
        assert 0 < first < last < plan.frames
        assert plan.actors and all(0 <= a <= b for _, _, a, b in plan.actions)
    short = plan_session(0, 0, label, seconds=4.0)
    assert 0 < short.event[0] < short.event[1] < short.frames  # long classes shrink to fit


def test_the_event_changes_the_pixels_only_around_its_time():
    event = plan_session(0, 2, "fight", **TINY)
    quiet = plan_session(0, 2, None, **TINY)
    first, last = event.event
    a = render_frames(event, 0, 0, 40, nuisances=False).astype(int)
    b = render_frames(quiet, 0, 0, 40, nuisances=False).astype(int)
    during = np.abs(a[first:last] - b[first:last]).mean()
    assert during > 0.5


def test_person_scale_sizes_the_people_and_nothing_else():
    """The same session at two person scales: the same walkers on the same paths, the same
    event at the same time, everyone ``scale`` times taller, and more of the picture
    covered by the event's people."""
    small = plan_session(0, 3, "fight", **TINY, person_scale=1.0)
    large = plan_session(0, 3, "fight", **TINY, person_scale=2.0)
    assert small.event == large.event and len(small.walkers) == len(large.walkers)
    t = np.linspace(0, 4, 9)
    for a, b in zip(small.walkers, large.walkers, strict=True):
        sa, sb = a.state(t), b.state(t)
        assert np.allclose(sa["x"], sb["x"]) and np.allclose(sa["y"], sb["y"])
        assert np.allclose(sb["h"], 2.0 * sa["h"])
    quiet = [plan_session(0, 3, None, **TINY, person_scale=s) for s in (1.0, 2.0)]
    first, last = small.event

    def covered(plan, background):
        a = render_frames(plan, 0, first, last, nuisances=False).astype(int)
        b = render_frames(background, 0, first, last, nuisances=False).astype(int)
        return (np.abs(a - b).sum(-1) > 30).mean()

    assert covered(large, quiet[1]) > 2.5 * covered(small, quiet[0]) > 0


def test_theft_is_dumping_played_backwards():
    for index in range(3):
        dumping = plan_session(5, index, "dumping", **TINY)
        theft = plan_session(5, index, "theft", **TINY)
        assert dumping.event == theft.event
        first, last = dumping.event
        for camera in range(len(dumping.cameras)):
            forward = render_frames(dumping, camera, first, last + 1, nuisances=False)
            backward = render_frames(theft, camera, first, last + 1, nuisances=False)
            assert np.array_equal(backward, forward[::-1])
            assert not np.array_equal(forward, forward[::-1])  # the motion has a direction
        # with walkers, lighting and noise, the frames outside the event are the same scene
        full_d = render_frames(dumping, 0, 0, 40)
        full_t = render_frames(theft, 0, 0, 40)
        assert full_d.shape == full_t.shape


def test_cli_synth_cctv(tmp_path, capsys):
    out = tmp_path / "data"
    args = ["data", "synth-cctv", "--out", str(out), "--sessions", "2", "--cameras", "2"]
    args += ["--seconds", "3", "--size", "48x32", "--classes", "fight,intrusion", "--seed", "1"]
    assert main(args) == 0
    assert "4 recordings (4 written, 0 already there)" in capsys.readouterr().out
    manifest = json.loads((out / "synthcctv.json").read_text())
    assert manifest["complete"] and manifest["settings"]["classes"] == ["fight", "intrusion"]
    assert main(args) == 0
    assert "(0 written, 4 already there)" in capsys.readouterr().out
    assert main(["data", "check", str(out), "--format", "aihub-cctv", "--workers", "0"]) == 0
    assert manifest["settings"]["person_scale"] == PERSON_SCALE


def test_cli_synth_cctv_help_gives_the_generators_person_scale(capsys):
    with pytest.raises(SystemExit):
        main(["data", "synth-cctv", "--help"])
    assert f"(default {PERSON_SCALE}:" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cameras", "2-4"], "--cameras must be within 1-3"),
        (["--size", "160"], "--size must be WxH"),
        (["--classes", "robbery"], "unknown --classes robbery"),
        (["--normal-fraction", "1.5"], "--normal-fraction must be in"),
        (["--person-scale", "4"], "--person-scale must be within 0.5-3"),
    ],
)
def test_cli_synth_cctv_errors(tmp_path, capsys, extra, message):
    assert main(["data", "synth-cctv", "--out", str(tmp_path / "x"), *extra]) == 2
    assert message in capsys.readouterr().err
