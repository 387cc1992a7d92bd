"""What prediction produces: clip predictions and folder summaries, window results, outages
and run summaries, each with ``to_dict()`` giving the JSON line ``rsanet predict --json``
prints and ``describe()`` giving the line it prints without ``--json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Top = list[tuple[str, float]]


def _top_dicts(top: Top) -> list[dict[str, Any]]:
    return [{"label": label, "score": round(float(score), 6)} for label, score in top]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def top_text(top: Top) -> str:
    """``label score | label score ...`` (scores with two decimals), as printed."""
    return " | ".join(f"{label} {score:.2f}" for label, score in top)


@dataclass
class ClipPrediction:
    """One clip-level prediction of a file: the ``top`` (label, score) pairs, all class
    ``scores`` (K,) (softmax), the time it took and the video's frames and duration."""

    source: str
    top: Top
    scores: np.ndarray
    latency_ms: float
    frames: int
    duration: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "clip",
            "source": self.source,
            "top": _top_dicts(self.top),
            "latency_ms": _round(self.latency_ms, 1),
            "frames": self.frames,
            "duration": _round(self.duration),
        }

    def describe(self) -> str:
        return f"{self.source}: {top_text(self.top)} ({self.latency_ms:.0f} ms)"


@dataclass
class FolderSummary:
    """The end of a folder's clip-level predictions: how many videos were predicted and,
    for each one that could not be read, ``{"source": path, "error": reason}``."""

    source: str
    predicted: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)

    def add(self, item: ClipPrediction | tuple[str, str]) -> None:
        """Count one item of :meth:`Predictor.predict_folder` (a prediction or a failure)."""
        if isinstance(item, tuple):
            path, reason = item
            self.failed.append({"source": path, "error": reason})
        else:
            self.predicted += 1

    @property
    def files(self) -> int:
        return self.predicted + len(self.failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "summary",
            "source": self.source,
            "files": self.files,
            "predicted": self.predicted,
            "failed": self.failed,
        }

    def describe(self) -> str:
        """One line for the terminal."""
        text = f"{self.predicted} of {self.files} videos predicted"
        if self.failed:
            text += f"; {len(self.failed)} could not be read: " + ", ".join(
                failure["source"] for failure in self.failed
            )
        return text


@dataclass
class WindowResult:
    """The prediction of one window [start, end) (seconds of stream time).

    top: (label, score) pairs of the smoothed scores; scores: smoothed class scores (K,);
    raw_scores: this window's own scores; latency_ms: from the arrival of the window's last
    frame to the result; compute_ms: preprocessing and model time; frames: frames the window
    held; skipped: scheduled windows skipped before this one (the analysis fell behind);
    segment: connection number of a live source.
    """

    source: str
    index: int
    start: float
    end: float
    top: Top
    scores: np.ndarray
    raw_scores: np.ndarray
    latency_ms: float
    compute_ms: float
    frames: int
    skipped: int = 0
    segment: int = 0

    def score_of(self, class_index: int) -> float:
        return float(self.scores[class_index])

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "window",
            "source": self.source,
            "index": self.index,
            "start": _round(self.start),
            "end": _round(self.end),
            "top": _top_dicts(self.top),
            "latency_ms": _round(self.latency_ms, 1),
            "frames": self.frames,
            "skipped": self.skipped,
        }

    def describe(self) -> str:
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        return (
            f"[{self.start:8.2f} - {self.end:8.2f} s] {top_text(self.top)} "
            f"({self.latency_ms:.0f} ms{skipped})"
        )


@dataclass
class Outage:
    """A live source that stopped delivering: from ``start`` (seconds of run time) until it
    was reopened at ``end`` (None while down, or when the reader gave up)."""

    start: float
    reason: str
    end: float | None = None
    attempts: int = 0
    gave_up: bool = False

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start

    @property
    def state(self) -> str:
        return "gave_up" if self.gave_up else ("lost" if self.end is None else "restored")

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "outage",
            "state": self.state,
            "start": _round(self.start),
            "end": _round(self.end),
            "duration": _round(self.duration),
            "attempts": self.attempts,
            "reason": self.reason,
        }

    def describe(self) -> str:
        """One line for the terminal."""
        if self.gave_up:
            return (
                f"stream lost at {self.start:.1f} s ({self.reason}); gave up after "
                f"{self.attempts} reconnection attempt(s)"
            )
        if self.end is None:
            return f"stream lost at {self.start:.1f} s ({self.reason}); reconnecting"
        return (
            f"stream restored after {self.duration:.1f} s outage ({self.reason}; "
            f"{self.attempts} attempt(s))"
        )


@dataclass
class RunSummary:
    """The end of a windowed run.

    frames: frames decoded from the source; dropped_frames: frames dropped because the
    analysis was behind; realtime_factor: analysis speed relative to the stream,
    ``stride * windows / compute time`` (below 1 the analysis cannot keep up and frames are
    dropped); reconnects: reopenings after outages; interrupted: stopped by SIGINT or
    SIGTERM (``signal`` names it); error: why the run ended early or lost output (None when
    it did not); alerts: events fired (None without rules); delivery: what became of them
    (``events`` log and ``webhook`` counts, see :mod:`rsanet.inference.sinks`).
    """

    source: str
    frames: int = 0
    windows: int = 0
    dropped_frames: int = 0
    realtime_factor: float | None = None
    reconnects: int = 0
    skipped_windows: int = 0
    elapsed_s: float = 0.0
    compute_s: float = 0.0
    mean_latency_ms: float | None = None
    outages: list[Outage] = field(default_factory=list)
    interrupted: bool = False
    error: str | None = None
    signal: str | None = None
    alerts: int | None = None
    delivery: dict[str, Any] | None = None

    @property
    def lost_alerts(self) -> int:
        """Alert deliveries that did not arrive (event log writes and webhook POSTs)."""
        return sum(int(part.get("lost", 0)) for part in (self.delivery or {}).values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "summary",
            "source": self.source,
            "frames": self.frames,
            "windows": self.windows,
            "dropped_frames": self.dropped_frames,
            "realtime_factor": _round(self.realtime_factor),
            "reconnects": self.reconnects,
            "skipped_windows": self.skipped_windows,
            "elapsed_s": _round(self.elapsed_s),
            "mean_latency_ms": _round(self.mean_latency_ms, 1),
            "outages": [outage.to_dict() for outage in self.outages],
            "interrupted": self.interrupted,
            "signal": self.signal,
            "error": self.error,
            "alerts": self.alerts,
            "delivery": self.delivery,
        }

    def describe(self) -> str:
        """One line for the terminal."""
        rtf = "n/a" if self.realtime_factor is None else f"{self.realtime_factor:.2f}x"
        text = (
            f"{self.source}: {self.frames} frames, {self.windows} windows, "
            f"{self.dropped_frames} dropped, real-time factor {rtf}, "
            f"{self.reconnects} reconnect(s)"
        )
        if self.alerts is not None:
            text += f", {self.alerts} alert(s)"
        if self.lost_alerts:
            lost = self.lost_alerts
            text += f", {lost} alert deliver{'y' if lost == 1 else 'ies'} LOST"
        if self.interrupted:
            text += f", interrupted ({self.signal})" if self.signal else ", interrupted"
        if self.error:
            text += f", error: {self.error}"
        return text


@dataclass
class RunStats:
    """Running totals of a windowed run (constant memory, however long the run)."""

    windows: int = 0
    compute_ms: float = 0.0
    latency_ms: float = 0.0
    skipped: int = 0

    def add(self, result: WindowResult) -> None:
        self.windows += 1
        self.compute_ms += result.compute_ms
        self.latency_ms += result.latency_ms
        self.skipped += result.skipped

    def summary(
        self, source: str, *, stride: float, frames: int, elapsed_s: float, **fields: Any
    ) -> RunSummary:
        """The RunSummary; realtime factor ``stride * windows / compute time``."""
        compute_s = self.compute_ms / 1e3
        return RunSummary(
            source=source,
            frames=frames,
            windows=self.windows,
            realtime_factor=stride * self.windows / compute_s if compute_s > 0 else None,
            skipped_windows=self.skipped,
            elapsed_s=elapsed_s,
            compute_s=compute_s,
            mean_latency_ms=self.latency_ms / self.windows if self.windows else None,
            **fields,
        )
