"""Fixture files for the data tests, written by the tests themselves: tiny videos encoded
with PyAV whose frames carry their own index (a 3 x 3 grid of black/white blocks, 9 bits),
frame folders, and the annotation files of each benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image

BLOCK = 16  # pixels per code block; frames are 48 x 48 (or wider, code in the top-left)


def coded_frames(count: int, height: int = 48, width: int = 48, start: int = 0) -> np.ndarray:
    """Frames (count, H, W, 3) uint8 whose top-left 48 x 48 shows the frame index in binary."""
    frames = np.full((count, height, width, 3), 96, np.uint8)
    for i in range(count):
        for bit in range(9):
            row, col = divmod(bit, 3)
            value = 255 if (start + i) >> bit & 1 else 0
            frames[i, row * BLOCK : (row + 1) * BLOCK, col * BLOCK : (col + 1) * BLOCK] = value
    return frames


def frame_index(frame: np.ndarray) -> int:
    """The index a frame of :func:`coded_frames` shows (robust to lossy coding)."""
    index = 0
    for bit in range(9):
        row, col = divmod(bit, 3)
        block = frame[
            row * BLOCK + 3 : (row + 1) * BLOCK - 3, col * BLOCK + 3 : (col + 1) * BLOCK - 3
        ]
        index |= int(block.mean() > 127) << bit
    return index


def encode(
    path: Path,
    frames: np.ndarray,
    *,
    codec: str = "libx264",
    gop: int = 10,
    fps: int = 25,
    faststart: bool = False,
) -> Path:
    """Encode frames (T, H, W, 3) uint8 with PyAV; ``faststart`` puts the mp4 index first."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {
                "crf": "12",
                "preset": "ultrafast",
                "bf": "2",
                "keyint": str(gop),
                "min-keyint": str(gop),
                "scenecut": "0",
            }
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return Path(path)


def write_frames(folder: Path, frames: np.ndarray, template: str = "{:05d}.jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / template.format(number), quality=95)
    return folder


@pytest.fixture(scope="session")
def media() -> SimpleNamespace:
    """The helpers of this file, for the tests (no import of conftest needed)."""
    return SimpleNamespace(
        coded_frames=coded_frames,
        frame_index=frame_index,
        encode=encode,
        write_frames=write_frames,
        V1_CLASSES=V1_CLASSES,
        V2_LABELS=V2_LABELS,
    )


@pytest.fixture(scope="session")
def coded_video(tmp_path_factory) -> Path:
    """A 120-frame 48 x 48 H.264 mp4 with B-frames and a keyframe every 10 frames."""
    return encode(tmp_path_factory.mktemp("video") / "coded.mp4", coded_frames(120))


@pytest.fixture(scope="session")
def long_video(tmp_path_factory) -> Path:
    """A 300-frame coded mp4 (keyframe every 10 frames)."""
    return encode(tmp_path_factory.mktemp("long") / "long.mp4", coded_frames(300))


# -- Something-Something-like fixtures -------------------------------------------------------

V1_CLASSES = [  # deliberately not sorted: the V1 ids are the sorted order
    "Turning the camera right while filming something",
    "Pushing something from left to right",
    "Holding something",
    "Pushing something from right to left",
    "Turning the camera left while filming something",
]
V2_LABELS = {
    "Holding something": "0",
    "Pushing something from right to left": "1",
    "Turning the camera left while filming something": "2",
    "Pushing something from left to right": "3",
    "Turning the camera right while filming something": "4",
}


@pytest.fixture
def something_v1(tmp_path) -> Path:
    """``something-something-v1-*.csv`` and frame folders ``frames/<id>/00001.jpg``."""
    (tmp_path / "something-something-v1-labels.csv").write_text("\n".join(V1_CLASSES) + "\n")
    (tmp_path / "something-something-v1-train.csv").write_text(
        "101;Holding something\n102;Pushing something from left to right\n"
        "this line has no separator\n103;Juggling something\n"
    )
    (tmp_path / "something-something-v1-validation.csv").write_text(
        "201;Turning the camera left while filming something\n"
    )
    for video_id, count in (("101", 20), ("102", 12), ("201", 16)):
        write_frames(tmp_path / "frames" / video_id, coded_frames(count))
    return tmp_path


@pytest.fixture
def something_v2(tmp_path) -> Path:
    """``something-something-v2-*.json`` and webm videos ``videos/<id>.webm``."""
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(V2_LABELS))
    train = [
        {
            "id": "11",
            "label": "holding a cup",
            "template": "Holding [something]",
            "placeholders": ["a cup"],
        },
        {
            "id": "12",
            "label": "pushing pen from right to left",
            "template": "Pushing [something] from right to left",
            "placeholders": ["pen"],
        },
        {"id": "13", "label": "no template"},
        {"id": "14", "template": "Dancing with [something]"},
        "not an object",
    ]
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps(train, indent=1))
    (tmp_path / "something-something-v2-validation.json").write_text(
        json.dumps([{"id": "21", "template": "Turning the camera left while filming [something]"}])
    )
    videos = tmp_path / "videos"
    videos.mkdir()
    for video_id, count in (("11", 24), ("12", 30), ("21", 16)):
        encode(videos / f"{video_id}.webm", coded_frames(count), codec="libvpx")
    return tmp_path
