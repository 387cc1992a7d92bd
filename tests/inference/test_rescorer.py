"""The rescorer of window scores: it learns persistence that no per-window threshold sees
(and does not when the windows are shuffled in time), runs live one window at a time as it
runs over a whole recording, survives its file, and plugs into the predictor and the
commands only on the stream it was fitted on."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

import rsanet.cli
from rsanet.data.events import EventInterval
from rsanet.inference import Predictor
from rsanet.inference.event_eval import (
    StreamSettings,
    VideoRun,
    read_window_scores,
    window_scores_npz,
)
from rsanet.inference.event_metrics import roc_auc
from rsanet.inference.rescorer import Rescorer, fit_rescorer, step_labels

CLASSES = ["normal", "fight", "fall"]
STRIDE = 0.5


def synthetic_runs(count: int, seed: int) -> list[VideoRun]:
    """Recordings of 60 windows in 12 sessions. Half hold a fight for 10 windows, whose
    fight score stays at one level drawn from [0.2, 0.8]; every recording also has single
    windows where the fight score spikes to a level from the same range. A window's value
    tells nothing; only a score that persists does."""
    rng = np.random.default_rng(seed)
    runs = []
    for number in range(count):
        scores = np.tile([0.96, 0.02, 0.02], (60, 1))
        events = ()
        if number % 2:
            start = int(rng.integers(10, 40))
            scores[start : start + 10, 1] = rng.uniform(0.2, 0.8)
            # windows start..start+9 end inside the event
            events = (EventInterval("fight", start * STRIDE + 1.5, (start + 9) * STRIDE + 2.0),)
        for spike in rng.choice(60, size=4, replace=False):
            if not any(e.start_s - 1 < spike * STRIDE + 2.0 <= e.end_s + 1 for e in events):
                scores[spike, 1] = rng.uniform(0.2, 0.8)
        scores[:, 0] = 1.0 - scores[:, 1:].sum(axis=1)
        starts = [i * STRIDE for i in range(60)]
        runs.append(
            VideoRun(
                f"s{number % 12:02d}/cam{number // 12}.mp4",
                events,
                starts=starts,
                ends=[s + 2.0 for s in starts],
                scores=list(scores),
                duration_s=31.5,
            )
        )
    return runs


def held_fight_auc(rescored: list[VideoRun], runs: list[VideoRun]) -> float:
    """ROC-AUC of the rescored fight probability: windows two or more into a fight against
    every normal window whose fight score spiked."""
    positive, negative = [], []
    for run, new in zip(runs, rescored, strict=True):
        labels = step_labels(run, CLASSES, 0)
        for i, label in enumerate(labels):
            if label == 1 and i >= 2 and labels[i - 2] == 1:
                positive.append(new.score_matrix[i, 1])
            elif label == 0 and run.score_matrix[i, 1] > 0.1:
                negative.append(new.score_matrix[i, 1])
    y = [1] * len(positive) + [0] * len(negative)
    return roc_auc(y, positive + negative)


@pytest.fixture(scope="module")
def runs() -> list[VideoRun]:
    return synthetic_runs(48, seed=0)


@pytest.fixture(scope="module")
def fitted(runs):
    return fit_rescorer(
        runs, CLASSES, window_s=2.0, stride_s=STRIDE, smoothing=1, hidden=16, epochs=60
    )


def test_it_learns_persistence_out_of_fold(runs, fitted):
    rescorer, out_of_fold = fitted
    assert len(rescorer.heads) == 5
    assert held_fight_auc(out_of_fold, runs) > 0.9
    # the raw score cannot tell the held fight from a spike
    assert held_fight_auc(runs, runs) < 0.7


def test_windows_shuffled_in_time_teach_it_nothing(runs):
    """The negative control: the same windows (with their labels) in a random order."""

    def shuffled(matrix, number):
        return np.random.default_rng(number).permutation(len(matrix))

    _, out_of_fold = fit_rescorer(
        runs,
        CLASSES,
        window_s=2.0,
        stride_s=STRIDE,
        smoothing=1,
        hidden=16,
        epochs=60,
        order=shuffled,
    )
    order = [shuffled(run.score_matrix, n) for n, run in enumerate(runs)]
    back = [  # the rescored windows put back in time order, to compare like with like
        VideoRun(r.path, r.events, r.starts, r.ends, list(o.score_matrix[np.argsort(idx)]))
        for r, o, idx in zip(runs, out_of_fold, order, strict=True)
    ]
    assert held_fight_auc(back, runs) < 0.75


def test_repeated_cross_fits_average_heads_that_did_not_see_the_recording(runs):
    """Two cross-fits: every recording's out-of-fold score is the mean of the two single
    cross-fits' (seeds 0 and 1, each its own deal of sessions into folds), and the rescorer
    holds all ten heads."""
    options = {"window_s": 2.0, "stride_s": STRIDE, "smoothing": 1, "hidden": 8, "epochs": 3}
    few = runs[:16]
    both, out_of_fold = fit_rescorer(few, CLASSES, repeats=2, **options)
    singles = [fit_rescorer(few, CLASSES, seed=seed, **options)[1] for seed in (0, 1)]
    assert len(both.heads) == 10
    for number, run in enumerate(out_of_fold):
        mean = (singles[0][number].score_matrix + singles[1][number].score_matrix) / 2
        np.testing.assert_allclose(run.score_matrix, mean, rtol=1e-12, atol=1e-15)
    assert not np.allclose(singles[0][0].score_matrix, singles[1][0].score_matrix)
    with pytest.raises(ValueError, match="repeats"):
        fit_rescorer(few, CLASSES, repeats=0, **options)


def test_a_stream_one_window_at_a_time_equals_the_whole_recording(runs, fitted):
    rescorer = fitted[0]
    stream = rescorer.stream()
    matrix = runs[1].score_matrix
    live = np.array([stream(row) for row in matrix])
    np.testing.assert_allclose(live, rescorer.rescore(matrix), atol=1e-5)
    stream.reset()  # a fresh start: the first window again
    np.testing.assert_allclose(stream(matrix[0]), live[0], atol=1e-6)
    np.testing.assert_allclose(live.sum(axis=1), 1.0, atol=1e-6)


def test_the_file_round_trip_and_a_file_that_is_not_one(runs, fitted, tmp_path):
    rescorer = fitted[0]
    path = rescorer.save(tmp_path / "r.safetensors")
    loaded = Rescorer.load(path)
    assert (loaded.classes, loaded.window_s, loaded.stride_s, loaded.smoothing) == (
        CLASSES,
        2.0,
        STRIDE,
        1,
    )
    matrix = runs[3].score_matrix
    np.testing.assert_array_equal(loaded.rescore(matrix), rescorer.rescore(matrix))
    other = tmp_path / "weights.safetensors"
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="weights.safetensors: not a rescorer"):
        Rescorer.load(other)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        Rescorer.load(tmp_path / "missing.safetensors")


class ConstantModel:
    """A model whose window scores do not depend on the clip."""

    def __call__(self, clip):
        import torch

        return torch.tensor([[2.0, 0.5, 0.1]]).expand(clip.shape[0], 3)


def test_the_predictor_runs_each_stream_through_its_own_rescorer(fitted):
    rescorer = fitted[0]
    predictor = Predictor(ConstantModel(), CLASSES, num_frames=4, size=16, smoothing=1)
    predictor.use_rescorer(rescorer)
    first, second = predictor.new_smoother(), predictor.new_smoother()
    scores = np.array([0.7, 0.2, 0.1])
    a = [first(scores) for _ in range(3)]
    b = second(scores)  # a second camera starts afresh
    stream = rescorer.stream()
    np.testing.assert_allclose(a, [stream(scores) for _ in range(3)], atol=1e-6)
    np.testing.assert_allclose(b, a[0], atol=1e-6)
    first.reset()
    np.testing.assert_allclose(first(scores), a[0], atol=1e-6)
    with pytest.raises(ValueError, match="smoothed over 1 window"):
        Predictor(ConstantModel(), CLASSES, num_frames=4, size=16, smoothing=3).use_rescorer(
            rescorer
        )
    with pytest.raises(ValueError, match="classes normal, fight, fall"):
        Predictor(ConstantModel(), ["a", "b", "c"], num_frames=4, size=16).use_rescorer(rescorer)


def test_fitting_needs_a_normal_class_and_two_sessions(runs):
    with pytest.raises(ValueError, match="no class 'background'"):
        fit_rescorer(runs, CLASSES, window_s=2, stride_s=STRIDE, smoothing=1, normal="background")
    one_session = [
        VideoRun("s00/" + r.path.split("/")[1], r.events, r.starts, r.ends, r.scores)
        for r in runs[:4]
    ]
    with pytest.raises(ValueError, match="at least two sessions"):
        fit_rescorer(one_session, CLASSES, window_s=2, stride_s=STRIDE, smoothing=1)


# -- the commands ----------------------------------------------------------------------


@pytest.fixture
def run_cli(monkeypatch, capsys):
    monkeypatch.setattr(rsanet.cli, "COMMAND_MODULES", ["eval_events", "fit_rescorer", "predict"])

    def run(*args: object) -> SimpleNamespace:
        code = rsanet.cli.main([str(a) for a in args])
        captured = capsys.readouterr()
        return SimpleNamespace(code=code, out=captured.out, err=captured.err)

    return run


def test_fit_rescorer_writes_the_rescorer_rules_and_out_of_fold_scores(run_cli, runs, tmp_path):
    scores = tmp_path / "window_scores.npz"
    scores.write_bytes(window_scores_npz(runs, CLASSES, StreamSettings(2.0, STRIDE, 1)))
    out = tmp_path / "site" / "rescorer.safetensors"
    result = run_cli(
        "fit-rescorer", scores, "--out", out, "--epochs", 60, "--hidden", 16, "--repeats", 2,
        "--target-fa-per-hour", 60, "--scores-out", tmp_path / "oof.npz", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["heads"] == 10  # 5 folds, 2 cross-fits
    assert summary["settings"] == {"window_s": 2.0, "stride_s": STRIDE, "smoothing": 1}
    assert summary["windows_per_class"]["fight"] == 24 * 10
    fold = summary["out_of_fold"]
    assert fold["events"] == 24 and fold["detected"] >= 20
    rules = (tmp_path / "site" / "rules.yaml").read_text()
    assert "fight:" in rules and "fall" not in rules  # no fall event: no rule
    rescorer = Rescorer.load(out)
    oof = read_window_scores(tmp_path / "oof.npz")
    assert oof.settings == StreamSettings(2.0, STRIDE, 1)
    # the out-of-fold scores are not the rescorer's own (each fold left its sessions out)
    assert not np.allclose(oof.runs[1].score_matrix, rescorer.rescore(runs[1].score_matrix))


def test_fit_rescorer_asks_for_the_smoothing_a_file_does_not_record(run_cli, runs, tmp_path):
    scores = tmp_path / "old.npz"
    scores.write_bytes(window_scores_npz(runs, CLASSES))
    result = run_cli("fit-rescorer", scores, "--out", tmp_path / "r.safetensors")
    assert result.code == 2
    assert "old.npz does not record the smoothing" in result.err and "--smoothing N" in result.err
    result = run_cli("fit-rescorer", scores, "--out", tmp_path / "r.safetensors",
                     "--smoothing", 1, "--epochs", 2, "--json")  # fmt: skip
    assert result.code == 0, result.err
    assert json.loads(result.out)["settings"]["stride_s"] == STRIDE  # read off the windows


def test_a_command_refuses_a_stream_the_rescorer_was_not_fitted_on(run_cli, fitted, tmp_path):
    path = fitted[0].save(tmp_path / "r.safetensors")
    for command in (
        ["eval-events", "m.pt", "--format", "intervals", "--annotations", "x.csv"],
        ["predict", "video.mp4", "--checkpoint", "m.pt"],
    ):
        result = run_cli(*command, "--rescorer", path, "--stride-seconds", 1)
        assert result.code == 2
        assert "--stride-seconds 1: the rescorer" in result.err, result.err
        assert "fitted on scores with --stride-seconds 0.5" in result.err


def test_old_window_scores_files_read_back_without_settings(runs, tmp_path):
    path = tmp_path / "w.npz"
    path.write_bytes(window_scores_npz(runs[:3], CLASSES))
    back = read_window_scores(path)
    assert back.settings is None and back.classes == CLASSES
    np.testing.assert_allclose(back.runs[1].score_matrix, runs[1].score_matrix, atol=1e-7)
    assert back.runs[1].events == runs[1].events
    np.savez(tmp_path / "other.npz", scores=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz: not a window_scores.npz.*no classes"):
        read_window_scores(tmp_path / "other.npz")


def test_serve_takes_the_stream_of_its_rescorer_and_gives_each_camera_one(fitted, tmp_path):
    from rsanet.inference.rescorer import RescoredSmoother, TemporalHead
    from rsanet.serve.config import ConfigError, parse_config
    from rsanet.serve.server import Server
    from support.serve import CLASSES as SERVE_CLASSES
    from support.serve import stub_predictor

    (tmp_path / "model.pt").write_bytes(b"x")
    fitted[0].save(tmp_path / "r.safetensors")
    cameras = [
        {"name": "door", "url": "rtsp://10.0.0.5/s"},
        {"name": "yard", "url": "rtsp://10.0.0.6/s"},
    ]
    data = {"model": "model.pt", "rescorer": "r.safetensors", "cameras": cameras}
    config = parse_config(data, tmp_path)
    assert (config.window_seconds, config.stride_seconds, config.smoothing) == (2.0, STRIDE, 1)
    with pytest.raises(ConfigError, match="stride_seconds: 1, but the rescorer r.safetensors"):
        parse_config({**data, "stride_seconds": 1}, tmp_path)
    with pytest.raises(ConfigError, match="rescorer: the rescorer was fitted on the scores"):
        Server(config, predictor=stub_predictor(), http=False)  # other classes
    own = Rescorer([TemporalHead(len(SERVE_CLASSES), 8)], SERVE_CLASSES, 2.0, STRIDE, 1)
    own.save(tmp_path / "r.safetensors")
    server = Server(parse_config(data, tmp_path), predictor=stub_predictor(), http=False)
    try:
        first, second = (camera.smoother for camera in server.cameras)
        assert isinstance(first, RescoredSmoother) and first.stream is not second.stream
    finally:
        server.close()
    config = parse_config(data, tmp_path)
    Rescorer([TemporalHead(len(SERVE_CLASSES), 8)], SERVE_CLASSES, 2.0, 1.0, 1).save(
        tmp_path / "r.safetensors"
    )  # replaced after the configuration took its stride
    with pytest.raises(ConfigError, match="changed after the configuration was read"):
        Server(config, predictor=stub_predictor(), http=False)
