"""The MQTT output against a real broker (mosquitto, started by the tests): an event's
``new``, ``update`` and ``end`` arrive in order with their payloads; ``rsanet/available``
says ``online``, then ``offline`` on a clean stop and as the last will when the process
dies; messages of an alert made while the broker is down stay pending in the store and are
delivered once it is up, a restart of the store included. And the messages' lifecycle and
the ``mqtt`` block of the configuration, without a broker."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import rsanet
from rsanet.inference.stream import Backoff
from rsanet.serve.config import ConfigError, MqttConfig, ServeConfig, StorageConfig, parse_mqtt
from rsanet.serve.delivery import OutboxWorker
from rsanet.serve.mqtt import MQTT, MqttPublisher, event_message, event_messages
from rsanet.serve.store import EventStore
from support.mqtt import MOSQUITTO, Broker, Subscriber, free_port
from support.serve import wait_for

FAST = Backoff(initial=0.05, maximum=0.2)
needs_broker = pytest.mark.skipif(
    MOSQUITTO is None,
    reason="the mosquitto broker is not installed (apt-get install -y mosquitto; .ci/run does)",
)


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path)
    yield broker
    broker.stop()


@pytest.fixture
def subscriber():
    made = []

    def subscribe(port: int) -> Subscriber:
        made.append(Subscriber(port, name=f"sub{len(made)}"))
        return made[-1]

    yield subscribe
    for sub in made:
        sub.close()


class Output:
    """The MQTT output of a server, without the server: store, publisher, worker."""

    def __init__(self, database: Path, port: int, client_id: str = "rsanet-test") -> None:
        self.store = EventStore(database, messages=event_messages)
        self.publisher = MqttPublisher(
            MqttConfig(host="127.0.0.1", port=port, client_id=client_id),
            timeout=5.0,
            on_connect=self._connected,
        )
        self.worker = OutboxWorker(
            self.store, self.publisher, sink=MQTT, retries=None, ordered=True, backoff=FAST,
            display=self.publisher.display, flush_timeout=2.0,
        )  # fmt: skip

    def _connected(self) -> None:
        self.store.retry_now(MQTT)
        self.worker.wake()

    def start(self) -> Output:
        self.publisher.start()
        self.worker.start()
        return self

    def alert(self, camera: str = "door") -> dict:
        event = self.store.add_event(
            camera=camera, label="fighting", score=0.93, threshold=0.5, start=98.0, end=100.0
        )
        self.worker.wake()
        return event

    def close(self) -> None:
        self.worker.stop()
        self.publisher.stop()
        self.store.close()


def outbox(database: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT sink, status, payload FROM outbox ORDER BY id").fetchall()
    return [(sink, status, json.loads(payload).get("type")) for sink, status, payload in rows]


# -- without a broker ----------------------------------------------------------------------


def test_the_lifecycle_of_the_messages():
    event = {
        "id": 7, "camera": "door", "label": "fighting", "score": 0.9, "threshold": 0.5,
        "start": 1.0, "end": 3.0, "acknowledged": False, "acknowledged_at": None,
        "evidence": "pending", "evidence_error": None, "clip": None, "snapshot": None,
    }  # fmt: skip
    new = event_message(None, event)
    assert new["type"] == "new" and new["before"] == new["after"]
    assert new["after"]["id"] == 7 and not new["after"]["has_clip"]
    ready = {**event, "evidence": "ready", "clip": "evidence/door/x/7.mp4", "snapshot": "s.jpg"}
    update = event_message(event, ready)
    assert update["type"] == "update" and update["before"]["evidence"] == "pending"
    assert update["after"]["has_clip"] and update["after"]["clip"] == "evidence/door/x/7.mp4"
    acked = {**ready, "acknowledged": True, "acknowledged_at": 5.0}
    assert event_message(ready, acked)["type"] == "end"
    assert event_message(acked, {**acked, "evidence": "pruned"}) is None  # ended: silent
    # acknowledged while the evidence is still recorded: update, then end when it is written
    early = {**event, "acknowledged": True, "acknowledged_at": 2.0}
    assert event_message(event, early)["type"] == "update"
    assert event_message(early, {**early, "evidence": "missing"})["type"] == "end"


def test_the_store_spools_a_message_with_each_change(tmp_path):
    database = tmp_path / "events.sqlite3"
    store = EventStore(database, messages=event_messages)
    event = store.add_event(
        camera="door", label="fighting", score=0.9, threshold=0.5, start=1.0, end=3.0,
        sinks=["webhook"], payload={"camera": "door"},
    )  # fmt: skip
    store.set_evidence(event["id"], "ready", clip="c.mp4", snapshot="s.jpg")
    store.acknowledge(event["id"])
    store.acknowledge(event["id"])  # nothing changed: no message
    assert [(s, t) for s, _, t in outbox(database) if s == MQTT] == [
        (MQTT, "new"), (MQTT, "update"), (MQTT, "end"),
    ]  # fmt: skip
    # the webhook's own queue does not see the MQTT rows, nor wait for them
    assert [d.sink for d in store.due(sink="webhook")] == ["webhook"]
    assert [d.sink for d in store.due(sink=MQTT, ordered=True)] == [MQTT] * 3
    store.close()


def test_the_mqtt_block_of_the_configuration():
    config = parse_mqtt({"host": "broker.lan", "username": "cam", "password": "hunter2-secret"})
    assert (config.port, config.topic_prefix, config.qos, config.tls) == (1883, "rsanet", 1, False)
    assert "hunter2" not in repr(config) and "hunter2" not in config.display
    assert parse_mqtt({"host": "b", "tls": True}).port == 8883
    serve = ServeConfig(Path("m.pt"), [], StorageConfig(Path("d")), mqtt=config)
    assert "hunter2" not in repr(serve)
    for bad, field in (
        ({"host": "b", "qos": 0}, "mqtt: qos"),
        ({"host": "b", "topic_prefix": "home/#"}, "mqtt: topic_prefix"),
        ({"host": "b", "topic_prefix": "a//b"}, "mqtt: topic_prefix"),
        ({"host": "b", "password": "x"}, "mqtt: password"),
        ({"port": 1883}, "mqtt: host"),
        ({"host": "b", "qos": True}, "mqtt: qos"),
        ({"host": "b", "retain": True}, "mqtt: retain"),
    ):
        with pytest.raises(ConfigError, match=field):
            parse_mqtt(bad)


def test_a_publisher_without_a_broker_says_why_and_never_shows_the_password():
    config = MqttConfig(host="127.0.0.1", port=free_port(), username="u", password="s3cr3t-pw")
    publisher = MqttPublisher(config)
    reason, retry = publisher(b"{}")
    assert retry and "not connected" in reason and "s3cr3t" not in reason
    assert "s3cr3t" not in publisher.display


# -- against mosquitto ---------------------------------------------------------------------


@needs_broker
def test_new_update_end_arrive_in_order_with_their_payloads(tmp_path, broker, subscriber):
    broker.start()
    sub = subscriber(broker.port)
    output = Output(tmp_path / "events.sqlite3", broker.port).start()
    try:
        assert wait_for(lambda: [m.payload for m in sub.on("rsanet/available")] == ["online"])
        event = output.alert()
        output.store.set_evidence(event["id"], "ready", clip="evidence/door/d/1.mp4",
                                  snapshot="evidence/door/d/1.jpg")  # fmt: skip
        output.worker.wake()
        output.store.acknowledge(event["id"])
        output.worker.wake()
        assert wait_for(lambda: len(sub.events()) == 3)
    finally:
        output.close()
    new, update, end = sub.events()
    assert [new["type"], update["type"], end["type"]] == ["new", "update", "end"]
    assert new["after"]["id"] == event["id"] and new["after"]["camera"] == "door"
    assert new["after"]["label"] == "fighting" and new["after"]["score"] == pytest.approx(0.93)
    assert (new["after"]["start"], new["after"]["end"]) == (98.0, 100.0)
    assert new["after"]["evidence"] == "pending" and not new["after"]["has_clip"]
    assert update["before"]["evidence"] == "pending" and update["after"]["evidence"] == "ready"
    assert update["after"]["clip"] == "evidence/door/d/1.mp4" and update["after"]["has_snapshot"]
    assert end["after"]["acknowledged"] and not end["before"]["acknowledged"]
    assert {status for _, status, _ in outbox(tmp_path / "events.sqlite3")} == {"sent"}
    # a clean stop: offline, retained (a late subscriber still reads it)
    assert wait_for(lambda: [m.payload for m in sub.on("rsanet/available")][-1:] == ["offline"])
    late = subscriber(broker.port)
    assert wait_for(lambda: late.on("rsanet/available"))
    assert [(m.payload, m.retain) for m in late.on("rsanet/available")] == [("offline", True)]


WILL_SCRIPT = """
import sys, time
from rsanet.serve.config import MqttConfig
from rsanet.serve.mqtt import MqttPublisher
publisher = MqttPublisher(MqttConfig(host="127.0.0.1", port=int(sys.argv[1]), client_id="dies"))
publisher.start()
assert publisher.connected.wait(20)
print("connected", flush=True)
time.sleep(120)
"""


@needs_broker
def test_available_is_online_then_the_last_will_says_offline(tmp_path, broker, subscriber):
    broker.start()
    sub = subscriber(broker.port)
    source = str(Path(rsanet.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-c", WILL_SCRIPT, str(broker.port)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdout.readline().strip() == "connected"
        assert wait_for(lambda: [m.payload for m in sub.on("rsanet/available")] == ["online"])
        process.send_signal(signal.SIGKILL)  # no DISCONNECT: the socket just closes
        process.wait(10)
        assert wait_for(
            lambda: [m.payload for m in sub.on("rsanet/available")] == ["online", "offline"], 15
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@needs_broker
def test_an_alert_while_the_broker_is_down_is_delivered_when_it_comes_up(
    tmp_path, broker, subscriber
):
    database = tmp_path / "events.sqlite3"
    broker.start()
    sub = subscriber(broker.port)  # its session outlives the broker's restart
    broker.stop()
    output = Output(database, broker.port).start()
    try:
        event = output.alert()
        output.store.set_evidence(event["id"], "missing", error="disk full")
        assert wait_for(lambda: output.store.deliveries(event["id"])[0]["attempts"] >= 1)
        first = output.store.deliveries(event["id"])[0]
        assert first["status"] == "pending" and "not connected" in first["last_error"]
        assert [status for _, status, _ in outbox(database)] == ["pending", "pending"]
        broker.start()
        assert wait_for(lambda: [status for _, status, _ in outbox(database)] == ["sent"] * 2, 20)
        assert wait_for(lambda: len(sub.events()) == 2, 10)
    finally:
        output.close()
    assert [(m["type"], m["after"]["evidence"]) for m in sub.events()] == [
        ("new", "pending"), ("update", "missing"),
    ]  # fmt: skip


@needs_broker
def test_pending_messages_survive_a_restart(tmp_path, broker, subscriber):
    database = tmp_path / "events.sqlite3"
    # first run: the broker is down the whole time
    first = Output(database, broker.port).start()
    event = first.alert("door")
    first.store.set_evidence(event["id"], "ready", clip="c.mp4", snapshot="s.jpg")
    first.alert("yard")
    assert wait_for(lambda: first.worker.retried >= 1)
    first.close()
    assert [(t, s) for _, s, t in outbox(database)] == [
        ("new", "pending"), ("update", "pending"), ("new", "pending"),
    ]  # fmt: skip
    # the broker is up, the server starts again: everything arrives, in order
    broker.start()
    sub = subscriber(broker.port)
    second = Output(database, broker.port).start()
    try:
        assert wait_for(lambda: len(sub.events()) == 3, 20)
    finally:
        second.close()
    received = [(m["type"], m["after"]["camera"]) for m in sub.events()]
    assert received == [("new", "door"), ("update", "door"), ("new", "yard")]
    assert {s for _, s, _ in outbox(database)} == {"sent"}


@needs_broker
def test_a_server_publishes_its_alerts_lifecycle(tmp_path, broker, subscriber):
    from rsanet.serve.config import CameraConfig
    from rsanet.serve.server import Server
    from support.inference import rules_file
    from support.serve import paced_opener, stub_predictor

    broker.start()
    sub = subscriber(broker.port)
    config = ServeConfig(
        model=tmp_path / "unused.pt",
        cameras=[CameraConfig("door", "rtsp://viewer:pw@10.0.0.5/s")],
        storage=StorageConfig(tmp_path / "data", pre_seconds=0.5, post_seconds=0.5),
        window_seconds=1.0,
        stride_seconds=0.5,
        smoothing=1,
        rules=rules_file(tmp_path, {"fighting": {"threshold": 0.5, "cooldown": 600}}),
        mqtt=MqttConfig(host="127.0.0.1", port=broker.port, client_id="server-test"),
    )
    server = Server(
        config, predictor=stub_predictor(), openers={"door": paced_opener()}, http=False,
        mqtt_backoff=FAST, flush_timeout=3.0,
    )  # fmt: skip
    server.start()
    server.start_loop()
    try:
        assert wait_for(lambda: [e["type"] for e in sub.events()] == ["new", "update"], 40)
        event_id = sub.events()[0]["after"]["id"]
        server.store.acknowledge(event_id)
        assert wait_for(lambda: len(sub.events()) == 3, 10)
    finally:
        server.close()
    new, update, end = sub.events()
    assert new["after"]["camera"] == "door" and new["after"]["label"] == "fighting"
    assert update["after"]["evidence"] == "ready" and update["after"]["has_clip"]
    assert end["type"] == "end" and end["after"]["acknowledged"]
    assert [m.payload for m in sub.on("rsanet/available")] == ["online", "offline"]
    assert server.summary()["mqtt"] == {"sent": 3, "failed": 0}
