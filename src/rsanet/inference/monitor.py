"""A windowed run from start to summary, as ``rsanet predict`` does it for a long file or a
live stream: the analysis (:func:`open_analysis`), its alert outputs
(:class:`~rsanet.inference.sinks.AlertSinks`) and SIGINT / SIGTERM, which stop the run
cleanly (:class:`StopSignals`): the window being delivered is delivered whole, then the
outputs are flushed and the summary says what happened.

>>> with AlertSinks.open(classes=predictor.classes, rules="rules.yaml") as sinks:  # doctest: +SKIP
...     monitor = Monitor(sinks)
...     analysis = open_analysis(predictor, spec, window=2.0, stride=1.0,
...                              on_frame=monitor.on_frame)
...     outcome = monitor.run(analysis, on_result=print)
>>> outcome.summary.describe(), outcome.exit_code                                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from rsanet.inference.predictor import Predictor, WindowAnalysis
from rsanet.inference.redact import one_line
from rsanet.inference.results import Outage, RunSummary, WindowResult
from rsanet.inference.sinks import AlertSinks
from rsanet.inference.sources import Frame, SourceError, SourceSpec, decode_frames
from rsanet.inference.stream import Backoff, LiveAnalysis, pyav_opener

#: the longest first delay between reconnections that still doubles (up to this many s)
MAX_RECONNECT_DELAY = 30.0


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: stop the run, then write the summary and flush the outputs."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class StopSignals:
    """SIGTERM handled like SIGINT (raises :class:`Interrupted`), except inside
    :meth:`critical` sections (an alert half-delivered) where the stop waits for the section
    to end, and after :meth:`defer` (while outputs are flushed) where it is only recorded.
    Handlers are installed in the main thread only and restored on leaving the block."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self._depth = 0
        self._pending = False
        self._deferred = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: object) -> None:
        self.received = self.received or signal.Signals(number).name
        if self._deferred or self._depth:
            self._pending = True
            return
        raise Interrupted(self.received)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A section a signal does not cut: the stop is raised when it ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending and not self._deferred:
                self._pending = False
                raise Interrupted(self.received or "SIGINT")

    def defer(self) -> None:
        """From now on a signal is only recorded (the run is already ending)."""
        self._deferred = True


def open_analysis(
    predictor: Predictor,
    spec: SourceSpec,
    *,
    window: float,
    stride: float,
    live: bool = False,
    keep_display: bool = False,
    timeout: float = 5.0,
    buffer_seconds: float | None = None,
    reconnect_delay: float = 0.5,
    max_reconnects: int | None = None,
    on_frame: Callable[[Frame, WindowResult | None], None] | None = None,
    on_outage: Callable[[Outage], None] | None = None,
) -> WindowAnalysis | LiveAnalysis:
    """The windows of ``spec``: a :class:`LiveAnalysis` for a stream or camera (or a file
    replayed in real time, ``live``), else the :class:`WindowAnalysis` of the decoded file.

    ``timeout`` bounds a network read (opening: twice as long); a lost stream is reopened
    after ``reconnect_delay`` seconds, doubled per attempt up to 30 s (or ``reconnect_delay``
    when longer), at most ``max_reconnects`` times in a row (None: forever).
    ``keep_display`` keeps the full-size frames for an annotated video."""
    if spec.is_live or live:
        predictor.warm_up()  # before the source opens: its first frames wait for nothing
        opener = pyav_opener(
            spec,
            short_side=predictor.short_side,
            keep_display=keep_display,
            timeout=(2 * timeout, timeout),
        )
        return LiveAnalysis(
            predictor,
            opener,
            window=window,
            stride=stride,
            source=str(spec),
            buffer_seconds=buffer_seconds,
            reconnect=spec.is_live,
            backoff=Backoff(
                initial=reconnect_delay, maximum=max(MAX_RECONNECT_DELAY, reconnect_delay)
            ),
            max_reconnects=max_reconnects,
            on_frame=on_frame,
            on_outage=on_outage,
        )
    frames = decode_frames(spec, short_side=predictor.short_side, keep_display=keep_display)
    return predictor.analyse(
        frames, window=window, stride=stride, source=str(spec), on_frame=on_frame
    )


@dataclass
class RunOutcome:
    """How a windowed run ended: its ``summary`` (signal, alerts, deliveries and every
    error included) and the exception that ended it early, if any (``failure``)."""

    summary: RunSummary
    failure: Exception | None = None

    @property
    def bug(self) -> bool:
        """The run was ended by an unexpected exception (not a ValueError or OSError): its
        traceback belongs after the summary."""
        return self.failure is not None and not isinstance(self.failure, ValueError | OSError)

    @property
    def empty(self) -> bool:
        """Nothing happened: no window, no frame, no interruption, no error."""
        summary = self.summary
        return not (summary.windows or summary.frames or summary.interrupted or summary.error)

    @property
    def exit_code(self) -> int:
        """1 when the summary holds an error or an alert delivery was lost, else 0."""
        return 1 if self.summary.error or self.summary.lost_alerts else 0


class Monitor:
    """Runs a windowed analysis into its alert sinks until the source ends, fails or a
    signal stops it, and never ends without a summary.

    Each result goes to ``on_result`` (printing) and then to the sinks, the two inside one
    :meth:`StopSignals.critical` section: a window and its alerts are delivered whole. Pass
    :meth:`on_frame` to :func:`open_analysis` so that frames reach the annotated video under
    the same rule. The sinks are closed (flushed) when the run ends.

    Args:
        sinks: the alert outputs of the run.
        stop: the signal handling (default: a new :class:`StopSignals`).
    """

    def __init__(self, sinks: AlertSinks, *, stop: StopSignals | None = None) -> None:
        self.sinks = sinks
        self.stop = stop or StopSignals()

    def on_frame(self, frame: Frame, latest: WindowResult | None) -> None:
        """Draw ``frame`` on the annotated video (if any) with the latest result."""
        with self.stop.critical():
            self.sinks.on_frame(frame, latest)

    def run(
        self,
        analysis: WindowAnalysis | LiveAnalysis,
        on_result: Callable[[WindowResult], None] | None = None,
    ) -> RunOutcome:
        """Iterate ``analysis`` to its end, then close it and the sinks. A SIGINT/SIGTERM
        (or KeyboardInterrupt) ends the run as interrupted; any other exception ends it
        with the error in the summary (:attr:`RunOutcome.failure`). A
        :class:`~rsanet.inference.sources.SourceError` before the first frame is raised:
        nothing was read (a wrong URL, a camera off)."""
        stop, sinks = self.stop, self.sinks
        failure: Exception | None = None
        with stop:
            try:
                for result in analysis:
                    with stop.critical():  # a window and its alerts are delivered whole
                        if on_result is not None:
                            on_result(result)
                        sinks.on_result(result)
            except KeyboardInterrupt as interrupt:
                analysis.interrupted = True
                stop.received = stop.received or getattr(interrupt, "name", "SIGINT")
            except Exception as error:  # the run ends, but never without its summary
                failure = error
            finally:
                stop.defer()  # a second signal must not cut the flushing short
                analysis.close()
                sinks.close()
        summary = replace(
            analysis.summary(),
            signal=stop.received if analysis.interrupted else None,
            alerts=sinks.fired,
            delivery=sinks.delivery(),
        )
        if isinstance(failure, SourceError) and summary.frames == 0:
            raise failure
        errors = [summary.error] if summary.error else []
        if failure is not None:
            errors.append(one_line(failure))
        errors += sinks.failures
        if errors:
            summary = replace(summary, error="; ".join(errors))
        return RunOutcome(summary, failure)
