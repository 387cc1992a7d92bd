"""A real MQTT broker for the tests (Debian's ``mosquitto``, on a free loopback port, anonymous
access from localhost only) and a subscriber that records what it receives."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """``mosquitto`` on ``port`` (a free one), started and stopped at will, same port."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.config = Path(folder) / f"mosquitto-{self.port}.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            # sessions (a subscriber's queue) survive a restart of the broker
            f"persistence true\npersistence_location {Path(folder).resolve()}/\n"
            f"persistence_file mosquitto-{self.port}.db\n"
        )
        self.log = Path(folder) / f"mosquitto-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> Broker:
        assert MOSQUITTO is not None
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-500:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


class Subscriber:
    """A paho client subscribed to ``topic`` that records ``(topic, payload, retain)``; its
    session is persistent and it reconnects, so what is published while it is away (the
    broker restarting) is kept for it."""

    def __init__(self, port: int, topic: str = "rsanet/#", name: str = "sub") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[SimpleNamespace] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{name}-{port}", clean_session=False
        )
        client.reconnect_delay_set(min_delay=1, max_delay=1)
        client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda *args: self._subscribed.set()
        client.on_message = self._message
        client.connect("127.0.0.1", port)
        client.loop_start()
        self.client = client
        if not self._subscribed.wait(10):
            raise RuntimeError("the test subscriber could not subscribe")

    def _message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(
                SimpleNamespace(
                    topic=message.topic,
                    payload=message.payload.decode(),
                    retain=bool(message.retain),
                )
            )

    def on(self, topic: str) -> list[SimpleNamespace]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def events(self, topic: str = "rsanet/events") -> list[dict]:
        return [json.loads(m.payload) for m in self.on(topic)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
