"""Clip-level and sliding-window prediction on real video, folders with bad files, and
checkpoints that are not ours; through the Python API and ``rsanet predict``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from rsanet.data import PyAVVideo, TSNSampler, build_transforms
from rsanet.inference import (
    CheckpointError,
    Predictor,
    TorchBackend,
    decode_frames,
    load_classifier,
    parse_source,
)
from support.inference import CLASSES


class Recording(TorchBackend):
    """The model, remembering every clip it was given."""

    def __init__(self, model):
        super().__init__(model)
        self.clips = []

    def __call__(self, clip):
        self.clips.append(clip.clone())
        return super().__call__(clip)


@pytest.fixture(scope="module")
def classifier(checkpoint):
    return load_classifier(checkpoint)


def test_load_classifier_reads_model_and_classes(classifier):
    assert classifier.name == "rsanet_tiny"
    assert classifier.classes == CLASSES and classifier.num_frames == 8
    assert not classifier.model.training


def test_input_size_comes_from_the_training_configuration(tmp_path):
    import rsanet
    from rsanet.models import save_checkpoint

    model = rsanet.create_model("rsanet_tiny", num_classes=2)
    path = save_checkpoint(tmp_path / "trained.pt", model, config={"data": {"size": 48}})
    predictor = Predictor.from_checkpoint(path)
    assert (predictor.size, predictor.short_side, predictor.classes) == (
        48,
        55,
        ["class_0", "class_1"],
    )
    assert Predictor.from_checkpoint(path, size=96).size == 96


def test_file_prediction_is_the_evaluation_clip(classifier, bikes):
    backend = Recording(classifier.model)
    predictor = Predictor(backend, classifier.classes, num_frames=8, size=64, top_k=3)
    prediction = predictor.predict_file(bikes)
    assert (prediction.frames, prediction.duration) == (250, 10.0)
    assert [label for label, _ in prediction.top] == [
        CLASSES[i] for i in np.argsort(-prediction.scores)[:3]
    ]
    assert prediction.scores.sum() == pytest.approx(1.0)
    assert prediction.to_dict()["top"][0]["label"] == prediction.top[0][0]
    # the clip is exactly the one evaluation would build: TSN centres + eval transforms
    with PyAVVideo(bikes) as video:
        frames = video.read(TSNSampler(8, train=False)(250)[0].tolist())
    expected, _ = build_transforms(train=False, size=64)(frames)
    assert torch.equal(backend.clips[0][0], expected)


def test_windows_sample_tsn_frames_inside_each_window(classifier, bikes):
    backend = Recording(classifier.model)
    predictor = Predictor(backend, classifier.classes, num_frames=8, size=64, smoothing=2)
    frames = decode_frames(parse_source(str(bikes)), short_side=predictor.short_side)
    analysis = predictor.analyse(frames, window=4.0, stride=3.0, source="bikes")
    results = list(analysis)
    assert [(r.start, r.end) for r in results] == [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    assert all(r.frames == 100 and r.latency_ms >= r.compute_ms > 0 for r in results)
    # window 1 covers frames 75..174: its clip shows the TSN centres of those 100 frames
    indices = (75 + TSNSampler(8, train=False)(100)[0]).tolist()
    stored = [f.image for f in decode_frames(parse_source(str(bikes)), short_side=73)]
    expected = predictor.clip(np.stack([stored[i] for i in indices]))
    assert torch.equal(backend.clips[1], expected)
    # smoothing: the average of the last two windows' own scores
    assert np.allclose(results[1].scores, (results[0].raw_scores + results[1].raw_scores) / 2)
    summary = analysis.summary()
    assert (summary.frames, summary.windows, summary.dropped_frames) == (250, 3, 0)
    assert summary.realtime_factor == pytest.approx(
        3.0 * 3 / (sum(r.compute_ms for r in results) / 1e3)
    )


def test_folder_predicts_the_good_files_and_lists_the_bad(classifier, tmp_path, bikes, bunny):
    shutil.copy(bikes, tmp_path / "a_bikes.mp4")
    shutil.copy(bunny, tmp_path / "b_bunny.mp4")
    (tmp_path / "c_empty.mp4").write_bytes(b"")
    (tmp_path / "d_text.mkv").write_text("not a video")
    (tmp_path / "e_codec.mp4").write_bytes(bikes.read_bytes().replace(b"avc1", b"zzzz"))
    (tmp_path / "f_truncated.mp4").write_bytes(bikes.read_bytes()[:30000])
    (tmp_path / "readme.txt").write_text("ignored")
    predictor = Predictor(TorchBackend(classifier.model), CLASSES, num_frames=8, size=64)
    items = list(predictor.predict_folder(tmp_path))
    good = [i for i in items if not isinstance(i, tuple)]
    bad = dict(i for i in items if isinstance(i, tuple))
    assert [p.source.split("/")[-1] for p in good] == ["a_bikes.mp4", "b_bunny.mp4"]
    assert [p.split("/")[-1] for p in bad] == [
        "c_empty.mp4",
        "d_text.mkv",
        "e_codec.mp4",
        "f_truncated.mp4",
    ]
    reasons = list(bad.values())
    assert "empty" in reasons[0] and "unsupported codec" in reasons[2]
    assert all("\n" not in r for r in reasons)


def test_cli_file_folder_and_windows(cli, checkpoint, bikes, tmp_path):
    result = cli("predict", bikes, "--checkpoint", checkpoint, "--size", 64, "--json", "--top-k", 2)
    assert result.code == 0
    (line,) = [json.loads(x) for x in result.out.splitlines()]
    assert line["type"] == "clip" and len(line["top"]) == 2 and line["frames"] == 250

    result = cli(
        "predict",
        bikes,
        "--checkpoint",
        checkpoint,
        "--size",
        64,
        "--json",
        "--window-seconds",
        5,
        "--stride-seconds",
        5,
    )
    lines = [json.loads(x) for x in result.out.splitlines()]
    assert result.code == 0 and [x["type"] for x in lines] == ["window", "window", "summary"]
    assert [(x["start"], x["end"]) for x in lines[:2]] == [(0.0, 5.0), (5.0, 10.0)]
    assert all(x["latency_ms"] > 0 and x["top"][0]["label"] in CLASSES for x in lines[:2])
    summary = lines[-1]
    assert summary["frames"] == 250 and summary["windows"] == 2
    assert summary["dropped_frames"] == 0 and summary["reconnects"] == 0
    assert summary["realtime_factor"] > 0

    shutil.copy(bikes, tmp_path / "good.mp4")
    (tmp_path / "bad.mp4").write_text("not a video")
    result = cli("predict", tmp_path, "--checkpoint", checkpoint, "--size", 64)
    assert result.code == 1
    assert "good.mp4: " in result.out and "1 of 2 videos predicted" in result.out
    assert "bad.mp4" in result.out.splitlines()[-1]
    assert result.err.count("\n") == 1 and "bad.mp4: error: cannot open" in result.err


@pytest.mark.parametrize(
    "content, message",
    [
        ("text", "is a text file, not a PyTorch checkpoint"),
        ("foreign", "not an rsanet checkpoint"),
        ("missing", "no checkpoint file"),
    ],
)
def test_checkpoints_that_are_not_ours(cli, tmp_path, bikes, content, message):
    path = tmp_path / "model.pt"
    if content == "text":
        path.write_text("hello")
    elif content == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match=message):
        load_classifier(path)
    result = cli("predict", bikes, "--checkpoint", path)
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and message in result.err
    assert result.err.startswith("rsanet predict: error: ")


def test_cli_bad_sources(cli, checkpoint, tmp_path, bikes, closed_port, silent_port):
    text = tmp_path / "text.mp4"
    text.write_text("no video here")
    codec = tmp_path / "codec.mp4"
    codec.write_bytes(bikes.read_bytes().replace(b"avc1", b"zzzz"))
    cases = [
        ((text,), "cannot open"),
        ((codec,), "unsupported codec"),
        ((tmp_path / "nothing.mp4",), "no such file, folder, URL or device"),
        ((f"http://127.0.0.1:{closed_port}/cam.ts",), "connection refused"),
        ((f"rtsp://127.0.0.1:{silent_port}/cam", "--timeout", 0.25), "no answer within 0.5 s"),
    ]
    for args, message in cases:
        result = cli("predict", *args, "--checkpoint", checkpoint, "--size", 64)
        assert result.code == 2, (args, result)
        assert result.err.count("\n") == 1 and message in result.err, (args, result.err)


def test_cli_usage_errors(cli, checkpoint, bikes, tmp_path, capsys):
    cases = [
        (("--backend", "onnxruntime"), "needs --onnx"),
        (("--events", tmp_path / "e.jsonl"), "need --rules"),
    ]
    for args, message in cases:
        result = cli("predict", bikes, "--checkpoint", checkpoint, *args)
        assert result.code == 2 and message in result.err, (args, result.err)
    result = cli("predict", tmp_path, "--checkpoint", checkpoint, "--live")
    assert result.code == 2 and "a folder gets clip-level predictions" in result.err
    with pytest.raises(SystemExit):  # values are checked as the arguments are parsed
        cli("predict", bikes, "--checkpoint", checkpoint, "--window-seconds", 0)
    assert "--window-seconds: must be a positive, finite number" in capsys.readouterr().err


def test_warm_up_runs_one_blank_clip(classifier):
    backend = Recording(classifier.model)
    predictor = Predictor(backend, classifier.classes, num_frames=8, size=32)
    assert predictor.warm_up() >= 0
    assert len(backend.clips) == 1 and tuple(backend.clips[0].shape) == (1, 3, 8, 32, 32)
