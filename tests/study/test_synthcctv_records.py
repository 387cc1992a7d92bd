"""The SynthCCTV experiment scripts kept as records of their runs still run: the motion-only
training (``rsanet train`` with each clip's temporal mean removed), the loop that trains
on crops at the recordings' own resolution, each on tiny generated recordings for one
short epoch, and the window scores the rule comparisons read (``rules/compare.py
scores``), which must be those of ``rsanet eval-events``, and scores written every 0.5 s
without smoothing, which must hold the 1 s smoothed ones. Structure only: a few steps
cannot be held to accuracy."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from rsanet.cli import main
from rsanet.data.synthcctv import write_synthcctv
from support.synthcctv import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results" / "synthcctv"

#: the motion-only transforms on a clip whose frames differ: the mean over T must be gone
MEAN_REMOVED = """
import importlib.util, sys, numpy as np, torch
spec = importlib.util.spec_from_file_location("motion_only", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
clip, _ = module.motion_only_transforms(size=32, train=False)(frames)
assert clip.shape[-3:] == (4, 32, 32), clip.shape
assert clip.abs().mean() > 0.1, "the motion is gone too"
assert clip.mean(dim=-3).abs().max() < 1e-5, "the temporal mean is still there"
print("ok")
"""


def _run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_record_scripts_run_on_tiny_recordings(tmp_path: Path) -> None:
    data = tmp_path / "data"  # 160 x 120: the crops loop's validation tiles cover that frame
    write_synthcctv(
        data, 4, classes=["fight", "fainting"], normal_fraction=0.25, seed=0,
        seconds=6.0, fps=10, size=(160, 120), cameras=(2, 2),
    )  # fmt: skip
    motion_only = RESULTS / "motion_only" / "experiment.py"
    assert _run("-c", MEAN_REMOVED, str(motion_only)).strip() == "ok"

    run = tmp_path / "motion_only"
    config = ["configs/synthcctv_tsm.yaml", "--output", str(run)]
    _run(str(motion_only), "train", *config, "--set", *tiny_overrides(data))
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_samples"] for r in epochs if r.get("event") == "epoch"] == [8]

    crops = tmp_path / "crops"  # initialised from the motion-only run's tsm_tiny
    settings = ["data.untrimmed.windows_per_epoch=16", "data.num_frames=4"]
    script = RESULTS / "crops" / "experiment.py"
    _run(str(script), "tsm_tiny", str(run / "last.pt"), str(data), str(crops), "1", *settings)
    (log,) = [json.loads(line) for line in (crops / "log.jsonl").read_text().splitlines()]
    assert log["epoch"] == 1 and log["train_loss"] > 0
    result = json.loads((crops / "result.json").read_text())
    assert result["val_windows"] > 0 and 0 <= result["val_mean_class"] <= 1
    assert (crops / "model.pt").is_file() and (crops / "val_scores.npz").is_file()

    scores = tmp_path / "scores.npz"  # the scores of the motion-only run's network
    compare = RESULTS / "rules" / "compare.py"
    _run(str(compare), "scores", str(run / "last.pt"), str(data), str(scores))
    events = tmp_path / "events"
    command = ["eval-events", str(run / "last.pt"), "--format", "aihub-cctv", "--annotations"]
    assert main([*command, str(data), "--no-figures", "--out", str(events)]) == 0
    ours, theirs = np.load(scores), np.load(events / "window_scores.npz")
    assert sorted(ours.files) == sorted(theirs.files) and len(ours["video"]) > 0
    for key in ours.files:
        if key == "scores":  # one forward each, in two processes: threads may sum in
            # another order (a last-bit difference); anything more is a real difference
            np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-7)
        elif key != "videos":
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    relative = [str(Path(path).relative_to(data)) for path in theirs["videos"]]
    assert list(ours["videos"]) == relative  # no folder of this machine in the record

    # scores every 0.5 s without smoothing hold the 1 s, smoothing-3 ones
    raw = tmp_path / "raw.npz"
    _run(str(compare), "scores", str(run / "last.pt"), str(data), str(raw), "2", "0.5", "1")
    rules = _module(compare)
    _, direct = rules.load(scores)
    _, fine = rules.load(raw)
    assert sum(len(r.starts) for r in fine) > 1.5 * sum(len(r.starts) for r in direct)
    for ours_run, direct_run in zip(rules.resampled(fine, 1.0, 3), direct, strict=True):
        assert ours_run.path == direct_run.path and ours_run.starts == direct_run.starts
        assert ours_run.ends == direct_run.ends
        np.testing.assert_allclose(ours_run.score_matrix, direct_run.score_matrix, atol=1e-6)


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_context_experiment_reads_the_same_frames_in_training_and_scoring(
    tmp_path: Path, monkeypatch
) -> None:
    """``context/experiment.py``: a window's clip (4 frames of the 8 s before it, then its
    own) is the same frames whether the training set reads it by time or the stream picks
    it from the frames decoded so far; and both commands run on tiny recordings, scoring
    through the context."""
    import rsanet.inference.predictor as predictor
    from rsanet.data.decoding import open_video
    from rsanet.inference.sources import SourceSpec, decode_frames

    data = tmp_path / "data"
    write_synthcctv(
        data, 4, classes=["dumping"], normal_fraction=0.25, seed=3,
        seconds=14.0, fps=10, size=(64, 48), cameras=(1, 1),
    )  # fmt: skip
    context = _module(RESULTS / "context" / "experiment.py")
    video = sorted(data.rglob("*.mp4"))[0]
    stream = context.ContextSlidingWindow(2.0, 0.5, max_frames=64)
    windows = []
    for frame in decode_frames(SourceSpec("file", str(video)), short_side=None):
        stream.add(frame)
        while stream.due():
            windows.append(stream.take())
    assert len(windows) > 20 and stream.history[0].time == 0.0
    source = open_video(str(video), backend="pyav")
    owner = type("Set", (), {"num_frames": 20, "sampler": type("S", (), {"window_s": 2.0})})
    for window in windows[::4]:
        picked = np.stack([frame.image for frame in window.sample(20)])
        times = context.frame_times(owner, type("W", (), {"start_s": window.start}))
        assert len(times) == 20 and (times[:4] <= max(window.start - 1.0, 0.0)).all()
        np.testing.assert_array_equal(picked, source.read_seconds(times))
    source.close()

    run = tmp_path / "run"
    tiny = [*tiny_overrides(data), "data.num_frames=6"]
    script = str(RESULTS / "context" / "experiment.py")
    _run(script, "train", "configs/synthcctv_tsm.yaml", "--output", str(run), "--set", *tiny)
    scores = tmp_path / "scores.npz"
    monkeypatch.setattr(predictor, "SlidingWindow", predictor.SlidingWindow)  # restored after
    sampled, pick = [], context.clip_frames
    monkeypatch.setattr(context, "clip_frames", lambda w, n: sampled.append(n) or pick(w, n))
    context.run(["scores", str(run / "last.pt"), str(data), str(scores), "1", "0.5", "1"])
    assert len(sampled) > 20 and set(sampled) == {6}  # every window read its context
    with np.load(scores) as written:
        assert float(written["stride_s"]) == 0.5 and len(written["ends"]) > 20


def test_the_background_experiment_starts_as_the_plain_network_and_reads_the_change(
    tmp_path: Path, monkeypatch
) -> None:
    """``background/experiment.py``: with its second stem convolution at zero the network
    is the plain one on the window's frames (the context frames change nothing); once that
    convolution has weights, another background changes the output; and both commands run
    on tiny recordings."""
    import torch

    import rsanet.inference.predictor as predictor
    import rsanet.models.registry as registry
    from rsanet.models import create_model

    background = _module(RESULTS / "background" / "experiment.py")
    plain = create_model("tsm_tiny", num_classes=3, num_frames=6).eval()
    monkeypatch.setitem(registry._MODELS, "tsm_tiny", registry._MODELS["tsm_tiny"])
    monkeypatch.setattr(predictor, "SlidingWindow", predictor.SlidingWindow)  # restored after
    background.use_background_tsm()
    model = create_model("tsm_tiny", num_classes=3, num_frames=6).eval()
    model.load_state_dict(plain.state_dict(), strict=False)
    clip = torch.randn(2, 3, 4 + 6, 32, 32, generator=torch.Generator().manual_seed(0))
    moved = clip.clone()
    moved[:, :, :4] += 1.0  # another background
    with torch.no_grad():
        torch.testing.assert_close(model(clip), plain(clip[:, :, 4:]))
        torch.testing.assert_close(model(moved), plain(clip[:, :, 4:]))
        model.background_conv.weight.normal_(0, 0.1)
        assert (model(clip) - model(moved)).abs().max() > 1e-3

    data = tmp_path / "data"
    write_synthcctv(
        data, 4, classes=["dumping"], normal_fraction=0.25, seed=3,
        seconds=14.0, fps=10, size=(64, 48), cameras=(1, 1),
    )  # fmt: skip
    run, script = tmp_path / "run", str(RESULTS / "background" / "experiment.py")
    tiny = [*tiny_overrides(data), "data.num_frames=6"]
    _run(script, "train", "configs/synthcctv_tsm.yaml", "--output", str(run), "--set", *tiny)
    assert "background_conv.weight" in torch.load(run / "last.pt", weights_only=False)["state_dict"]
    scores = tmp_path / "scores.npz"
    background.run(["scores", str(run / "last.pt"), str(data), str(scores), "1", "0.5", "1"])
    with np.load(scores) as written:
        assert float(written["stride_s"]) == 0.5 and len(written["ends"]) > 20
