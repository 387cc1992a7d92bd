"""Tiny untrimmed recordings for the window tests: a grey 32 x 32 scene in which a bright
square moves only during the events, encoded with PyAV, and their intervals CSV."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from support.inference import encode

#: the pixel value of the moving square (the background is 90)
BRIGHT = 240


def recording(
    path: Path,
    events: Sequence[tuple[float, float]] = (),
    *,
    seconds: float = 6.0,
    fps: int = 10,
    size: int = 32,
) -> Path:
    """A ``seconds`` long video at ``fps`` where a bright square moves during ``events``
    (start, end seconds) and the frame is plain grey otherwise."""
    count = round(seconds * fps)
    frames = np.full((count, size, size, 3), 90, np.uint8)
    for i in range(count):
        t = i / fps
        if any(start <= t < end for start, end in events):
            x = (i * 2) % (size - 8)
            frames[i, 12:20, x : x + 8] = BRIGHT
    path.parent.mkdir(parents=True, exist_ok=True)
    return encode(path, frames, fps=fps)


def intervals_csv(path: Path, rows: Sequence[tuple]) -> Path:
    """An intervals file: rows ``(video, label, start_s, end_s[, duration_s])``; ``None``
    fields are left empty."""
    lines = ["video,label,start_s,end_s,duration_s"]
    for row in rows:
        fields = [*row, *([None] * (5 - len(row)))]
        lines.append(",".join("" if f is None else str(f) for f in fields))
    path.write_text("\n".join(lines) + "\n")
    return path
