"""The HTTP API: cameras without credentials, events filtered and acknowledged (the ack is
in the store, so a new app on the same file sees it), evidence served, live MJPEG and
Server-Sent Events, metrics; with a token every request but /healthz needs it, and a
non-loopback address is refused without one."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from rsanet.serve.cameras import Camera
from rsanet.serve.config import CameraConfig, ConfigError
from rsanet.serve.delivery import WEBHOOK
from rsanet.serve.evidence import write_snapshot
from rsanet.serve.metrics import ServeMetrics
from rsanet.serve.store import EventStore
from rsanet.serve.web import Broadcaster, check_bind, create_app
from support.serve import frames, stub_predictor

TOKEN = "correct-horse-battery"


@pytest.fixture
def cameras():
    predictor = stub_predictor()
    door = Camera(
        CameraConfig("door", "rtsp://viewer:s3cret@10.0.0.5/s?token=abc"), predictor,
        window=1.0, stride=0.5, opener=lambda: iter(()),
    )  # fmt: skip
    door.latest_frame = frames(1)[0]
    yard = Camera(
        CameraConfig("yard", "rtsp://10.0.0.6/s"), predictor, window=1.0, stride=0.5,
        opener=lambda: iter(()),
    )  # fmt: skip
    return [door, yard]


@pytest.fixture
def store(tmp_path):
    store = EventStore(tmp_path / "events.sqlite3")
    for camera, label, end in (("door", "fighting", 100.0), ("yard", "falling", 200.0)):
        store.add_event(
            camera=camera, label=label, score=0.9, threshold=0.5, start=end - 2, end=end,
            sinks=[WEBHOOK], payload={},
        )  # fmt: skip
    yield store
    store.close()


def client(store, tmp_path, cameras=(), token=None, **options) -> TestClient:
    app = create_app(store=store, storage=tmp_path, cameras=cameras, token=token, **options)
    return TestClient(app)


def test_cameras_are_listed_without_credentials(store, tmp_path, cameras):
    answer = client(store, tmp_path, cameras).get("/api/cameras")
    assert answer.status_code == 200
    door, yard = answer.json()
    assert door["name"] == "door" and door["status"] == "starting" and door["outage"] is None
    assert door["url"] == "rtsp://viewer:***@10.0.0.5/s?token=***"
    assert "s3cret" not in answer.text and "abc" not in answer.text
    assert yard["top"] == [] and yard["fps"] == 0.0


def test_events_filtered_by_camera_class_and_time(store, tmp_path):
    api = client(store, tmp_path)
    assert [e["id"] for e in api.get("/api/events").json()] == [2, 1]
    assert [e["id"] for e in api.get("/api/events?camera=door").json()] == [1]
    assert [e["id"] for e in api.get("/api/events?label=falling").json()] == [2]
    assert [e["id"] for e in api.get("/api/events?since=150").json()] == [2]
    assert [e["id"] for e in api.get("/api/events?until=1970-01-01T00:02:00Z").json()] == [1]
    assert api.get("/api/events?since=yesterday").status_code == 422
    assert api.get("/api/events/9").status_code == 404
    event = api.get("/api/events/1").json()
    assert event["deliveries"][0]["status"] == "pending" and event["clip_url"] is None


def test_an_acknowledgement_persists_across_a_new_app_on_the_same_store(store, tmp_path):
    answer = client(store, tmp_path).post("/api/events/1/ack")
    assert answer.status_code == 200 and answer.json()["acknowledged"] is True
    store.close()
    reopened = EventStore(tmp_path / "events.sqlite3")
    api = client(reopened, tmp_path)
    assert api.get("/api/events/1").json()["acknowledged"] is True
    assert [e["id"] for e in api.get("/api/events?acknowledged=false").json()] == [2]
    reopened.close()


def test_clip_and_snapshot_are_served(store, tmp_path, image):
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / "1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really")
    write_snapshot(tmp_path / "evidence" / "1.jpg", image)
    store.set_evidence(1, "ready", clip="evidence/1.mp4", snapshot="evidence/1.jpg")
    api = client(store, tmp_path)
    event = api.get("/api/events/1").json()
    assert event["clip_url"] == "/api/events/1/clip"
    clip = api.get(event["clip_url"])
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"
    assert clip.headers["accept-ranges"] == "bytes"  # <video> asks for ranges
    part = api.get(event["clip_url"], headers={"Range": "bytes=4-7"})
    assert part.status_code == 206 and part.content == b"ftyp"
    assert part.headers["content-range"].startswith("bytes 4-7/")
    snapshot = api.get(event["snapshot_url"])
    assert snapshot.headers["content-type"] == "image/jpeg" and snapshot.content[:2] == b"\xff\xd8"
    assert api.get("/api/events/2/clip").status_code == 404  # evidence pending
    store.set_evidence(2, "ready", clip="../events.sqlite3", snapshot="evidence/none.jpg")
    assert api.get("/api/events/2/clip").status_code == 404  # outside the evidence
    assert api.get("/api/events/2/snapshot").status_code == 404


def test_live_mjpeg_and_the_page(store, tmp_path, cameras):
    api = client(store, tmp_path, cameras)
    answer = api.get("/api/cameras/door/live.mjpg?frames=1")
    assert answer.headers["content-type"].startswith("multipart/x-mixed-replace")
    assert b"Content-Type: image/jpeg" in answer.content and b"\xff\xd8" in answer.content
    assert api.get("/api/cameras/door/frame.jpg").content[:2] == b"\xff\xd8"
    assert api.get("/api/cameras/yard/frame.jpg").status_code == 404
    assert api.get("/api/cameras/nowhere/live.mjpg").status_code == 404
    page = api.get("/")
    assert page.status_code == 200 and "<video" in page.text and "static/app.js" in page.text
    assert "EventSource" in api.get("/static/app.js").text


def test_server_sent_events_and_metrics(store, tmp_path, cameras):
    broadcaster = Broadcaster()
    metrics = ServeMetrics(lambda: cameras, store.outbox_counts)
    metrics.alerts.labels("door", "fighting").inc()
    api = client(store, tmp_path, cameras, broadcaster=broadcaster, metrics=metrics)
    with api.stream("GET", "/api/stream?limit=1") as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = answer.iter_lines()
        assert next(lines).startswith(":")
        broadcaster.publish("alert", {"id": 7, "camera": "door"})
        text = "\n".join(lines)
    assert "event: alert" in text and json.loads(text.split("data: ")[1]) == {
        "id": 7,
        "camera": "door",
    }
    exposition = api.get("/metrics").text
    assert 'rsanet_alerts_total{camera="door",label="fighting"} 1.0' in exposition
    assert 'rsanet_camera_fps{camera="door"}' in exposition
    assert 'rsanet_outbox_deliveries{status="pending"} 2.0' in exposition
    assert "rsanet_window_latency_seconds" in exposition
    assert api.get("/healthz").json()["status"] == "ok"


def test_with_a_token_requests_without_it_are_refused(store, tmp_path, cameras):
    api = client(store, tmp_path, cameras, token=TOKEN)
    for path in ("/", "/api/cameras", "/api/events", "/metrics", "/static/app.js"):
        assert api.get(path).status_code == 401, path
    assert api.post("/api/events/1/ack").status_code == 401
    assert api.get("/api/events", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.get("/healthz").status_code == 200
    page = api.get("/", headers={"Accept": "text/html,*/*"})  # a browser: what to do
    assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
    assert "?token=" in page.text and TOKEN not in page.text
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert api.get("/api/events", headers=good).status_code == 200
    assert api.get(f"/api/cameras?token={TOKEN}").status_code == 200
    page = api.get(f"/?token={TOKEN}")  # the page's first load sets the cookie
    assert page.status_code == 200 and "httponly" in page.headers["set-cookie"].lower()
    assert api.get("/api/cameras/door/live.mjpg?frames=1").status_code == 200  # the cookie
    assert client(store, tmp_path, token=TOKEN).get("/api/events").status_code == 401


def test_a_non_loopback_address_needs_a_token():
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(ConfigError, match="0.0.0.0.*token is required"):
        check_bind("0.0.0.0", None)
