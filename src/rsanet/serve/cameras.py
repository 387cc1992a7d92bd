"""One camera of ``rsanet serve``: its reader thread (bounded ring, reconnection, from
:mod:`rsanet.inference.stream`), its sliding windows, smoothing and alert rules, and what
the API shows of it (status, frame rate, latest frame and scores, outages).

The inference loop calls :meth:`Camera.poll` for every camera: it drains the ring without
waiting and returns the window that is due, if any. A camera that cannot be reached is
retried with backoff for as long as the server runs (``unreachable``); a stream that is
lost is reconnected by its reader (``outage``); the other cameras carry on meanwhile.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from rsanet.inference.alerts import AlertEngine, AlertRule
from rsanet.inference.predictor import MAX_FPS, Predictor
from rsanet.inference.redact import redact_text
from rsanet.inference.rescorer import RescoredSmoother
from rsanet.inference.results import WindowResult
from rsanet.inference.smoothing import ScoreSmoother
from rsanet.inference.sources import Frame, parse_source
from rsanet.inference.stream import Backoff, FrameRing, Opener, StreamReader, pyav_opener
from rsanet.inference.windows import SlidingWindow, Window
from rsanet.serve.config import CameraConfig

CAMERA_BACKOFF = Backoff(initial=1.0, maximum=30.0)
#: camera states, as the API reports them
STARTING, LIVE, OUTAGE, UNREACHABLE, ENDED = "starting", "live", "outage", "unreachable", "ended"


class Camera:
    """A camera followed by a reader thread; see the module docstring.

    Args:
        config: name, URL, loop.
        predictor: gives the frame size (short side) and the smoothing.
        window, stride: seconds.
        rules: alert rules (None or empty: no alerts, only live scores).
        opener: how to open the source (default: PyAV on the URL).
        backoff: delays between attempts to reach an unreachable camera.
        on_frame: called (in the inference loop) with each frame received.
    """

    def __init__(
        self,
        config: CameraConfig,
        predictor: Predictor,
        *,
        window: float,
        stride: float,
        rules: list[AlertRule] | None = None,
        opener: Opener | None = None,
        backoff: Backoff = CAMERA_BACKOFF,
        timeout: float = 5.0,
        on_frame: Callable[[Camera, Frame], None] | None = None,
    ) -> None:
        self.config, self.name = config, config.name
        self.display_url = config.display_url
        self.window, self.stride = window, stride
        self.predictor = predictor
        if opener is None:
            spec = parse_source(config.url)
            self.live = spec.is_live
            opener = pyav_opener(
                spec, short_side=predictor.short_side, timeout=(2 * timeout, timeout)
            )
        else:
            self.live = True
        self.opener = opener
        self.backoff = backoff
        self.on_frame = on_frame
        history = predictor.history_s  # what a window's clip reads before the window
        self.held = math.ceil((window + history) * MAX_FPS) + 16
        self.engine = SlidingWindow(window, stride, max_frames=self.held, history_s=history)
        self.smoother: ScoreSmoother | RescoredSmoother = predictor.new_smoother()
        self.alerts = AlertEngine(rules, predictor.classes) if rules else None
        self.status = STARTING
        self.error: str | None = None
        self.latest: WindowResult | None = None
        self.latest_frame: Frame | None = None
        self.frames_received = 0
        self.windows = self.skipped = 0
        self.outages: list[dict[str, Any]] = []
        self._arrivals: deque[float] = deque(maxlen=256)
        self._segment = 0
        self._generation = 0
        self._attempts = 0
        self._retry_at: float | None = None
        self._dropped_before = 0
        self._lock = threading.Lock()
        self.ring: FrameRing | None = None
        self.reader: StreamReader | None = None

    # -- the reader ----------------------------------------------------------------------

    def start(self) -> None:
        self.ring = FrameRing(self.window, max_frames=self.held)
        self.reader = StreamReader(self.opener, self.ring, reconnect=self.live)
        self.reader.name = f"rsanet-camera-{self.name}"
        self.reader.start()

    def stop(self, timeout: float = 2.0) -> None:
        reader = self.reader
        if reader is not None:
            reader.stop()
            if reader.is_alive():
                reader.join(timeout)

    def _restart(self) -> None:
        """A fresh reader (times start again at 0): windows and rules start afresh."""
        if self.ring is not None:
            self._dropped_before += self.ring.dropped
        self._generation += 1
        self._segment = 0
        self.engine.reset()
        self.smoother.reset()
        if self.alerts is not None:
            self.alerts.reset()
        self.start()

    def _open_outage(self, reason: str) -> None:
        if self.outages and self.outages[-1]["end"] is None:
            self.outages[-1]["attempts"] = self._attempts
            return
        self.outages.append(
            {"start": time.time(), "end": None, "reason": redact_text(reason), "attempts": 0}
        )
        del self.outages[:-50]  # the last 50 are enough for the API

    def _close_outage(self) -> None:
        if self.outages and self.outages[-1]["end"] is None:
            self.outages[-1]["end"] = time.time()

    def _watch_reader(self) -> None:
        """Follow the reader's outages; restart it when it stopped for good."""
        reader = self.reader
        if reader is None:
            return
        while True:
            try:
                outage = reader.events.get_nowait()
            except queue.Empty:
                break
            if outage.end is None and not outage.gave_up:
                self.status = OUTAGE
                self._attempts = outage.attempts
                self._open_outage(outage.reason)
            elif outage.end is not None:
                self._close_outage()
        if reader.is_alive() or (self.ring is not None and not self.ring.finished):
            return  # still reading, or frames left to take first
        if self._retry_at is not None and time.monotonic() < self._retry_at:
            return
        if self._retry_at is not None:  # the backoff is over
            self._retry_at = None
            self._restart()
            return
        if reader.error is not None:  # unreachable, or a crashed reader: try again later
            self._attempts += 1
            self.error = redact_text(reader.error)
            self.status = UNREACHABLE if self.frames_received == 0 else OUTAGE
            self._open_outage(reader.error)
            self._retry_at = time.monotonic() + self.backoff.delay(self._attempts)
        elif self.config.loop:
            self._restart()
        elif self.status != ENDED:
            self.status = ENDED

    # -- the inference loop's side -------------------------------------------------------

    def poll(self) -> Window | None:
        """Drain the ring (no waiting); the window that is due, if any."""
        self._watch_reader()
        if self.ring is None:
            return None
        due: Window | None = None
        for frame in self.ring.get_all(timeout=0):
            if frame.segment != self._segment:  # reconnected: no window across the gap
                self._segment = frame.segment
                self.engine.reset()
                self.smoother.reset()
                if self.alerts is not None:
                    self.alerts.reset()
            self.engine.add(frame)
            self.frames_received += 1
            self._arrivals.append(frame.arrival)
            self.latest_frame = frame
            if self.status != LIVE:
                self._close_outage()
                self.status, self.error, self._attempts = LIVE, None, 0
            if self.on_frame is not None:
                self.on_frame(self, frame)
            if self.engine.due():  # the latest due window wins (the loop is behind)
                if due is not None:
                    self.skipped += 1
                due = self.engine.take()
        return due

    def result(self, window: Window, raw: np.ndarray, compute_ms: float) -> WindowResult:
        """The smoothed result of ``window`` from its raw class probabilities."""
        smoothed = self.smoother(raw)
        result = WindowResult(
            source=self.name,
            index=window.index,
            start=window.start,
            end=window.end,
            top=self.predictor.top(smoothed),
            scores=smoothed,
            raw_scores=raw,
            latency_ms=max((time.monotonic() - window.frames[-1].arrival) * 1e3, compute_ms),
            compute_ms=compute_ms,
            frames=len(window.frames),
            skipped=window.skipped,
            segment=self._generation * 1_000_000 + window.frames[-1].segment,
        )
        self.latest = result
        self.windows += 1
        self.skipped += window.skipped
        return result

    # -- what the API shows --------------------------------------------------------------

    @property
    def fps(self) -> float:
        arrivals = list(self._arrivals)
        if len(arrivals) < 2 or time.monotonic() - arrivals[-1] > 2.0:
            return 0.0
        return (len(arrivals) - 1) / max(arrivals[-1] - arrivals[0], 1e-6)

    @property
    def dropped(self) -> int:
        return self._dropped_before + (self.ring.dropped if self.ring is not None else 0)

    def describe(self) -> dict[str, Any]:
        """The camera as ``/api/cameras`` shows it (no credentials)."""
        outage = self.outages[-1] if self.outages and self.outages[-1]["end"] is None else None
        top = self.latest.top if self.latest is not None else []
        return {
            "name": self.name,
            "url": self.display_url,
            "status": self.status,
            "fps": round(self.fps, 2),
            "frames": self.frames_received,
            "dropped_frames": self.dropped,
            "windows": self.windows,
            "skipped_windows": self.skipped,
            "top": [{"label": label, "score": round(score, 4)} for label, score in top],
            "outage": dict(outage) if outage else None,
            "outages": len(self.outages),
            "error": self.error,
            "rules": [rule.label for rule in self.alerts.rules] if self.alerts else [],
        }
