"""The store: events and their pending deliveries committed together, in WAL mode, before
any sink; a crash before the webhook ran loses nothing (the next start delivers it);
failed attempts are retried with backoff and recorded."""

from __future__ import annotations

import json
import sqlite3

from rsanet.inference.stream import Backoff
from rsanet.serve.delivery import WEBHOOK, OutboxWorker, WebhookPoster
from rsanet.serve.store import EventStore
from support.serve import wait_for

FAST = Backoff(initial=0.01, maximum=0.05)


def add(store: EventStore, camera: str = "door", label: str = "fighting", at: float = 100.0):
    return store.add_event(
        camera=camera, label=label, score=0.9, threshold=0.5, start=at - 2, end=at,
        sinks=[WEBHOOK], payload={"camera": camera, "label": label},
    )  # fmt: skip


def test_wal_mode_full_sync_and_filters(tmp_path):
    store = EventStore(tmp_path / "events.sqlite3")
    first = add(store, "door", "fighting", 100.0)
    add(store, "yard", "falling", 200.0)
    add(store, "door", "falling", 300.0)
    db = sqlite3.connect(tmp_path / "events.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert first["id"] == 1 and first["evidence"] == "pending" and not first["acknowledged"]
    assert [e["id"] for e in store.events(camera="door")] == [3, 1]
    assert [e["id"] for e in store.events(label="falling")] == [3, 2]
    assert [e["id"] for e in store.events(since=150, until=250)] == [2]
    store.acknowledge(2)
    assert [e["id"] for e in store.events(acknowledged=False)] == [3, 1]
    store.close()


def test_a_crash_before_the_sink_ran_loses_nothing(tmp_path, receiver):
    path = tmp_path / "events.sqlite3"
    store = EventStore(path)
    event = add(store)
    # the process dies here: the sink never ran, the store is never closed
    del store
    hook = receiver()
    restarted = EventStore(path)
    assert restarted.get(event["id"])["label"] == "fighting"
    (pending,) = restarted.due()
    assert pending.event_id == event["id"] and json.loads(pending.payload)["id"] == event["id"]
    worker = OutboxWorker(
        restarted, WebhookPoster(hook.url, auth="Bearer s3cret-token"), backoff=FAST
    )
    worker.start()
    assert wait_for(lambda: restarted.outbox_counts().get("sent") == 1)
    worker.stop(1.0)
    (request,) = hook.requests
    assert json.loads(request.body) == {"camera": "door", "label": "fighting", "id": 1}
    assert request.headers["Authorization"] == "Bearer s3cret-token"
    assert restarted.deliveries(event["id"])[0]["status"] == "sent"
    restarted.close()


def test_failed_attempts_are_retried_then_given_up(tmp_path, receiver):
    store = EventStore(tmp_path / "events.sqlite3")
    busy = receiver(statuses=(503, 503, 204))
    add(store)
    worker = OutboxWorker(store, WebhookPoster(busy.url), retries=5, backoff=FAST)
    worker.start()
    assert wait_for(lambda: store.outbox_counts().get("sent") == 1)
    assert len(busy.requests) == 3 and worker.retried == 2
    refusing = receiver(statuses=(404,))
    worker.post = WebhookPoster(refusing.url)
    add(store)
    worker.wake()
    assert wait_for(lambda: store.outbox_counts().get("failed") == 1)
    (delivery,) = store.deliveries(2)
    assert delivery["attempts"] == 1 and "404" in delivery["last_error"]
    worker.stop(1.0)
    store.close()


def test_pending_deliveries_stay_in_the_outbox_at_stop(tmp_path):
    store = EventStore(tmp_path / "events.sqlite3")
    add(store)
    # nothing listens on port 9: every attempt fails and is retried later
    worker = OutboxWorker(
        store, WebhookPoster("http://127.0.0.1:9/hook", timeout=0.5), retries=100,
        backoff=Backoff(initial=30.0),
    )  # fmt: skip
    worker.start()
    assert wait_for(lambda: store.deliveries(1)[0]["attempts"] == 1)
    worker.stop(0.2)
    assert not worker.is_alive()
    assert store.outbox_counts() == {"pending": 1}
    store.close()
