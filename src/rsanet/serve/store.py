"""The durable record of ``rsanet serve``: alert events and their pending deliveries in one
SQLite database.

* An event is committed *before* any sink is tried, together with one ``outbox`` row per
  sink that must deliver it (the same transaction): a crash after the commit loses
  nothing, and the deliveries still pending are found and retried after a restart.
* WAL journal (readers, the web API, never block the writer) with ``synchronous=FULL``:
  every commit is on disk when it returns, a power cut included (NORMAL, the usual WAL
  setting, may lose the last commits on a power cut, not on a process crash). Alerts are
  rare, so the cost of one sync per event is nothing next to the guarantee.
* One connection shared by the threads of the server (inference loop, delivery worker,
  web API) behind a lock: SQLite serialises writers anyway.
* :attr:`EventStore.messages`, when set, turns every change of an event (stored, evidence
  written, acknowledged) into outbox rows committed in the same transaction as the change
  (the MQTT sink's ``new`` / ``update`` / ``end`` messages): a change is never on disk
  without its messages, nor a message without its change.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    label TEXT NOT NULL,
    score REAL NOT NULL,
    threshold REAL NOT NULL,
    start REAL NOT NULL,            -- wall-clock seconds (Unix time)
    end REAL NOT NULL,
    created REAL NOT NULL,
    acknowledged INTEGER NOT NULL DEFAULT 0,
    acknowledged_at REAL,
    clip TEXT,                      -- relative to the storage folder
    snapshot TEXT,
    evidence TEXT NOT NULL DEFAULT 'pending',   -- pending, ready, missing, pruned, none
    evidence_error TEXT
);
CREATE INDEX IF NOT EXISTS events_created ON events (created);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL REFERENCES events (id),
    sink TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',     -- pending, sent, failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    created REAL NOT NULL,
    delivered REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt);
"""

EVENT_COLUMNS = (
    "id", "camera", "label", "score", "threshold", "start", "end", "created", "acknowledged",
    "acknowledged_at", "clip", "snapshot", "evidence", "evidence_error",
)  # fmt: skip


@dataclass
class Delivery:
    """A pending outbox row."""

    id: int
    event_id: int
    sink: str
    payload: str
    attempts: int


#: ``messages(before, after)`` -> the outbox rows ``(sink, payload)`` a change of an event
#: adds (``before`` is None for a new event)
Messages = Callable[[dict[str, Any] | None, dict[str, Any]], Sequence[tuple[str, dict[str, Any]]]]


class EventStore:
    """Events and their outbox in the SQLite file ``path`` (created with its folder).

    ``messages``: see :data:`Messages` (may also be set later)."""

    def __init__(self, path: str | Path, *, messages: Messages | None = None) -> None:
        self.messages = messages
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OSError(f"{self.path}: SQLite refused the WAL journal (got {mode})")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    # -- events --------------------------------------------------------------------------

    def add_event(
        self,
        *,
        camera: str,
        label: str,
        score: float,
        threshold: float,
        start: float,
        end: float,
        sinks: Sequence[str] = (),
        payload: dict[str, Any] | None = None,
        evidence: str = "pending",
    ) -> dict[str, Any]:
        """Commit an event and one pending delivery per sink (one transaction, synced);
        returns the event as :meth:`get` does. ``payload`` gets the event's ``id``."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT INTO events (camera, label, score, threshold, start, end, created, "
                    "evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (camera, label, float(score), float(threshold), start, end, now, evidence),
                )
                event_id = int(cursor.lastrowid)
                body = json.dumps({**(payload or {}), "id": event_id}, allow_nan=False)
                for sink in sinks:
                    self._enqueue(event_id, sink, body, now)
                self._notify(None, event_id, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self.get(event_id)

    def _enqueue(self, event_id: int, sink: str, body: str, now: float) -> None:
        self._db.execute(
            "INSERT INTO outbox (event_id, sink, payload, next_attempt, created) "
            "VALUES (?, ?, ?, ?, ?)",
            (event_id, sink, body, now, now),
        )

    def _notify(self, before: dict[str, Any] | None, event_id: int, now: float) -> None:
        """The outbox rows :attr:`messages` makes of a change (inside its transaction)."""
        if self.messages is None:
            return
        after = self.get(event_id)
        if after is None or after == before:
            return
        for sink, payload in self.messages(before, after):
            self._enqueue(event_id, sink, json.dumps(payload, allow_nan=False), now)

    def _change(self, event_id: int, sql: str, values: Sequence[Any]) -> dict[str, Any] | None:
        """Run one UPDATE of an event and add the messages of the change, in one
        transaction; returns the event after it."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self.get(event_id)
                self._db.execute(sql, values)
                if before is not None:
                    self._notify(before, event_id, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self.get(event_id)

    def get(self, event_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else _event(row)

    def events(
        self,
        *,
        camera: str | None = None,
        label: str | None = None,
        since: float | None = None,
        until: float | None = None,
        acknowledged: bool | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Events, newest first, filtered by camera, class, creation time and ack."""
        clauses, values = [], []
        for column, value in (("camera", camera), ("label", label)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        if since is not None:
            clauses.append("end >= ?")
            values.append(since)
        if until is not None:
            clauses.append("start <= ?")
            values.append(until)
        if acknowledged is not None:
            clauses.append("acknowledged = ?")
            values.append(int(acknowledged))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM events {where} ORDER BY id DESC LIMIT ?", (*values, int(limit))
            ).fetchall()
        return [_event(row) for row in rows]

    def acknowledge(self, event_id: int) -> dict[str, Any] | None:
        return self._change(
            event_id,
            "UPDATE events SET acknowledged = 1, acknowledged_at = COALESCE(acknowledged_at, ?)"
            " WHERE id = ?",
            (time.time(), event_id),
        )

    def set_evidence(
        self,
        event_id: int,
        status: str,
        *,
        clip: str | None = None,
        snapshot: str | None = None,
        error: str | None = None,
    ) -> None:
        self._change(
            event_id,
            "UPDATE events SET evidence = ?, clip = COALESCE(?, clip), "
            "snapshot = COALESCE(?, snapshot), evidence_error = ? WHERE id = ?",
            (status, clip, snapshot, error, event_id),
        )

    def evidence_pruned(self, relative_paths: Sequence[str]) -> None:
        """Mark the events whose clip or snapshot was deleted by retention."""
        with self._lock:
            for path in relative_paths:
                self._db.execute(
                    "UPDATE events SET evidence = 'pruned' WHERE clip = ? OR snapshot = ?",
                    (path, path),
                )

    def pending_evidence(self) -> list[int]:
        """Events whose evidence was still being recorded (a crash interrupted it)."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM events WHERE evidence = 'pending'").fetchall()
        return [int(row[0]) for row in rows]

    # -- the outbox ----------------------------------------------------------------------

    def due(
        self,
        now: float | None = None,
        limit: int = 50,
        *,
        sink: str | None = None,
        ordered: bool = False,
    ) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, oldest first (of ``sink`` when
        given). ``ordered``: the pending deliveries of ``sink`` in order, up to the first
        one that is not due yet (a sink whose messages must arrive in order)."""
        now = time.time() if now is None else now
        where, values = "status = 'pending'", []
        if sink is not None:
            where += " AND sink = ?"
            values.append(sink)
        if not ordered:
            where += " AND next_attempt <= ?"
            values.append(now)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, event_id, sink, payload, attempts, next_attempt FROM outbox "
                f"WHERE {where} ORDER BY id LIMIT ?",
                (*values, limit),
            ).fetchall()
        due = []
        for row in rows:
            if row[5] > now:  # ordered: what follows waits for this one
                break
            due.append(Delivery(*row[:5]))
        return due

    def next_due(self, *, sink: str | None = None, ordered: bool = False) -> float | None:
        """When the next pending delivery (of ``sink``) is due (None: none pending);
        ``ordered``: when the oldest pending one is."""
        where, values = "status = 'pending'", []
        if sink is not None:
            where += " AND sink = ?"
            values.append(sink)
        column = "next_attempt" if ordered else "MIN(next_attempt)"
        with self._lock:
            row = self._db.execute(
                f"SELECT {column} FROM outbox WHERE {where} ORDER BY id LIMIT 1", values
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def retry_now(self, sink: str) -> int:
        """Make every pending delivery of ``sink`` due now (its destination is back);
        returns how many."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE outbox SET next_attempt = ? WHERE status = 'pending' AND sink = ?",
                (time.time(), sink),
            )
            return int(cursor.rowcount)

    def delivered(self, delivery_id: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET status = 'sent', delivered = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                (time.time(), delivery_id),
            )

    def attempt_failed(self, delivery_id: int, error: str, retry_at: float | None) -> None:
        """One failed attempt: retried at ``retry_at``, or failed for good (None)."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                "status = CASE WHEN ? IS NULL THEN 'failed' ELSE 'pending' END, "
                "next_attempt = COALESCE(?, next_attempt) WHERE id = ?",
                (error, retry_at, retry_at, delivery_id),
            )

    def outbox_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status")
            return {str(status): int(count) for status, count in rows.fetchall()}

    def deliveries(self, event_id: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT sink, status, attempts, last_error, delivered FROM outbox "
                "WHERE event_id = ? ORDER BY id",
                (event_id,),
            ).fetchall()
        return [dict(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _event(row: sqlite3.Row) -> dict[str, Any]:
    event = {key: row[key] for key in EVENT_COLUMNS}
    event["acknowledged"] = bool(event["acknowledged"])
    return event
