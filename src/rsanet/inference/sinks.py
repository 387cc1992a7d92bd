"""Where alerts go, so that none is lost: the event log (the durable record), the webhook,
and the annotated video, with the bookkeeping of a windowed run (:class:`AlertSinks`).

* :class:`EventLog` appends one JSON line per event and ``fsync``\\ s it *before* the event
  is printed or sent: an alert that was announced anywhere is on disk.
* :class:`WebhookSink` POSTs events from a bounded queue in a background thread (a slow
  receiver never holds up the analysis), retries failed deliveries with capped exponential
  backoff, and at :meth:`~WebhookSink.close` flushes what is pending within a timeout.
  Every event is accounted for: sent, failed (given up), dropped (queue full) or unsent
  (the flush timed out); ``lost`` is the sum of the last three.
* Credentials in a webhook URL are never sent in the URL nor printed:
  ``https://user:pass@host/hook`` is POSTed with ``Authorization: Basic base64(user:pass)``,
  ``https://TOKEN@host/hook`` (a token as the user name) with ``Authorization: Bearer
  TOKEN``, and the URL appears everywhere as :func:`~rsanet.inference.redact.redact_url`
  prints it.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import math
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rsanet.atomic import refuse_overwrite, remove_stale_temporaries
from rsanet.inference.alerts import AlertEngine, AlertEvent, load_rules
from rsanet.inference.annotate import Annotator, container_format
from rsanet.inference.redact import (
    one_line,
    redact_record,
    redact_text,
    redact_url,
    split_credentials,
)
from rsanet.inference.results import WindowResult
from rsanet.inference.sources import Frame
from rsanet.inference.stream import Backoff

logger = logging.getLogger("rsanet.inference")

#: HTTP statuses worth retrying (besides 5xx): the receiver is busy, not refusing
RETRY_STATUSES = frozenset({408, 425, 429})


def event_json(event: AlertEvent) -> str:
    """The JSON of an event as logged and POSTed: URLs redacted, never NaN (a non-finite
    number raises ValueError instead of being written)."""
    return json.dumps(redact_record(event.to_dict()), allow_nan=False)


def check_writable(path: str | Path, what: str) -> None:
    """ValueError (one line naming ``what`` and ``path``) when a file cannot be created or
    replaced at ``path``: it is a folder, a parent is a file, or the folder is read-only.
    Nothing is created."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder: give a file name")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{what} {str(path)!r}: cannot create it, {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(
            f"{what} {str(path)!r}: cannot write in {str(folder)!r} (permission denied); "
            "choose another path"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{what} {str(path)!r} is read-only; choose another path")


def check_outputs(
    *,
    events: str | Path | None = None,
    annotate: str | Path | None = None,
    inputs: Sequence[str | Path | None] = (),
) -> None:
    """Before anything is read or written: an output (the ``events`` log, the ``annotate``
    video) must not be one of the ``inputs`` nor the other output, must be writable, and an
    annotated video needs a known container. Raises ValueError (one line; an
    :class:`~rsanet.atomic.OverwriteError` for an output that is an input). Removes the
    temporaries a killed run left beside the annotated video."""
    if annotate:
        refuse_overwrite(annotate, [*inputs, events], what="--annotate output")
        container_format(annotate)
        check_writable(annotate, "--annotate")
        remove_stale_temporaries(Path(annotate))  # left by a killed run
    if events:
        refuse_overwrite(events, inputs, what="--events log")
        check_writable(events, "--events")


class EventLog:
    """Events appended to a JSON-lines file: one line per event, flushed and ``fsync``\\ ed
    before :meth:`write` returns (append-only, so a crash loses nothing written). A last
    line torn by a killed run is ended before the first new one, so every line parses."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        check_writable(self.path, "event log")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._file = self.path.open("ab")
        self.written = self.failed = 0
        try:
            if self._file.tell() > 0:
                with self.path.open("rb") as previous:
                    previous.seek(-1, os.SEEK_END)
                    torn = previous.read(1) != b"\n"
                if torn:
                    self._append(b"\n")
            if created:  # the new file's name is durable too
                self._sync_folder()
        except BaseException:
            self._file.close()
            raise

    def _append(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def _sync_folder(self) -> None:
        with contextlib.suppress(OSError):  # not every file system lets a folder be synced
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def write(self, event: AlertEvent) -> None:
        """Append ``event`` durably; OSError (a full disk, an I/O error) is raised after
        counting it in ``failed``."""
        line = (event_json(event) + "\n").encode("utf-8")
        try:
            self._append(line)
        except OSError:
            self.failed += 1
            raise
        self.written += 1

    def stats(self) -> dict[str, Any]:
        return {"path": str(self.path), "written": self.written, "failed": self.failed,
                "lost": self.failed}  # fmt: skip

    def close(self) -> None:
        self._file.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery: following it would turn the POST into a GET (the
    alert lost while reported sent) and could carry the credentials to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSink:
    """POSTs each event as JSON to ``url`` from a background thread.

    Args:
        url: ``http(s)://[user:password@ | token@]host[:port]/path``; credentials become an
            ``Authorization`` header (Basic, or Bearer for a token given as the user name).
        timeout: seconds one POST may take.
        retries: further attempts after a failed one (connection errors, timeouts, 5xx,
            408/425/429); other answers (4xx, redirects) fail at once.
        backoff: delay before retry n (capped exponential).
        max_pending: events waiting at most; beyond that new events are dropped (counted
            and warned about; the event log still holds them).
        flush_timeout: seconds :meth:`close` waits for pending deliveries.
        warn: prints a one-line warning (default: the ``rsanet.inference`` logger); every
            URL in it is redacted.

    Counters (see :meth:`stats`): ``accepted``, ``sent``, ``retried`` (attempts after the
    first), ``failed``, ``dropped``, ``unsent`` (pending when the flush timed out).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 5,
        backoff: Backoff | None = None,
        max_pending: int = 1000,
        flush_timeout: float = 10.0,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.warn = warn or logger.warning
        self.display_url = redact_url(url)
        clean, user, password = split_credentials(url)
        scheme, _, rest = clean.partition("://")
        if scheme.lower() not in ("http", "https") or not rest.split("/")[0]:
            raise ValueError(
                f"webhook URL must start with http:// or https:// and name a host, got "
                f"{self.display_url!r}"
            )
        for name, value in (("timeout", timeout), ("flush timeout", flush_timeout)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"webhook {name} must be positive, got {value!r}")
        if retries < 0 or max_pending < 1:
            raise ValueError(
                f"webhook retries must be >= 0 and max_pending >= 1, got {retries}, {max_pending}"
            )
        self.url, self.timeout, self.retries = clean, float(timeout), int(retries)
        self.backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self.flush_timeout = float(flush_timeout)
        from rsanet import __version__

        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"rsanet/{__version__}",
        }
        if password is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        elif user:
            self._headers["Authorization"] = f"Bearer {user}"
        self._opener = urllib.request.build_opener(NoRedirect)
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=max_pending)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._abandon = threading.Event()
        self._deadline: float | None = None
        self._final = False
        self.accepted = self.sent = self.retried = self.failed = self.dropped = 0
        self.unsent = 0
        self._thread = threading.Thread(target=self._run, name="rsanet-webhook", daemon=True)
        self._thread.start()

    # -- the analysis side ---------------------------------------------------------------

    def write(self, event: AlertEvent) -> None:
        """Queue ``event`` for delivery (never blocks); a full queue drops it (counted)."""
        payload = event_json(event).encode("utf-8")
        if self._closing.is_set():
            raise RuntimeError("the webhook sink is closed")
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            self.warn(
                f"webhook {self.display_url}: {self._queue.maxsize} deliveries pending, alert "
                f"{event.label} at {event.time:.1f} s dropped (it is in the event log, if any)"
            )
            return
        with self._lock:
            self.accepted += 1

    # -- the delivery thread -------------------------------------------------------------

    def _remaining(self) -> float | None:
        deadline = self._deadline
        return None if deadline is None else deadline - time.monotonic()

    def _post(self, payload: bytes, timeout: float) -> None:
        request = urllib.request.Request(
            self.url, data=payload, headers=self._headers, method="POST"
        )
        with self._opener.open(request, timeout=timeout) as response:
            response.read()
            if not 200 <= response.status < 300:
                raise urllib.error.HTTPError(
                    self.url, response.status, response.reason, response.headers, None
                )

    def _deliver(self, payload: bytes) -> bool | None:
        """True: delivered; False: failed for good; None: the flush deadline came first."""
        attempt = 0
        while True:
            attempt += 1
            remaining = self._remaining()
            if self._abandon.is_set() or (remaining is not None and remaining <= 0):
                return None
            timeout = self.timeout if remaining is None else min(self.timeout, remaining)
            try:
                self._post(payload, timeout)
                return True
            except urllib.error.HTTPError as error:
                reason = f"HTTP {error.code} {error.reason}"
                retry = error.code >= 500 or error.code in RETRY_STATUSES
                with contextlib.suppress(Exception):
                    error.close()
            except (OSError, http.client.HTTPException, ValueError) as error:
                reason = " ".join(str(getattr(error, "reason", error)).split())
                reason = reason or type(error).__name__
                retry = True
            reason = redact_text(reason)
            if not retry or attempt > self.retries:
                self.warn(
                    f"webhook {self.display_url}: alert not delivered after {attempt} "
                    f"attempt(s): {reason}"
                )
                return False
            delay = self.backoff.delay(attempt)
            remaining = self._remaining()
            if remaining is not None and delay >= remaining:
                return None
            with self._lock:
                self.retried += 1
            logger.info(
                "webhook %s: attempt %d failed (%s); retrying in %.1f s",
                self.display_url,
                attempt,
                reason,
                delay,
            )
            if self._abandon.wait(delay):
                return None

    def _run(self) -> None:
        while True:
            try:
                payload = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._closing.is_set() or self._abandon.is_set():
                    return
                continue
            try:
                outcome = self._deliver(payload)
            except Exception as error:  # a bug here must not silently stop deliveries
                self.warn(f"webhook {self.display_url}: delivery failed: {error!r}")
                outcome = False
            with self._lock:
                if self._final:
                    return
                if outcome is True:
                    self.sent += 1
                elif outcome is False:
                    self.failed += 1
            self._queue.task_done()

    # -- the end -------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is pending, waiting at most ``timeout`` seconds (default
        ``flush_timeout``), then stop; what could not be sent by then is counted in
        ``unsent``."""
        flush = self.flush_timeout if timeout is None else max(0.0, float(timeout))
        with self._lock:
            if self._final:
                return
            self._deadline = time.monotonic() + flush
        self._closing.set()
        self._thread.join(flush + 0.5)
        self._abandon.set()
        with self._lock:
            self._final = True
            self.unsent = max(0, self.accepted - self.sent - self.failed)
        if self.unsent:
            self.warn(
                f"webhook {self.display_url}: {self.unsent} alert(s) still pending after the "
                f"{flush:g} s flush timeout were not delivered"
            )

    @property
    def lost(self) -> int:
        """Events that did not reach the receiver (failed, dropped or unsent)."""
        return self.failed + self.dropped + self.unsent

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.display_url,
            "accepted": self.accepted,
            "sent": self.sent,
            "retries": self.retried,
            "failed": self.failed,
            "dropped": self.dropped,
            "unsent": self.unsent,
            "lost": self.lost,
        }


class AlertSinks:
    """The alert side of one windowed run: rules, event log, webhook and annotated video.

    Per window result, fired events go first to the event log (the durable record), then to
    ``emit`` (stdout), then to the webhook. A failing output (a full disk under the event log
    or the video) is warned about once, counted, and listed in :attr:`failures`; the
    monitoring goes on, and the run ends non-zero.

    Args:
        engine: the alert rules (None: no alerts).
        events, webhook, annotator: the outputs (each optional).
        emit: ``emit(record, text)`` prints an event.
        warn: prints a one-line notice (stderr).
    """

    HOLD_SECONDS = 3.0  # how long an alert stays drawn on the annotated video

    def __init__(
        self,
        *,
        engine: AlertEngine | None = None,
        events: EventLog | None = None,
        webhook: WebhookSink | None = None,
        annotator: Annotator | None = None,
        emit: Callable[[dict[str, Any], str], None] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.engine, self.log, self.webhook, self.annotator = engine, events, webhook, annotator
        self.emit = emit or (lambda record, text: None)
        self.warn = warn or logger.warning
        self.failures: list[str] = []
        self.alert_label: str | None = None
        self.alert_until = -1.0
        self.segment = 0
        self._closed = False

    @classmethod
    def open(
        cls,
        *,
        classes: Sequence[str],
        rules: str | Path | None = None,
        events: str | Path | None = None,
        webhook: str | None = None,
        annotate: str | Path | None = None,
        webhook_options: dict[str, Any] | None = None,
        emit: Callable[[dict[str, Any], str], None] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> AlertSinks:
        """Open the outputs the options name (all or none: a failure closes the others)."""
        sinks = cls(emit=emit, warn=warn)
        try:
            if rules:
                sinks.engine = AlertEngine(load_rules(rules), classes)
            if webhook:  # checks its URL before the event log is created
                options = {"warn": warn, **(webhook_options or {})}
                sinks.webhook = WebhookSink(webhook, **options)
            if events:
                sinks.log = EventLog(events)
            if annotate:
                sinks.annotator = Annotator(annotate)
        except BaseException:
            sinks.close()
            raise
        return sinks

    def __enter__(self) -> AlertSinks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, what: str, error: BaseException) -> None:
        message = f"{what}: {one_line(error)}"
        if message not in self.failures:
            self.failures.append(message)
            self.warn(message)

    def on_frame(self, frame: Frame, latest: WindowResult | None) -> None:
        """Draw ``frame`` on the annotated video (if any) with the latest result."""
        if self.annotator is None:
            return
        label = score = None
        if latest is not None and latest.segment == frame.segment:
            label, score = latest.top[0]
        alert = self.alert_label if frame.time <= self.alert_until else None
        image = frame.display if frame.display is not None else frame.image
        try:
            self.annotator.write(image, frame.time, label, score, alert=alert)
        except Exception as error:  # PyAV / disk errors: keep monitoring, report at the end
            self._fail(f"annotated video {self.annotator.path} abandoned", error)
            self.annotator.abort()
            self.annotator = None

    def on_result(self, result: WindowResult) -> list[AlertEvent]:
        """Apply the rules to ``result``; deliver and return the events it fires."""
        if self.engine is None:
            return []
        if result.segment != self.segment:  # after an outage conditions start afresh
            self.segment = result.segment
            self.engine.reset()
        events = self.engine.update(result)
        for event in events:
            if self.log is not None:  # the durable record first
                try:
                    self.log.write(event)
                except OSError as error:
                    self._fail(f"event log {self.log.path}: write failed", error)
            self.emit(event.to_dict(), event.describe())
            self.alert_label, self.alert_until = event.label, event.time + self.HOLD_SECONDS
            if self.webhook is not None:
                self.webhook.write(event)
        return events

    @property
    def fired(self) -> int | None:
        """Events fired (None without rules)."""
        return None if self.engine is None else self.engine.fired

    def delivery(self) -> dict[str, Any] | None:
        """What became of the events: ``events`` (log) and ``webhook`` counts."""
        parts = {}
        if self.log is not None:
            parts["events"] = self.log.stats()
        if self.webhook is not None:
            parts["webhook"] = self.webhook.stats()
        return parts or None

    @property
    def lost(self) -> int:
        """Deliveries lost so far (event log writes and webhook POSTs)."""
        return sum(part["lost"] for part in (self.delivery() or {}).values())

    def close(self) -> None:
        """Finish the video, close the log, flush the webhook (bounded by its timeout).
        Closing twice does nothing; leaving a ``with`` block closes."""
        if self._closed:
            return
        self._closed = True
        if self.annotator is not None:
            try:
                self.annotator.close()
            except Exception as error:
                self._fail(f"annotated video {self.annotator.path} not written", error)
        if self.log is not None:
            try:
                self.log.close()
            except OSError as error:
                self._fail(f"event log {self.log.path}: close failed", error)
        if self.webhook is not None:
            self.webhook.close()
