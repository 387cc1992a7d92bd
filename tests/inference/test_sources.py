"""SOURCE classification and PyAV decoding, with the one-line errors of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsanet.inference import SourceError, SourceSpec, decode_frames, list_videos, parse_source
from rsanet.inference.sources import open_container, scaled_size


def test_parse_source_kinds(tmp_path, bikes):
    assert parse_source(str(bikes)) == SourceSpec("file", str(bikes))
    assert parse_source(str(tmp_path)) == SourceSpec("folder", str(tmp_path))
    assert parse_source("rtsp://127.0.0.1:8554/cam").kind == "url"
    assert parse_source("http://127.0.0.1/cam.ts").kind == "url"
    assert parse_source("/dev/video2") == SourceSpec("device", "/dev/video2", "v4l2")
    assert parse_source("0") == SourceSpec("device", "/dev/video0", "v4l2")
    assert parse_source("avfoundation:0") == SourceSpec("device", "0", "avfoundation")
    assert parse_source("rtsp://x/cam").is_live and not parse_source(str(bikes)).is_live
    secret = parse_source("rtsp://viewer:s3cret@10.0.0.9:554/stream1")
    assert secret.target == "rtsp://viewer:s3cret@10.0.0.9:554/stream1"
    assert str(secret) == "rtsp://viewer:***@10.0.0.9:554/stream1"
    with pytest.raises(SourceError, match="no such file, folder, URL or device"):
        parse_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="unsupported URL scheme 'gopher'"):
        parse_source("gopher://127.0.0.1/cam")


def test_list_videos_keeps_video_files_sorted(tmp_path):
    for name in ("b.mp4", "a.MKV", "c.ts", "notes.txt", "d.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.mp4").mkdir()
    assert [p.split("/")[-1] for p in list_videos(tmp_path)] == ["a.MKV", "b.mp4", "c.ts"]


def test_scaled_size_matches_resize_short_side():
    from rsanet.data import ResizeShortSide

    for width, height in ((640, 272), (1280, 720), (272, 640), (64, 48)):
        w, h = scaled_size(width, height, 73)
        resized = ResizeShortSide(73)(torch.zeros(1, 3, height, width))
        assert (h, w) == tuple(resized.shape[-2:])


def test_decode_frames_of_a_real_clip(bikes):
    frames = list(decode_frames(parse_source(str(bikes)), short_side=64, keep_display=True))
    assert len(frames) == 250
    assert frames[0].time == 0.0 and frames[-1].time == pytest.approx(249 / 25)
    assert np.allclose(np.diff([f.time for f in frames]), 0.04)
    assert all(f.duration == pytest.approx(0.04) for f in frames)
    assert frames[0].image.shape == (64, 151, 3) and frames[0].image.dtype == np.uint8
    assert frames[0].display.shape == (272, 640, 3)
    assert [f.index for f in frames] == list(range(250))


def test_paced_decoding_waits_for_each_timestamp(small_clip):
    now = [0.0]
    waits = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    frames = list(
        decode_frames(
            parse_source(str(small_clip)),
            short_side=32,
            pace=True,
            clock=lambda: now[0],
            sleep=sleep,
        )
    )
    assert len(frames) == 50
    assert now[0] == pytest.approx(49 / 25)  # the replay took the clip's duration
    assert len(waits) == 49


def test_bad_files_give_one_line_reasons(tmp_path, bikes):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n" * 50)
    codec = tmp_path / "codec.mp4"
    codec.write_bytes(bikes.read_bytes().replace(b"avc1", b"zzzz"))
    cases = {empty: "empty file", text: "cannot open", codec: "unsupported codec"}
    for path, reason in cases.items():
        with pytest.raises(SourceError, match=reason) as error:
            list(decode_frames(parse_source(str(path)), short_side=32))
        assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_network_sources_that_do_not_answer(closed_port, silent_port):
    with pytest.raises(SourceError, match="connection refused"):
        open_container(parse_source(f"http://127.0.0.1:{closed_port}/cam.ts"))
    with pytest.raises(SourceError, match=r"no answer within 0.5 s \(timed out\)"):
        open_container(parse_source(f"http://127.0.0.1:{silent_port}/cam.ts"), timeout=(0.5, 0.5))
