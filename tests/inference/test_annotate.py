"""Annotated videos: label and score drawn, timestamps kept, written with PyAV."""

from __future__ import annotations

import av
import numpy as np
import pytest

from rsanet.inference import Annotator


def read(path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [f.to_ndarray(format="rgb24") for f in frames], [f.time for f in frames]


def test_frames_are_drawn_and_timestamps_kept(tmp_path):
    grey = np.full((61, 81, 3), 128, np.uint8)  # odd sides: cropped to even for yuv420p
    out = tmp_path / "out" / "annotated.mp4"
    annotator = Annotator(out)
    times = [0.0, 0.04, 0.08, 0.5, 0.54, 2.0]  # gaps: frames dropped from a stream
    for i, t in enumerate(times):
        annotator.write(
            grey,
            t,
            "fighting" if i else None,
            0.75 if i else None,
            alert="fighting" if i == 5 else None,
        )
    annotator.write(grey, 0.5, "late", 0.1)  # not after the last frame: skipped
    annotator.close()
    frames, stamps = read(out)
    assert annotator.frames == 6 and len(frames) == 6
    assert stamps == pytest.approx(times, abs=1e-3)
    assert frames[0].shape == (60, 80, 3)
    banner = frames[1][:4].astype(int)  # the dark banner at the top
    assert banner.mean() < 100
    assert frames[1][20:40].astype(int).mean() == pytest.approx(128, abs=6)  # picture kept
    green = frames[1][14:16, :50].astype(int).mean(axis=(0, 1))  # the score bar (0.75)
    assert green[1] > green[0] + 60
    red = frames[5][30, :2].astype(int).mean(axis=0)  # the alert frame has a red border
    assert red[0] > red[1] + 80
    assert np.abs(frames[2].astype(int) - frames[1].astype(int)).mean() < 2  # same label


def test_large_frames_are_scaled_down(tmp_path):
    annotator = Annotator(tmp_path / "big.mp4", max_width=320)
    annotator.write(np.zeros((720, 1280, 3), np.uint8), 0.0, "walking", 0.5)
    annotator.close()
    frames, _ = read(tmp_path / "big.mp4")
    assert frames[0].shape == (180, 320, 3)
    Annotator(tmp_path / "none.mp4").close()  # nothing written: no file, no error
    assert not (tmp_path / "none.mp4").exists()


def test_cli_annotate_a_real_clip(cli, checkpoint, bikes, tmp_path):
    out = tmp_path / "bikes_annotated.mp4"
    result = cli(
        "predict",
        bikes,
        "--checkpoint",
        checkpoint,
        "--size",
        32,
        "--window-seconds",
        4,
        "--stride-seconds",
        2,
        "--annotate",
        out,
    )
    assert result.code == 0, result.err
    frames, stamps = read(out)
    assert len(frames) == 250 and frames[0].shape == (272, 640, 3)
    assert stamps[-1] == pytest.approx(249 / 25, abs=1e-3)
    # before the first window ends (4 s) the banner shows "...", afterwards a label: the
    # banners differ while the pictures below them stay the source's
    assert np.abs(frames[150][:20].astype(int) - frames[10][:20].astype(int)).mean() > 1
