"""Delivering the outbox: a worker thread per sink sends its pending deliveries from the
:class:`~rsanet.serve.store.EventStore` (the webhook's POSTs here, MQTT's publishes with
:mod:`rsanet.serve.mqtt`), retrying with capped exponential backoff.

Deliveries live in the store, not in memory: a delivery that was pending when the server
stopped or crashed is sent after the restart. Each attempt's outcome is written back
(sent; failed and retried at a time recorded in the row; failed for good after
``retries`` further attempts or a refusal such as 4xx). The URL's credentials and the
``auth`` header are never printed."""

from __future__ import annotations

import base64
import contextlib
import http.client
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from rsanet.inference.redact import redact_text, redact_url, split_credentials
from rsanet.inference.sinks import RETRY_STATUSES, NoRedirect
from rsanet.inference.stream import Backoff
from rsanet.serve.store import Delivery, EventStore

logger = logging.getLogger("rsanet.serve")

WEBHOOK = "webhook"


class WebhookPoster:
    """POSTs a JSON body to ``url`` with an ``Authorization`` header: ``auth`` when given,
    else one made from the URL's credentials (Basic ``user:password``, Bearer ``token@``).
    :meth:`__call__` returns None when delivered, else ``(reason, retry)``."""

    def __init__(self, url: str, *, auth: str | None = None, timeout: float = 5.0) -> None:
        from rsanet import __version__

        self.display_url = redact_url(url)
        clean, user, password = split_credentials(url)
        self.url, self.timeout = clean, float(timeout)
        self.headers = {"Content-Type": "application/json", "User-Agent": f"rsanet/{__version__}"}
        if auth:
            self.headers["Authorization"] = auth
        elif password is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"
        elif user:
            self.headers["Authorization"] = f"Bearer {user}"
        self._opener = urllib.request.build_opener(NoRedirect)

    def __call__(self, body: bytes) -> tuple[str, bool] | None:
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status} {response.reason}", False
        except urllib.error.HTTPError as error:
            retry = error.code >= 500 or error.code in RETRY_STATUSES
            with contextlib.suppress(Exception):
                error.close()
            return redact_text(f"HTTP {error.code} {error.reason}"), retry
        except (OSError, http.client.HTTPException, ValueError) as error:
            reason = " ".join(str(getattr(error, "reason", error)).split())
            return redact_text(reason or type(error).__name__), True


class OutboxWorker(threading.Thread):
    """Delivers the store's due deliveries of ``sink`` with ``post`` until :meth:`stop`.

    ``retries``: further attempts after the first failed one (None: retried until
    delivered); ``backoff``: delay before retry n; ``ordered``: the deliveries are sent in
    the order they were stored, a failed one holding back those after it (MQTT: an
    event's ``new``, ``update`` and ``end`` arrive in order). :meth:`wake` after a new
    event makes it look at once. :meth:`stop` gives the deliveries that are due
    ``flush_timeout`` seconds, then leaves the rest pending in the store (for the next
    start)."""

    def __init__(
        self,
        store: EventStore,
        post: Callable[[bytes], tuple[str, bool] | None],
        *,
        sink: str = WEBHOOK,
        retries: int | None = 10,
        backoff: Backoff | None = None,
        ordered: bool = False,
        display: str = "",
        flush_timeout: float = 10.0,
        on_result: Callable[[Delivery, bool, str | None], None] | None = None,
    ) -> None:
        super().__init__(name=f"rsanet-{sink}", daemon=True)
        self.store, self.post, self.sink = store, post, sink
        self.retries = None if retries is None else int(retries)
        self.ordered = bool(ordered)
        self.backoff = backoff or Backoff(initial=1.0, maximum=300.0)
        self.display = display or sink
        self.flush_timeout = float(flush_timeout)
        self.on_result = on_result
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._deadline: float | None = None
        self.sent = self.failed = self.retried = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        flush = self.flush_timeout if timeout is None else float(timeout)
        self._deadline = time.monotonic() + flush
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(flush + self.timeout_margin)

    @property
    def timeout_margin(self) -> float:
        return float(getattr(self.post, "timeout", 5.0)) + 1.0

    def _out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def run(self) -> None:
        while True:
            try:
                worked = self._round()
            except Exception as error:  # a bug here must not silently stop deliveries
                logger.warning("%s: delivery round failed: %s", self.display, error)
                worked = False
            if self._stopping.is_set() and (not worked or self._out_of_time()):
                return
            if worked:
                continue
            due = self.store.next_due(sink=self.sink, ordered=self.ordered)
            wait = 1.0 if due is None else min(1.0, max(0.0, due - time.time()))
            self._wake.wait(wait)
            self._wake.clear()

    def _round(self) -> bool:
        """Attempt each due delivery once; True when there were some."""
        due = self.store.due(sink=self.sink, ordered=self.ordered)
        for delivery in due:
            if self._stopping.is_set() and self._out_of_time():
                return True
            outcome = self.post(delivery.payload.encode("utf-8"))
            if outcome is None:
                self.store.delivered(delivery.id)
                self.sent += 1
                self._report(delivery, True, None)
                continue
            reason, retry = outcome
            attempt = delivery.attempts + 1
            if retry and (self.retries is None or attempt <= self.retries):
                self.retried += 1
                retry_at = time.time() + self.backoff.delay(attempt)
                logger.info(
                    "%s: event %d attempt %d failed (%s); retrying in %.1f s",
                    self.display, delivery.event_id, attempt, reason,
                    retry_at - time.time(),
                )  # fmt: skip
            else:
                retry_at = None
                self.failed += 1
                logger.warning(
                    "%s: event %d not delivered after %d attempt(s): %s",
                    self.display, delivery.event_id, attempt, reason,
                )  # fmt: skip
            self.store.attempt_failed(delivery.id, reason, retry_at)
            self._report(delivery, False, reason)
            if self.ordered and retry_at is not None:
                break  # the next ones wait for this one
        return bool(due)

    def _report(self, delivery: Delivery, ok: bool, reason: str | None) -> None:
        if self.on_result is not None:
            with contextlib.suppress(Exception):
                self.on_result(delivery, ok, reason)
