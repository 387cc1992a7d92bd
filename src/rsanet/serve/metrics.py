"""Prometheus metrics of ``rsanet serve`` (``/metrics``), in a registry of their own (one per
server, so that tests can run several): per camera frame rate, frames dropped, window
latency, outages and state; alerts per camera and class; deliveries and evidence."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from rsanet.serve.cameras import Camera

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("starting", "live", "outage", "unreachable", "ended")


class _CameraCollector:
    """Reads the cameras' own counters at scrape time."""

    def __init__(self, cameras: Callable[[], Iterable[Camera]], outbox: Callable[[], dict]):
        self.cameras, self.outbox = cameras, outbox

    def collect(self) -> Iterable[Any]:
        fps = GaugeMetricFamily(
            "rsanet_camera_fps", "Frames per second received", labels=["camera"]
        )
        frames = CounterMetricFamily("rsanet_camera_frames", "Frames received", labels=["camera"])
        dropped = CounterMetricFamily(
            "rsanet_camera_dropped_frames", "Frames dropped by a full buffer", labels=["camera"]
        )
        skipped = CounterMetricFamily(
            "rsanet_camera_skipped_windows", "Windows skipped (the loop was behind)",
            labels=["camera"],
        )  # fmt: skip
        outages = CounterMetricFamily(
            "rsanet_camera_outages", "Outages (lost or unreachable stream)", labels=["camera"]
        )
        up = GaugeMetricFamily(
            "rsanet_camera_state", "1 for the camera's current state", labels=["camera", "state"]
        )
        for camera in self.cameras():
            fps.add_metric([camera.name], camera.fps)
            frames.add_metric([camera.name], camera.frames_received)
            dropped.add_metric([camera.name], camera.dropped)
            skipped.add_metric([camera.name], camera.skipped)
            outages.add_metric([camera.name], len(camera.outages))
            for state in STATES:
                up.add_metric([camera.name, state], float(camera.status == state))
        pending = GaugeMetricFamily(
            "rsanet_outbox_deliveries", "Deliveries in the outbox by status", labels=["status"]
        )
        for status, count in sorted(self.outbox().items()):
            pending.add_metric([status], count)
        yield from (fps, frames, dropped, skipped, outages, up, pending)


class ServeMetrics:
    """The registry and the metrics the server updates as things happen."""

    def __init__(
        self,
        cameras: Callable[[], Iterable[Camera]],
        outbox: Callable[[], dict] = dict,
    ) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "rsanet_window_latency_seconds",
            "From a window's last frame to its scores",
            ["camera"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.batch = Histogram(
            "rsanet_batch_size",
            "Windows per batched forward",
            buckets=(1, 2, 4, 8, 16, 32),
            registry=self.registry,
        )
        self.alerts = Counter(
            "rsanet_alerts", "Alerts fired", ["camera", "label"], registry=self.registry
        )
        self.evidence = Counter(
            "rsanet_evidence", "Evidence settled, by status", ["status"], registry=self.registry
        )
        self.registry.register(_CameraCollector(cameras, outbox))

    def render(self) -> bytes:
        return generate_latest(self.registry)
