"""The MQTT output of ``rsanet serve``: event messages and the server's availability.

Topics (``PREFIX`` is ``topic_prefix``, ``rsanet`` by default):

* ``PREFIX/events``: one JSON message per change of an event, ``{"type", "before",
  "after"}`` where ``before`` and ``after`` are the event as it was and as it is now
  (:func:`event_message`; for ``new`` both are the new event):

  - ``new``: the alert was stored (evidence still ``pending``);
  - ``update``: its evidence was written (``ready`` with the clip and snapshot paths, or
    ``missing`` with the reason), or it was acknowledged while its evidence was pending;
  - ``end``: the last message of an event, once it is both acknowledged and its evidence
    settled (whichever comes second). An alert's detection window is already over when it
    is stored; what stays open is the evidence being recorded and the operator's review,
    so that is what ``end`` closes. An event nobody acknowledges stays open.

* ``PREFIX/available``: ``online`` (retained) when connected; ``offline`` (retained) when
  the server stops, and as the broker's last will when the connection is lost without a
  goodbye (a crash, a pulled cable).

The event messages go through the store's outbox like the webhook: committed to SQLite in
the same transaction as the change they describe, then published at QoS 1 (or 2) by an
:class:`~rsanet.serve.delivery.OutboxWorker` in the order they were stored, and marked
sent only once the broker acknowledged them. While the broker is unreachable they stay
pending (retried with backoff, without limit); when the connection comes back every
pending message is due at once; a restart finds them in the store. Delivery is at least
once: a message whose acknowledgement was lost is sent again, so consumers key on
``(after.id, type)``. The password is never printed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rsanet.inference.redact import one_line, redact_text
from rsanet.serve.config import MqttConfig

logger = logging.getLogger("rsanet.serve")

#: the outbox sink of the MQTT event messages
MQTT = "mqtt"
NEW, UPDATE, END = "new", "update", "end"
ONLINE, OFFLINE = "online", "offline"

#: the fields of an event a message carries
MESSAGE_FIELDS = (
    "id", "camera", "label", "score", "threshold", "start", "end", "acknowledged",
    "acknowledged_at", "evidence", "evidence_error", "clip", "snapshot",
)  # fmt: skip


def message_event(event: dict[str, Any]) -> dict[str, Any]:
    """An event as the messages show it: its fields, and whether clip and snapshot exist
    (their paths are relative to the storage folder; the API serves them at
    ``/api/events/ID/clip`` and ``/snapshot``)."""
    view = {key: event.get(key) for key in MESSAGE_FIELDS}
    ready = event.get("evidence") == "ready"
    view["has_clip"] = bool(ready and event.get("clip"))
    view["has_snapshot"] = bool(ready and event.get("snapshot"))
    return view


def ended(event: dict[str, Any]) -> bool:
    """Acknowledged, and its evidence settled (no longer being recorded)."""
    return bool(event.get("acknowledged")) and event.get("evidence") != "pending"


def event_message(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any] | None:
    """The ``PREFIX/events`` message of a change from ``before`` (None: a new event) to
    ``after``; None when there is nothing to say (the event had ended already)."""
    if before is None:
        kind = NEW
        before = after
    elif ended(before):
        return None
    else:
        kind = END if ended(after) else UPDATE
    return {"type": kind, "before": message_event(before), "after": message_event(after)}


def event_messages(
    before: dict[str, Any] | None, after: dict[str, Any]
) -> Sequence[tuple[str, dict[str, Any]]]:
    """:data:`rsanet.serve.store.Messages` for the MQTT sink."""
    message = event_message(before, after)
    return [] if message is None else [(MQTT, message)]


class MqttPublisher:
    """A paho-mqtt client of the broker of ``config``, connected in the background
    (reconnecting with backoff), that announces ``PREFIX/available`` and whose
    :meth:`__call__` publishes one event message as an outbox worker expects: None once
    the broker acknowledged it, else ``(reason, retry)``.

    ``on_connect`` is called (in paho's thread) after each successful connection."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        timeout: float = 10.0,
        keepalive: int = 30,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as error:
            raise ImportError(
                "the mqtt output needs paho-mqtt: pip install 'rsanet[serve]'"
            ) from error
        self._mqtt = mqtt
        self.config = config
        self.timeout, self.keepalive = float(timeout), int(keepalive)
        self.on_connect = on_connect
        self.display = f"mqtt {config.display}"
        self.events_topic = f"{config.topic_prefix}/events"
        self.available_topic = f"{config.topic_prefix}/available"
        self.connected = threading.Event()
        self.last_error: str | None = "not connected yet"
        self.connections = 0
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set()
        client.will_set(self.available_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        self.client = client
        self._started = False

    def start(self) -> None:
        """Connect in the background (a broker that is down is retried)."""
        self._started = True
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.keepalive)
        self.client.loop_start()

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"the broker refused the connection: {reason_code}"
            logger.warning("%s: %s", self.display, self.last_error)
            return
        self.connections += 1
        self.last_error = None
        self.connected.set()
        client.publish(self.available_topic, ONLINE, qos=1, retain=True)
        logger.info("%s: connected", self.display)
        if self.on_connect is not None:
            try:
                self.on_connect()
            except Exception as error:
                logger.warning("%s: %s", self.display, one_line(error))

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if reason_code.is_failure or reason_code.value != 0:
            self.last_error = f"connection lost ({reason_code})"
            if was:
                logger.warning("%s: %s; reconnecting", self.display, self.last_error)

    def __call__(self, body: bytes) -> tuple[str, bool] | None:
        if not self.connected.is_set():
            return redact_text(f"not connected: {self.last_error or 'connecting'}"), True
        try:
            info = self.client.publish(self.events_topic, body, qos=self.config.qos)
            if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
                return redact_text(self._mqtt.error_string(info.rc)), True
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError, OSError) as error:
            return redact_text(one_line(error)), True
        if not info.is_published():
            return f"no acknowledgement from the broker within {self.timeout:g} s", True
        return None

    def stop(self, timeout: float = 2.0) -> None:
        """Say ``offline`` (retained), disconnect cleanly (the last will is not sent then),
        stop the network thread."""
        if not self._started:
            return
        self._started = False
        if self.connected.is_set():
            try:
                info = self.client.publish(self.available_topic, OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError, OSError) as error:
                logger.info("%s: offline not published: %s", self.display, one_line(error))
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
