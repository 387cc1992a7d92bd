"""Following a live source: a reader thread, a bounded ring buffer, reconnection.

::

    source --(reader thread: decode, reconnect)--> FrameRing --(analysis: windows, model)-->

* The reader thread decodes frames and puts them in a :class:`FrameRing`, which holds at most
  ``buffer_seconds`` of stream (and ``max_frames`` frames): when the analysis is slower than
  real time the oldest frames are dropped and counted, never queued without bound.
* A source that fails or stalls (PyAV's read timeout) is reopened with exponential backoff;
  each outage is recorded (start, end, reason, attempts) and reported. A source that fails
  before delivering its first frame is an error at once (a wrong URL, a missing camera).
* The analysis (:class:`LiveAnalysis`, in the calling thread) drains the ring, keeps the
  frames of the current window, and runs the model on the latest window whenever one is due;
  windows it had no time for are skipped and counted. Windows never straddle an outage.

Openers are injectable: any ``opener() -> Iterator[Frame]`` (tests use sources that fail
after N frames); :func:`pyav_opener` makes the one for URLs, devices and ``--live`` files.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from rsanet.inference.predictor import MAX_FPS, Predictor
from rsanet.inference.redact import redact_text
from rsanet.inference.results import Outage, RunStats, RunSummary, WindowResult
from rsanet.inference.sources import DEFAULT_TIMEOUT, Frame, SourceError, SourceSpec, decode_frames
from rsanet.inference.windows import EPS, SlidingWindow

Opener = Callable[[], Iterator[Frame]]


class FrameRing:
    """Bounded FIFO between a producer thread and a consumer.

    Holds the frames of at most ``seconds`` of stream time and at most ``max_frames``
    frames; :meth:`put` drops the oldest frames beyond that. ``received``, ``dropped`` and
    ``high_water`` (most frames ever held) count what happened.
    """

    def __init__(self, seconds: float, max_frames: int = 1024) -> None:
        if not seconds > 0:
            raise ValueError(f"buffer seconds must be positive, got {seconds!r}")
        if max_frames < 1:
            raise ValueError(f"max_frames must be positive, got {max_frames!r}")
        self.seconds, self.max_frames = float(seconds), int(max_frames)
        self._frames: deque[Frame] = deque()
        self._lock = threading.Condition()
        self.closed = False
        self.received = self.dropped = self.high_water = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def put(self, frame: Frame) -> int:
        """Add ``frame``; returns how many old frames were dropped to make room."""
        with self._lock:
            self._frames.append(frame)
            self.received += 1
            dropped = 0
            while len(self._frames) > self.max_frames or (
                len(self._frames) > 1 and frame.time - self._frames[0].time >= self.seconds - EPS
            ):
                self._frames.popleft()
                dropped += 1
            self.dropped += dropped
            self.high_water = max(self.high_water, len(self._frames))
            self._lock.notify_all()
            return dropped

    def get_all(self, timeout: float | None = None) -> list[Frame]:
        """Every frame held (oldest first), waiting up to ``timeout`` seconds for one; an
        empty list when none came or the ring is closed and empty."""
        with self._lock:
            if not self._frames and not self.closed:
                self._lock.wait(timeout)
            frames = list(self._frames)
            self._frames.clear()
            return frames

    def close(self) -> None:
        """No more frames will come (wakes a waiting :meth:`get_all`)."""
        with self._lock:
            self.closed = True
            self._lock.notify_all()

    @property
    def finished(self) -> bool:
        """Closed and empty."""
        with self._lock:
            return self.closed and not self._frames


@dataclass(frozen=True)
class Backoff:
    """Delay before reconnection attempt n (1, 2, ...): ``initial * factor**(n-1)``, at most
    ``maximum`` seconds (``maximum`` is raised to ``initial`` when smaller). Any attempt
    number, however large, gives a finite delay: the loop that waits never overflows."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0

    def __post_init__(self) -> None:
        for name in ("initial", "factor", "maximum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"backoff {name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"backoff {name} must be positive and finite, got {value!r}")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor!r}")
        if self.maximum < self.initial:
            object.__setattr__(self, "maximum", float(self.initial))

    def delay(self, attempt: int) -> float:
        steps = max(0, int(attempt) - 1)
        if self.factor == 1:
            return float(self.initial)
        # the step from which the cap applies, computed in logs: no power of a huge count
        if steps >= math.log(self.maximum / self.initial) / math.log(self.factor):
            return float(self.maximum)
        return min(self.maximum, self.initial * self.factor**steps)


def pyav_opener(
    spec: SourceSpec,
    *,
    short_side: int | None,
    keep_display: bool = False,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
) -> Opener:
    """The opener of a URL, a device, or a file replayed at its real frame rate."""

    def opener() -> Iterator[Frame]:
        return decode_frames(
            spec,
            short_side=short_side,
            keep_display=keep_display,
            pace=spec.kind == "file",
            timeout=timeout,
        )

    return opener


class StreamReader(threading.Thread):
    """Reads frames from ``opener`` into ``ring`` until the source ends or :meth:`stop`.

    Frame times become run times (0 at the first frame), continuing across reconnections;
    ``segment`` counts connections. A source that ends or fails is reopened after
    ``backoff.delay(n)`` seconds when ``reconnect`` is true (live sources), at most
    ``max_reconnects`` times in a row (None: forever). Outages go to ``events`` (a queue the
    analysis drains) and ``outages``; ``error`` is set when the reader gave up, the source
    never delivered a frame, or the reader itself failed (``crashed``: the thread never
    dies without saying why). Reasons are redacted (no URL credentials).
    """

    def __init__(
        self,
        opener: Opener,
        ring: FrameRing,
        *,
        reconnect: bool = True,
        backoff: Backoff = Backoff(),
        max_reconnects: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="rsanet-stream-reader", daemon=True)
        self.opener, self.ring = opener, ring
        self.reconnect, self.backoff, self.max_reconnects = reconnect, backoff, max_reconnects
        self.clock = clock
        self._halt = threading.Event()
        self.events: queue.SimpleQueue[Outage] = queue.SimpleQueue()
        self.outages: list[Outage] = []
        self.reconnects = 0
        self.error: str | None = None
        self.fatal: bool = False  # the source never delivered a frame
        self.crashed: bool = False  # the reader itself failed (a bug): ``error`` says how
        self._origin: float | None = None
        self._outage: Outage | None = None  # the outage in progress
        self._last_time = -math.inf
        self._count = 0

    def stop(self) -> None:
        self._halt.set()

    def _run_time(self) -> float:
        return 0.0 if self._origin is None else self.clock() - self._origin

    def _stream(self, segment: int) -> None:
        """One connection: put its frames in the ring (closing the open outage, if any)."""
        iterator = self.opener()
        offset: float | None = None
        try:
            for frame in iterator:
                if self._halt.is_set():
                    break
                now = self.clock()
                if self._origin is None:
                    self._origin = now - frame.time
                if offset is None:  # place this connection's frames at run time
                    offset = max(now - self._origin - frame.time, self._last_time - frame.time)
                    if self._outage is not None:
                        self._outage.end = now - self._origin
                        self.reconnects += 1
                        self.events.put(replace(self._outage))
                        self._outage = None
                when = max(frame.time + offset, self._last_time)
                self._last_time = when
                self.ring.put(
                    replace(frame, time=when, index=self._count, segment=segment, arrival=now)
                )
                self._count += 1
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def run(self) -> None:
        try:
            self._follow()
        except BaseException as error:  # a bug of the reader itself: never die silently
            reason = redact_text(" ".join(str(error).split()) or "no message")
            self.error = f"the stream reader stopped: {type(error).__name__}: {reason}"
            self.crashed = True
            if self._outage is not None:  # the outage in progress ends here, for good
                self._outage.gave_up = True
                self.events.put(replace(self._outage))
        finally:
            self.ring.close()

    def _follow(self) -> None:
        """Connect, stream, and reconnect after failures, until told to stop or giving up."""
        segment, attempts = 0, 0
        while not self._halt.is_set():
            try:
                self._stream(segment)
                if self._halt.is_set() or not self.reconnect:
                    return
                reason = "the stream ended"
            except Exception as error:  # any failure of the source: reconnect
                reason = redact_text(" ".join(str(error).split()) or type(error).__name__)
                if self._origin is None and self._outage is None:
                    self.error, self.fatal = reason, True
                    return
                if not self.reconnect:
                    self.error = reason
                    return
            outage = self._outage
            if outage is None:
                outage = self._outage = Outage(start=self._run_time(), reason=reason)
                self.outages.append(outage)
                self.events.put(replace(outage))
                attempts = 0
            attempts += 1
            outage.attempts = attempts
            if self.max_reconnects is not None and attempts > self.max_reconnects:
                outage.gave_up = True
                outage.attempts = attempts - 1
                self.error = (
                    f"stream lost ({outage.reason}), gave up after "
                    f"{attempts - 1} reconnection attempt(s)"
                )
                self.events.put(replace(outage))
                return
            if self._halt.wait(self.backoff.delay(attempts)):
                return
            segment += 1


class LiveAnalysis:
    """Windows over a live source: iterate to get a :class:`WindowResult` per window;
    :meth:`summary` describes the run (also after an interruption); :meth:`close` stops the
    reader (called when the iteration ends).

    Args:
        predictor: the model.
        opener: ``opener() -> Iterator[Frame]``, called for each (re)connection.
        window, stride: seconds.
        buffer_seconds: stream time the ring holds before dropping frames (default: window).
        reconnect: reopen the source when it ends or fails (cameras, URLs).
        backoff, max_reconnects: see :class:`StreamReader`.
        on_frame: called with each frame the analysis receives and the latest result.
        on_outage: called (in this thread) with each outage event.
    """

    def __init__(
        self,
        predictor: Predictor,
        opener: Opener,
        *,
        window: float,
        stride: float,
        source: str = "",
        buffer_seconds: float | None = None,
        reconnect: bool = True,
        backoff: Backoff = Backoff(),
        max_reconnects: int | None = None,
        on_frame: Callable[[Frame, WindowResult | None], None] | None = None,
        on_outage: Callable[[Outage], None] | None = None,
        max_frames: int | None = None,
    ) -> None:
        self.predictor, self.source = predictor, source
        self.window, self.stride = window, stride
        span = window + predictor.history_s  # what a window's clip reads
        held = max_frames or math.ceil(max(span, buffer_seconds or window) * MAX_FPS) + 16
        self.ring = FrameRing(buffer_seconds or window, max_frames=held)
        self.engine = SlidingWindow(window, stride, max_frames=held, history_s=predictor.history_s)
        self.reader = StreamReader(
            opener, self.ring, reconnect=reconnect, backoff=backoff, max_reconnects=max_reconnects
        )
        self.on_frame, self.on_outage = on_frame, on_outage
        self.latest: WindowResult | None = None
        self.stats = RunStats()
        self.interrupted = False
        self._started = time.perf_counter()

    def _drain_events(self) -> None:
        while True:
            try:
                outage = self.reader.events.get_nowait()
            except queue.Empty:
                return
            if self.on_outage is not None:
                self.on_outage(outage)

    def __iter__(self) -> Iterator[WindowResult]:
        smoother = self.predictor.new_smoother()
        segment = 0
        self._started = time.perf_counter()
        self.reader.start()
        try:
            while True:
                frames = self.ring.get_all(timeout=0.25)
                self._drain_events()
                for frame in frames:
                    if frame.segment != segment:  # reconnected: no window across the gap
                        if self.engine.due():
                            yield self._emit(self.engine.take(), smoother)
                        segment = frame.segment
                        self.engine.reset()
                        smoother.reset()
                    self.engine.add(frame)
                    if self.on_frame is not None:
                        self.on_frame(frame, self.latest)
                if self.engine.due():
                    yield self._emit(self.engine.take(), smoother)
                elif not frames and self.ring.finished:
                    break
            self.reader.join(timeout=5)
            self._drain_events()
            if self.reader.fatal:
                error = self.reader.error or "no frame"
                raise SourceError(
                    error
                    if self.source and self.source in error
                    else f"cannot read {self.source or 'the source'}: {error}"
                )
            tail = self.engine.flush()
            if tail is not None:
                yield self._emit(tail, smoother)
        finally:
            self.close()

    def _emit(self, window, smoother) -> WindowResult:
        result = self.predictor.predict_window(window, smoother, source=self.source)
        self.latest = result
        self.stats.add(result)
        return result

    def close(self, timeout: float = 2.0) -> None:
        """Stop the reader thread and wait for it (up to ``timeout`` seconds: a blocked
        network read ends at PyAV's read timeout; the thread is a daemon)."""
        self.reader.stop()
        if self.reader.is_alive() and self.reader is not threading.current_thread():
            self.reader.join(timeout)

    def summary(self) -> RunSummary:
        error = self.reader.error if not self.reader.fatal else None
        return self.stats.summary(
            self.source,
            stride=self.stride,
            frames=self.ring.received,
            elapsed_s=time.perf_counter() - self._started,
            dropped_frames=self.ring.dropped,
            reconnects=self.reader.reconnects,
            outages=[replace(o) for o in self.reader.outages],
            interrupted=self.interrupted,
            error=error,
        )
