"""``rsanet serve``: many cameras in one process.

::

    camera readers (one thread each, bounded rings, reconnection)
        -> inference loop (due windows of all cameras, batched forwards: a few windows
           each on a CPU, all on a GPU; per camera: smoothing, alert rules)
        -> store (SQLite, WAL, synced: the event and its pending deliveries, first)
        -> evidence recorder (clip + snapshot, its own thread), outbox workers (webhook,
           MQTT; retries), live stream (SSE), metrics
    HTTP API + dashboard (uvicorn, one thread)

SIGINT / SIGTERM stop the loop between windows (an alert is stored and handed to its sinks
whole, :class:`~rsanet.inference.monitor.StopSignals`), then everything is flushed: open
evidence recordings end with the frames they have and are written, the due deliveries get
``flush_timeout`` seconds (what is left stays in the outbox for the next start), the
database is closed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from rsanet.engine.calibration import checkpoint_calibration
from rsanet.inference.alerts import AlertEvent, check_rules, load_rules
from rsanet.inference.monitor import StopSignals
from rsanet.inference.precision import PrecisionError
from rsanet.inference.predictor import Predictor
from rsanet.inference.redact import one_line, redact_text
from rsanet.inference.results import WindowResult
from rsanet.inference.stream import Backoff, Opener
from rsanet.serve.batching import DeviceBackend, InferenceLoop, default_max_batch
from rsanet.serve.cameras import Camera
from rsanet.serve.config import ConfigError, ServeConfig
from rsanet.serve.delivery import WEBHOOK, OutboxWorker, WebhookPoster
from rsanet.serve.evidence import EvidenceRecorder, mark_interrupted
from rsanet.serve.metrics import ServeMetrics
from rsanet.serve.mqtt import MQTT, MqttPublisher, event_messages
from rsanet.serve.store import EventStore
from rsanet.serve.web import Broadcaster, WebServer, check_bind, create_app, event_view

logger = logging.getLogger("rsanet.serve")

DATABASE = "events.sqlite3"


def resolve_device(device: str) -> str:
    """``device`` when this machine has it; ConfigError (one line) otherwise."""
    if device == "cpu":
        return device
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            f"device: {device} was asked but PyTorch sees no CUDA GPU on this machine "
            "(torch.cuda.is_available() is False); use --device cpu"
        )
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"device: {device} does not exist: this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def build_predictor(config: ServeConfig) -> Predictor:
    """The model of the configuration on its device in its precision (PyTorch), or in ONNX
    Runtime (on the CPU, or a GPU through its TensorRT or CUDA provider)."""
    options = {"top_k": config.top_k, "smoothing": config.smoothing}
    if config.backend == "onnxruntime":
        try:
            return Predictor.from_onnx(config.model, device=config.device, **options)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    device = resolve_device(config.device)
    try:  # the precision is resolved (with its fallback notice) where the model is prepared
        predictor = Predictor.from_checkpoint(
            config.model,
            precision=config.precision,
            device=device,
            calibration=checkpoint_calibration(config.calibration, config.calibration_clips),
            float_from=config.float_from,
            **options,
        )
    except PrecisionError as error:
        raise ConfigError(f"{error.field}: {error}") from None
    if device != "cpu":
        predictor.backend = DeviceBackend(predictor.backend.model, device)
    return predictor


def with_rescorer(predictor: Predictor, config: ServeConfig) -> Predictor:
    """``predictor`` with the configuration's rescorer in use (one stream per camera). The
    file is read again here: one replaced since the configuration took its window, stride
    and smoothing from it is refused rather than run on a stream it was not fitted on."""
    if config.rescorer is not None:
        from rsanet.inference.rescorer import Rescorer

        try:
            rescorer = Rescorer.load(config.rescorer)
        except ValueError as error:
            raise ConfigError(f"rescorer: {error}") from None
        differs = rescorer.mismatch(
            window_s=config.window_seconds,
            stride_s=config.stride_seconds,
            smoothing=config.smoothing,
        )
        if differs is not None:
            name, value, own = differs
            raise ConfigError(
                f"rescorer: {config.rescorer} changed after the configuration was read (it "
                f"was fitted with {name} {own:g}, the cameras run {value:g}): start again"
            )
        try:
            predictor.use_rescorer(rescorer)
        except ValueError as error:
            raise ConfigError(f"rescorer: {error}") from None
    return predictor


class Server:
    """Everything ``rsanet serve`` runs, built from a :class:`ServeConfig`.

    Args:
        config: the configuration (``http.port`` 0 picks a free port).
        predictor: the model (default: :func:`build_predictor`).
        openers: per camera name, how to open it (tests); default PyAV on the URL.
        http: serve the API and dashboard (False: no web server, e.g. in tests).
        webhook_backoff: delays between webhook retries.
        mqtt_backoff: delays between MQTT retries (the broker coming back makes every
            pending message due at once anyway).
        flush_timeout: seconds the pending deliveries get at shutdown.
    """

    def __init__(
        self,
        config: ServeConfig,
        *,
        predictor: Predictor | None = None,
        openers: Mapping[str, Opener] | None = None,
        http: bool = True,
        webhook_backoff: Backoff | None = None,
        mqtt_backoff: Backoff | None = None,
        camera_backoff: Backoff | None = None,
        flush_timeout: float = 10.0,
    ) -> None:
        check_bind(config.http.host, config.http.token)
        self.config = config
        self.predictor = with_rescorer(predictor or build_predictor(config), config)
        self.rules = {}
        for camera in config.cameras:
            path = config.rules_of(camera)
            if path is not None and path not in self.rules:
                rules = load_rules(path)
                check_rules(rules, self.predictor.classes, str(path))
                self.rules[path] = rules
        storage = config.storage
        storage.folder.mkdir(parents=True, exist_ok=True)
        self.store = EventStore(storage.folder / DATABASE)
        if config.mqtt is not None:  # every change of an event spools its MQTT message
            self.store.messages = event_messages
        mark_interrupted(self.store)
        self.broadcaster = Broadcaster()
        self.cameras: list[Camera] = []
        self.metrics = ServeMetrics(lambda: self.cameras, self.store.outbox_counts)
        self.evidence = EvidenceRecorder(
            storage.folder,
            self.store,
            pre=storage.pre_seconds,
            post=storage.post_seconds,
            buffer_seconds=storage.pre_seconds + config.window_seconds + 1.0,
            retention_days=storage.retention_days,
            max_total_mb=storage.max_total_mb,
            on_ready=self._evidence_ready,
        )
        for camera in config.cameras:
            path = config.rules_of(camera)
            self.cameras.append(
                Camera(
                    camera,
                    self.predictor,
                    window=config.window_seconds,
                    stride=config.stride_seconds,
                    rules=self.rules.get(path) if path is not None else None,
                    opener=(openers or {}).get(camera.name),
                    backoff=camera_backoff or Backoff(initial=1.0, maximum=30.0),
                    on_frame=self._on_frame,
                )
            )
        self.loop = InferenceLoop(
            self.predictor,
            self.cameras,
            on_result=self._on_result,
            on_forward=self.metrics.batch.observe,
            max_batch=config.max_batch or default_max_batch(config.device),
        )
        self.worker: OutboxWorker | None = None
        if config.webhook is not None:
            hook = config.webhook
            self.worker = OutboxWorker(
                self.store,
                WebhookPoster(hook.url, auth=hook.auth, timeout=hook.timeout),
                retries=hook.retries,
                backoff=webhook_backoff,
                display=f"webhook {hook.display_url}",
                flush_timeout=flush_timeout,
            )
        self.mqtt: MqttPublisher | None = None
        self.mqtt_worker: OutboxWorker | None = None
        if config.mqtt is not None:
            self.mqtt = MqttPublisher(config.mqtt, on_connect=self._mqtt_connected)
            self.mqtt_worker = OutboxWorker(
                self.store,
                self.mqtt,
                sink=MQTT,
                retries=None,
                ordered=True,
                backoff=mqtt_backoff or Backoff(initial=1.0, maximum=60.0),
                display=self.mqtt.display,
                flush_timeout=flush_timeout,
            )
        self.closing = threading.Event()
        self.web: WebServer | None = None
        if http:
            app = create_app(
                store=self.store,
                storage=storage.folder,
                cameras=lambda: self.cameras,
                metrics=self.metrics,
                broadcaster=self.broadcaster,
                token=config.http.token,
                closing=self.closing,
            )
            self.web = WebServer(app, config.http.host, config.http.port)
        self.stop_signals: StopSignals | None = None
        self.alerts = 0
        self._started = False
        self.warm_up_ms: float | None = None
        self._closed = False

    # -- the loop's callbacks ------------------------------------------------------------

    def _on_frame(self, camera: Camera, frame: Any) -> None:
        self.evidence.add_frame(camera.name, frame.arrival, frame.image)

    def _critical(self):
        return self.stop_signals.critical() if self.stop_signals else contextlib.nullcontext()

    def _on_result(self, camera: Camera, result: WindowResult) -> None:
        self.metrics.latency.labels(camera.name).observe(result.latency_ms / 1e3)
        self.broadcaster.publish(
            "scores",
            {
                "camera": camera.name,
                "status": camera.status,
                "end": round(result.end, 3),
                "top": [{"label": k, "score": round(v, 4)} for k, v in result.top],
            },
        )
        if camera.alerts is None:
            return
        with self._critical():  # an alert is stored and handed to its sinks whole
            for event in camera.alerts.update(result):
                self._alert(camera, event)

    def _alert(self, camera: Camera, event: AlertEvent) -> None:
        frame = camera.latest_frame
        now_wall, now_mono = time.time(), time.monotonic()
        last_arrival = frame.arrival if frame is not None else now_mono
        last_time = frame.time if frame is not None else event.time

        def wall(stream_time: float) -> float:
            return now_wall - (now_mono - last_arrival) - (last_time - stream_time)

        start, end = wall(event.start), wall(event.time)
        payload = {
            "type": "alert",
            "camera": camera.name,
            "label": event.label,
            "score": round(event.score, 6),
            "threshold": event.threshold,
            "start": round(start, 3),
            "end": round(end, 3),
            "wall_time": event.wall_time,
        }
        sinks = [WEBHOOK] if self.worker is not None else []
        try:
            stored = self.store.add_event(
                camera=camera.name,
                label=event.label,
                score=event.score,
                threshold=event.threshold,
                start=start,
                end=end,
                sinks=sinks,
                payload=payload,
            )
        except Exception as error:  # the database failed: announce it anyway, loudly
            logger.error(
                "ALERT %s on %s NOT STORED (%s)", event.label, camera.name, one_line(error)
            )
            self.broadcaster.publish("alert", {**payload, "id": None, "stored": False})
            return
        self.alerts += 1
        moment = last_arrival - (last_time - event.time)
        self.evidence.start(stored["id"], camera.name, moment)
        for worker in (self.worker, self.mqtt_worker):
            if worker is not None:
                worker.wake()
        self.metrics.alerts.labels(camera.name, event.label).inc()
        self.broadcaster.publish("alert", event_view(stored))
        logger.warning(
            "ALERT %s on %s score %.2f >= %g (event %d)",
            event.label, camera.name, event.score, event.threshold, stored["id"],
        )  # fmt: skip

    def _mqtt_connected(self) -> None:
        """The broker is (back) up: what is pending for it is due now."""
        self.store.retry_now(MQTT)
        if self.mqtt_worker is not None:
            self.mqtt_worker.wake()

    def _evidence_ready(self, event_id: int, status: str) -> None:
        self.metrics.evidence.labels(status).inc()
        if self.mqtt_worker is not None:
            self.mqtt_worker.wake()
        self.broadcaster.publish("evidence", {"id": event_id, "evidence": status})

    # -- start and stop ------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        if self.web is None:
            return None
        return f"http://{self.web.host}:{self.web.port}/"

    def start(self) -> None:
        """Warm the model up, then start the delivery worker, the web server and the camera
        readers (the inference loop runs in :meth:`run`, or in a thread with
        :meth:`start_loop`)."""
        self._started = True
        # The first forward pays for lazy set-up (seconds on a CPU, more for int8's ONNX
        # Runtime sessions). Paid here, before any camera opens, it delays no window and
        # no camera's first frames are dropped waiting for it.
        self.warm_up_ms = self.predictor.warm_up()
        self.evidence.prune()
        if self.worker is not None:
            self.worker.start()
        if self.mqtt is not None:
            self.mqtt.start()
            self.mqtt_worker.start()
        if self.web is not None:
            self.web.start()
        for camera in self.cameras:
            camera.start()

    def start_loop(self) -> threading.Thread:
        thread = threading.Thread(target=self.loop.run, name="rsanet-inference", daemon=True)
        thread.start()
        self._loop_thread = thread
        return thread

    def run(
        self, *, duration: float | None = None, on_started: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Start, run the inference loop here until SIGINT/SIGTERM (or ``duration``
        seconds), then :meth:`close`; returns :meth:`summary`."""
        signals = StopSignals()
        self.stop_signals = signals
        with signals:
            try:
                self.start()
                if on_started is not None:
                    on_started()
                if duration is not None:
                    timer = threading.Timer(duration, self.loop.stop)
                    timer.daemon = True
                    timer.start()
                self.loop.run()
            except KeyboardInterrupt as interrupt:
                signals.received = signals.received or getattr(interrupt, "name", "SIGINT")
            finally:
                signals.defer()  # a second signal must not cut the flushing short
                self.close()
        summary = self.summary()
        summary["signal"] = signals.received
        return summary

    def stop(self) -> None:
        """Ask the inference loop to stop (from another thread)."""
        self.loop.stop()

    def close(self) -> None:
        """Stop everything and flush; closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        self.loop.stop()
        thread = getattr(self, "_loop_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        self.closing.set()
        for camera in self.cameras:
            camera.stop()
        self.evidence.close()
        for worker in (self.worker, self.mqtt_worker):
            if worker is not None and worker.is_alive():
                worker.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.web is not None and self._started:
            self.web.stop()
        self.store.close()

    def summary(self) -> dict[str, Any]:
        return {
            "cameras": [
                {
                    "name": c.name,
                    "status": c.status,
                    "frames": c.frames_received,
                    "windows": c.windows,
                    "dropped_frames": c.dropped,
                    "outages": len(c.outages),
                }
                for c in self.cameras
            ],
            "alerts": self.alerts,
            "forwards": self.loop.forwards,
            "warm_up_ms": self.warm_up_ms,
            "evidence": {"written": self.evidence.written, "missing": self.evidence.missing},
            "webhook": (
                {"sent": self.worker.sent, "failed": self.worker.failed}
                if self.worker is not None
                else None
            ),
            "mqtt": (
                {"sent": self.mqtt_worker.sent, "failed": self.mqtt_worker.failed}
                if self.mqtt_worker is not None
                else None
            ),
        }


def describe_summary(summary: dict[str, Any]) -> str:
    """The summary printed at exit, one line per camera."""
    lines = []
    for camera in summary["cameras"]:
        lines.append(
            redact_text(
                f"{camera['name']}: {camera['status']}, {camera['frames']} frames, "
                f"{camera['windows']} windows, {camera['dropped_frames']} dropped, "
                f"{camera['outages']} outage(s)"
            )
        )
    hook, mqtt = summary.get("webhook"), summary.get("mqtt")
    lines.append(
        f"{summary['alerts']} alert(s), {summary['forwards']} batched forward(s), evidence "
        f"{summary['evidence']['written']} written / {summary['evidence']['missing']} missing"
        + (f", webhook {hook['sent']} sent / {hook['failed']} failed" if hook else "")
        + (f", mqtt {mqtt['sent']} sent" if mqtt else "")
        + (f" (stopped by {summary['signal']})" if summary.get("signal") else "")
    )
    return "\n".join(lines)
