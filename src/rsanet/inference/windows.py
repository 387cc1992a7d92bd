"""Sliding windows over timestamped frames, sampled TSN-style inside each window.

A window covers ``window`` seconds of stream time and a new one is due every ``stride``
seconds. Inside a window the clip is sampled as TSN evaluates: the window is cut into
``num_frames`` equal segments and the frame showing the centre of each segment is taken. With
frames at a constant rate this picks exactly the frames
:class:`rsanet.data.TSNSampler` (``train=False``) picks from the window's frames; when frames
are missing (dropped) it takes the frame shown at each centre time.

A model that also reads the scene's recent past (``context_frames`` K) gets, before those,
K frames picked the same way over the ``context_s`` seconds before the window, from the
frames the sliding window kept for it (``history_s``): as
:func:`rsanet.data.context_times` picks them in training, the first frame standing in for
any time before the stream began.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from rsanet.inference.sources import Frame

#: tolerance on timestamps (seconds): a frame starting within it of a boundary is on it
EPS = 1e-6


def tsn_centres(start: float, end: float, num_frames: int) -> list[float]:
    """Centre times of ``num_frames`` equal segments of [start, end)."""
    span = (end - start) / num_frames
    return [start + (i + 0.5) * span for i in range(num_frames)]


def tsn_pick(times: Sequence[float], start: float, end: float, num_frames: int) -> list[int]:
    """Indices into the sorted frame ``times`` of the TSN evaluation clip of [start, end):
    for each segment centre, the last frame starting at or before it (the first frame when
    none does)."""
    picks = []
    for centre in tsn_centres(start, end, num_frames):
        picks.append(max(0, bisect.bisect_right(times, centre + EPS) - 1))
    return picks


@dataclass
class Window:
    """A window ready for the model: its frames (time order), [start, end) in seconds, its
    number, and how many scheduled windows were skipped before it because the analysis fell
    behind."""

    frames: list[Frame]
    start: float
    end: float
    index: int
    skipped: int = 0
    #: frames kept from before ``start`` (time order), for a clip with context frames
    past: list[Frame] = field(default_factory=list)

    def sample(
        self, num_frames: int, context_frames: int = 0, context_s: float = 0.0
    ) -> list[Frame]:
        """The TSN evaluation clip of this window: ``num_frames`` frames, the first
        ``context_frames`` of them over the ``context_s`` seconds before ``start`` (from
        :attr:`past`, its first frame for any earlier time), the rest over the window."""
        own = num_frames - context_frames
        times = [frame.time for frame in self.frames]
        clip = [self.frames[i] for i in tsn_pick(times, self.start, self.end, own)]
        if not context_frames:
            return clip
        held = [*self.past, *self.frames]
        times = [frame.time for frame in held]
        picks = tsn_pick(times, self.start - context_s, self.start, context_frames)
        return [held[i] for i in picks] + clip


class SlidingWindow:
    """Frames in, windows out: a window of ``window`` seconds every ``stride`` seconds.

    Call :meth:`add` for each frame, then :meth:`due` and :meth:`take`. When frames arrive
    in bursts (after the analysis fell behind), :meth:`take` returns the latest window and
    counts the scheduled ones it skipped. At most ``max_frames`` frames are held (the frames
    of the last ``window`` seconds, and of the ``history_s`` seconds before them: a window's
    :attr:`Window.past`).
    """

    def __init__(
        self, window: float, stride: float, *, max_frames: int = 1024, history_s: float = 0.0
    ) -> None:
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        if not (stride > 0 and math.isfinite(stride)):
            raise ValueError(f"stride must be a positive number of seconds, got {stride!r}")
        if not (history_s >= 0 and math.isfinite(history_s)):
            raise ValueError(f"history_s must be >= 0 seconds, got {history_s!r}")
        self.window, self.stride = float(window), float(stride)
        self.history_s = float(history_s)
        self.max_frames = max(1, int(max_frames))
        self.emitted = 0
        self.reset()

    def reset(self) -> None:
        """Forget every frame and restart the schedule (after a reconnection)."""
        self._frames: deque[Frame] = deque(maxlen=self.max_frames)
        self._next_end: float | None = None
        self._last_end: float | None = None
        self._duration = 0.0

    def __len__(self) -> int:
        return len(self._frames)

    def _frame_end(self, frame: Frame) -> float:
        return frame.time + (frame.duration or self._duration)

    def add(self, frame: Frame) -> None:
        """Append ``frame`` (times must not decrease; an earlier one is ignored)."""
        if self._frames:
            previous = self._frames[-1]
            if frame.time < previous.time - EPS:
                return
            if not frame.duration and frame.time > previous.time:
                self._duration = frame.time - previous.time  # estimate from the spacing
        if self._next_end is None:
            self._next_end = frame.time + self.window
        self._frames.append(frame)
        horizon = self._frame_end(frame) - self.window - self.history_s
        while len(self._frames) > 1 and self._frames[1].time <= horizon + EPS:
            self._frames.popleft()

    @property
    def latest_end(self) -> float | None:
        return self._frame_end(self._frames[-1]) if self._frames else None

    def due(self) -> bool:
        """Whether a window ends at or before the latest frame's end."""
        end = self.latest_end
        return end is not None and end >= self._next_end - EPS

    def _make(self, end: float, skipped: int) -> Window:
        start = max(end - self.window, self._frames[0].time)
        frames = [f for f in self._frames if start - EPS <= f.time < end - EPS] or [
            self._frames[-1]
        ]
        start = max(start, frames[0].time)
        past = [f for f in self._frames if f.time < start - EPS] if self.history_s else []
        window = Window(frames, start, end, self.emitted, skipped, past)
        self.emitted += 1
        self._last_end = end
        return window

    def take(self) -> Window:
        """The window ending at the latest frame; the schedule moves on by strides past it."""
        if not self.due():
            raise RuntimeError("no window is due: call due() first")
        end = self.latest_end
        skipped = 0
        self._next_end += self.stride
        while self._next_end <= end + EPS:
            self._next_end += self.stride
            skipped += 1
        return self._make(end, skipped)

    def flush(self) -> Window | None:
        """At the end of a stream: a last window over the frames after the last window, when
        they span at least half a stride (or when no window was made: a short video)."""
        end = self.latest_end
        if end is None:
            return None
        if self._last_end is not None and end - self._last_end < self.stride / 2 - EPS:
            return None
        return self._make(end, 0)
