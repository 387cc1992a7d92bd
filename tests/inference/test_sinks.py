"""Alert delivery: the event log is synced and written first, the webhook retries with
backoff, flushes at exit within its timeout, counts every loss, and sends URL credentials
as a header that is never printed. Receivers are loopback HTTP servers of this file."""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from rsanet.inference import AlertEngine, AlertRule, Backoff, EventLog, WebhookSink
from rsanet.inference.alerts import AlertEvent
from rsanet.inference.sinks import AlertSinks
from support.inference import CLASSES, fire, window

FAST = Backoff(initial=0.01, maximum=0.05)


class _Receiver(BaseHTTPRequestHandler):
    """Answers POST number n with ``server.statuses[n]`` (the last repeats) after
    ``server.delay`` seconds; records the path, headers and body of each."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        server = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with server.lock:
            number = len(server.requests)
            server.requests.append(
                SimpleNamespace(path=self.path, headers=dict(self.headers), body=body)
            )
        time.sleep(server.delay)
        status = server.statuses[min(number, len(server.statuses) - 1)]
        self.send_response(status)
        if status in (301, 302, 307):
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():
    """``start(statuses=(204,), delay=0)`` -> a loopback webhook receiver (``.url``,
    ``.requests``)."""
    servers = []

    def start(statuses=(204,), delay: float = 0.0) -> SimpleNamespace:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
        server.statuses, server.delay = list(statuses), delay
        server.requests, server.lock = [], threading.Lock()
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return SimpleNamespace(
            url=f"http://127.0.0.1:{server.server_address[1]}", requests=server.requests
        )

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def events(count: int) -> list[AlertEvent]:
    engine = AlertEngine([AlertRule("fighting", 0.5, cooldown=0)], CLASSES)
    return fire(engine, [0.9] * count)


def test_event_log_is_synced_per_event_and_mends_a_torn_line(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "alert", "label": "a"}\n{"type": "al')  # a killed writer
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    log = EventLog(path)
    before = len(synced)
    for event in events(2):
        log.write(event)
    log.close()
    assert len(synced) - before == 2  # each event is on disk before write() returns
    lines = path.read_text().splitlines()
    assert lines[1] == '{"type": "al'  # the torn line is kept, and ended
    assert [json.loads(x)["time"] for x in lines[2:]] == [2.0, 3.0]
    assert log.stats() == {"path": str(path), "written": 2, "failed": 0, "lost": 0}


def test_no_nan_reaches_the_event_log(tmp_path):
    event = events(1)[0]
    event.score = float("nan")
    log = EventLog(tmp_path / "events.jsonl")
    with pytest.raises(ValueError, match="JSON"):
        log.write(event)
    log.close()
    assert (tmp_path / "events.jsonl").read_text() == ""


def test_webhook_retries_with_backoff_until_delivered(receiver):
    server = receiver(statuses=(503, 503, 204))
    hook = WebhookSink(server.url + "/hook", retries=3, backoff=Backoff(initial=0.1))
    started = time.monotonic()
    hook.write(events(1)[0])
    hook.close()
    assert time.monotonic() - started >= 0.1 + 0.2  # waited 0.1 s, then 0.2 s
    assert hook.stats() == {
        "url": server.url + "/hook",
        "accepted": 1,
        "sent": 1,
        "retries": 2,
        "failed": 0,
        "dropped": 0,
        "unsent": 0,
        "lost": 0,
    }
    assert len({request.body for request in server.requests}) == 1  # the same event 3 times


def test_refusals_and_redirects_fail_at_once(receiver):
    for status in (400, 302):
        server = receiver(statuses=(status,))
        hook = WebhookSink(server.url, retries=3, backoff=FAST)
        hook.write(events(1)[0])
        hook.close()
        assert (hook.sent, hook.failed, hook.retried, hook.lost) == (0, 1, 0, 1)
        assert len(server.requests) == 1


def test_a_slow_receiver_is_flushed_at_exit_and_what_is_left_is_counted(receiver, caplog):
    server = receiver(delay=0.25)
    hook = WebhookSink(server.url, flush_timeout=10)
    for event in events(8):
        hook.write(event)
    started = time.monotonic()
    hook.close()
    assert time.monotonic() - started < 8
    assert (hook.sent, hook.lost) == (8, 0) and len(server.requests) == 8

    slow = receiver(delay=0.3)
    hook = WebhookSink(slow.url)
    for event in events(8):
        hook.write(event)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="rsanet.inference"):
        hook.close(timeout=0.7)
    assert time.monotonic() - started < 2.5  # the flush is bounded
    assert hook.unsent >= 4 and hook.sent + hook.unsent == 8 and hook.lost == hook.unsent
    assert f"{hook.unsent} alert(s) still pending" in caplog.text


def test_a_full_queue_drops_loudly(receiver, caplog):
    server = receiver(delay=0.3)
    hook = WebhookSink(server.url, max_pending=1)
    with caplog.at_level(logging.WARNING, logger="rsanet.inference"):
        for event in events(4):
            hook.write(event)
    hook.close()
    assert hook.dropped >= 1 and hook.lost == hook.dropped
    assert hook.sent + hook.dropped == 4 and "dropped" in caplog.text


@pytest.mark.parametrize(
    "userinfo, header",
    [
        ("alarm:pa/ss@w:rd", "Basic " + base64.b64encode(b"alarm:pa/ss@w:rd").decode()),
        ("alarm:p%40ss", "Basic " + base64.b64encode(b"alarm:p@ss").decode()),
        ("tok3n-abc", "Bearer tok3n-abc"),
    ],
)
def test_url_credentials_become_a_header_and_are_never_printed(
    receiver, closed_port, caplog, userinfo, header
):
    server = receiver()
    host = server.url.removeprefix("http://")
    hook = WebhookSink(f"http://{userinfo}@{host}/hook?site=1&api_key=K3Y")
    hook.write(events(1)[0])
    hook.close()
    (request,) = server.requests
    assert request.headers["Authorization"] == header
    assert request.path == "/hook?site=1&api_key=K3Y"  # the receiver gets the query
    shown = hook.stats()["url"]
    assert shown.startswith("http://") and "site=1" in shown
    assert "pa/ss" not in shown and "tok3n" not in shown and "K3Y" not in shown

    failing = WebhookSink(
        f"http://{userinfo}@127.0.0.1:{closed_port}/hook?token=T0K", retries=1, backoff=FAST
    )
    with caplog.at_level(logging.INFO, logger="rsanet.inference"):
        failing.write(events(1)[0])
        failing.close()
    assert failing.failed == 1 and "not delivered" in caplog.text
    for secret in ("pa/ss", "p%40ss", "tok3n", "T0K"):
        assert secret not in caplog.text


def test_the_event_log_is_written_before_the_alert_is_announced(tmp_path, receiver):
    server = receiver()
    path = tmp_path / "events.jsonl"
    announced = []

    def emit(record: dict, text: str) -> None:
        logged = [json.loads(x) for x in path.read_text().splitlines()]
        announced.append(record in logged)  # already on disk when printed

    sinks = AlertSinks(
        engine=AlertEngine([AlertRule("fighting", 0.5, cooldown=0)], CLASSES),
        events=EventLog(path),
        webhook=WebhookSink(server.url),
        emit=emit,
    )
    for i in range(3):
        sinks.on_result(window(i, 2.0 + i, 0.9))
    sinks.close()
    assert announced == [True] * 3 and len(server.requests) == 3
    assert sinks.fired == 3 and sinks.lost == 0 and not sinks.failures


def test_a_failing_event_log_is_reported_and_the_alert_still_goes_out(tmp_path, receiver):
    server = receiver()
    warnings, printed = [], []
    sinks = AlertSinks(
        engine=AlertEngine([AlertRule("fighting", 0.5, cooldown=0)], CLASSES),
        events=EventLog(tmp_path / "events.jsonl"),
        webhook=WebhookSink(server.url),
        emit=lambda record, text: printed.append(record),
        warn=warnings.append,
    )

    def full(data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    sinks.log._append = full
    sinks.on_result(window(0, 2.0, 0.9))
    sinks.on_result(window(1, 3.0, 0.9))
    sinks.close()
    assert len(printed) == 2 and len(server.requests) == 2  # monitoring went on
    assert len(warnings) == 1 and "No space left" in warnings[0]  # warned once
    assert sinks.delivery()["events"]["lost"] == 2 and sinks.lost == 2
