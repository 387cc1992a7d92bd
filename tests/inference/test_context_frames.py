"""Clips that also show the scene's recent past (``data.untrimmed.context_frames``): the
background-difference stem of ``ResNetTSN``, the same frames read in training and picked
from a stream, and the whole path from ``rsanet train`` through ``rsanet predict``,
``eval-events`` and an ONNX export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rsanet.cli import main
from rsanet.data import UntrimmedWindows, open_video, read_untrimmed
from rsanet.data.synthcctv import write_synthcctv
from rsanet.inference import Predictor
from rsanet.inference.sources import SourceSpec, decode_frames
from rsanet.inference.windows import SlidingWindow, Window
from rsanet.models import create_model
from support.synthcctv import tiny_overrides

CONFIG = "configs/synthcctv_tsm.yaml"


def test_the_stem_starts_as_the_plain_network_and_then_reads_the_change() -> None:
    """At zero, ``background_conv`` leaves the plain network on the window's frames,
    whatever the context; with weights, another background changes the output. The
    background is the per-pixel median of the context frames."""
    torch.manual_seed(0)
    plain = create_model("tsm_tiny", num_classes=3, num_frames=6).eval()
    model = create_model("tsm_tiny", num_classes=3, num_frames=9, context_frames=3).eval()
    loaded = model.load_state_dict(plain.state_dict(), strict=False)
    assert loaded.missing_keys == ["background_conv.weight"] and not loaded.unexpected_keys
    assert model.rsanet_config["context_frames"] == 3 and model.context_s == 8.0
    clip = torch.randn(2, 3, 9, 32, 32)
    scene, other = clip[:, :, :1], torch.randn(2, 3, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(clip), plain(clip[:, :, 3:]))
        moved = torch.cat([other, other, other, clip[:, :, 3:]], dim=2)
        assert torch.equal(model(moved), plain(clip[:, :, 3:]))
        torch.nn.init.normal_(model.background_conv.weight, std=0.1)
        still = torch.cat([scene, scene, scene, clip[:, :, 3:]], dim=2)
        one_off = torch.cat([scene, other, scene, clip[:, :, 3:]], dim=2)  # median: scene
        two_off = torch.cat([other, other, scene, clip[:, :, 3:]], dim=2)  # median: other
        assert torch.allclose(model(one_off), model(still))
        assert not torch.allclose(model(two_off), model(still), atol=1e-4)
        with pytest.raises(ValueError, match="window frames after them"):
            model(clip[:, :, :3])
    with pytest.raises(ValueError, match=r"context_frames must be in \[0, num_frames\)"):
        create_model("tsm_tiny", num_classes=3, num_frames=4, context_frames=4)


def test_training_and_a_stream_read_the_same_context_frames(tmp_path: Path) -> None:
    """A window's clip (2 frames of the 4 s before it, then its own 4) is the same frames
    whether the training set reads them by time or a stream picks them from the frames it
    kept; before the recording's start the first frame stands in. The stream keeps the
    window and its history, no more."""
    data = tmp_path / "data"
    write_synthcctv(
        data, 1, classes=["dumping"], normal_fraction=0.0, seed=3,
        seconds=10.0, fps=10, size=(64, 48), cameras=(1, 1),
    )  # fmt: skip
    recordings = read_untrimmed("aihub-cctv", data)
    options = {"num_frames": 6, "window_s": 2.0, "train": False, "stride_s": 0.5}
    dataset = UntrimmedWindows(recordings, context_frames=2, context_s=4.0, **options)
    path = dataset.videos[0].path
    stream = SlidingWindow(2.0, 0.5, max_frames=200, history_s=4.0)
    windows: list[Window] = []
    held = []
    for frame in decode_frames(SourceSpec("file", path), short_side=None):
        stream.add(frame)
        held.append(len(stream))
        while stream.due():
            windows.append(stream.take())
    assert len(windows) > 12 and max(held) <= 6 * 10 + 2  # 6 s at 10 frames per second
    source = open_video(path, backend="pyav")
    try:
        for window in windows:
            picked = np.stack([frame.image for frame in window.sample(6, 2, 4.0)])
            times = dataset.frame_times(SimpleNamespace(start_s=window.start))
            np.testing.assert_array_equal(picked, source.read_seconds(times))
    finally:
        source.close()
    assert windows[0].past == [] and len(windows[-1].past) == 40  # the 4 s before it
    early = dataset.frame_times(SimpleNamespace(start_s=1.0))
    assert early[0] == 0.0 and early[1] == 0.0  # at -2 and 0 s: the first frame
    plain = UntrimmedWindows(recordings, **{**options, "num_frames": 4})  # the window's 4
    assert np.allclose(plain.frame_times(SimpleNamespace(start_s=5.0)), early[2:] + 4.0)


def windows_printed(capsys) -> int:
    """Window results among the JSON lines ``rsanet predict --json`` printed."""
    lines = capsys.readouterr().out.splitlines()
    return sum(json.loads(line).get("type") == "window" for line in lines)


def test_train_predict_eval_and_export_a_network_with_context(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """``rsanet train`` builds the network with the data's context frames and records
    them; ``rsanet predict`` (windows of a file, and the file replayed live) and
    ``eval-events`` feed every window's context, a whole file is refused, and an ONNX export
    carries them to its predictor."""
    data = tmp_path / "data"
    write_synthcctv(
        data, 4, classes=["dumping"], normal_fraction=0.25, seed=1,
        seconds=6.0, fps=10, size=(64, 48), cameras=(1, 1),
    )  # fmt: skip
    run = tmp_path / "run"
    context = ["data.num_frames=6", "data.untrimmed.context_frames=2", "data.untrimmed.context_s=3"]
    tiny = [*tiny_overrides(data), *context]
    assert main(["train", CONFIG, "--output", str(run), "--set", *tiny]) == 0
    checkpoint = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert checkpoint["model_config"]["context_frames"] == 2
    assert checkpoint["model_config"]["context_s"] == 3.0
    assert "background_conv.weight" in checkpoint["state_dict"]
    capsys.readouterr()  # the training's lines

    sampled: list[tuple] = []  # each window's sampling and how many earlier frames it held
    original = Window.sample
    monkeypatch.setattr(
        Window, "sample", lambda w, *a: sampled.append((*a, len(w.past))) or original(w, *a)
    )

    def read_with_context() -> bool:  # every clip with its context, 3 s of it held at last
        return {c[:3] for c in sampled} == {(6, 2, 3.0)} and max(c[3] for c in sampled) >= 29

    video = str(sorted(data.rglob("*.mp4"))[0])
    common = ["predict", video, "--checkpoint", str(run / "last.pt"), "--json"]
    assert main([*common, "--window-seconds", "1", "--stride-seconds", "0.5"]) == 0
    assert windows_printed(capsys) > 8 and read_with_context()
    sampled.clear()  # the file replayed as a live stream (6 s in real time)
    assert main([*common, "--live", "--window-seconds", "1", "--stride-seconds", "1"]) == 0
    assert windows_printed(capsys) > 3 and read_with_context()
    assert main(common) == 2
    assert "reads 2 frames of the 3 s before each window" in capsys.readouterr().err

    out = tmp_path / "events"
    command = ["eval-events", str(run / "last.pt"), "--format", "aihub-cctv", "--annotations"]
    sampled.clear()
    assert (
        main([*command, str(data), "--window-seconds", "1", "--no-figures", "--out", str(out)]) == 0
    )
    assert read_with_context()

    onnx = tmp_path / "model.onnx"
    assert main(["export", str(run / "last.pt"), "--format", "onnx", "--out", str(onnx)]) == 0
    predictor = Predictor.from_onnx(onnx)
    assert (predictor.num_frames, predictor.context_frames, predictor.context_s) == (6, 2, 3.0)


def test_context_settings_that_cannot_work_are_refused(tmp_path: Path, capsys) -> None:
    """No window frames left, a network that cannot read context, model options that
    disagree with the data: each refused before training, naming the setting."""
    data = tmp_path / "data"
    write_synthcctv(
        data, 4, classes=["fight"], normal_fraction=0.5, seed=2,
        seconds=4.0, fps=10, size=(64, 48), cameras=(1, 1),
    )  # fmt: skip
    tiny = tiny_overrides(data)
    cases = {
        "data.untrimmed.context_frames must be in": ["data.untrimmed.context_frames=4"],
        "vivit_tiny cannot read context frames": [
            "data.untrimmed.context_frames=2", "model.name=vivit_tiny", "data.num_frames=6"
        ],
        "model.options.context_frames .3. differs": [
            "data.untrimmed.context_frames=2", "data.num_frames=6",
            "model.options={context_frames: 3}",
        ],
        "model.options.context_frames needs clips that hold context frames": [
            "data.num_frames=6", "model.options={context_frames: 2}",
        ],
    }  # fmt: skip
    for message, settings in cases.items():
        command = ["train", CONFIG, "--output", str(tmp_path / "run"), "--set", *tiny, *settings]
        assert main(command) == 2
        assert re.search(message, capsys.readouterr().err), message
