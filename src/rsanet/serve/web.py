"""The HTTP API and dashboard of ``rsanet serve`` (FastAPI, served by uvicorn in a thread of
the server's process).

Endpoints: ``/`` (the dashboard), ``/api/cameras``, ``/api/cameras/NAME/live.mjpg`` and
``/frame.jpg``, ``/api/events`` (filters: camera, label, since, until, acknowledged,
limit), ``/api/events/ID``, ``POST /api/events/ID/ack``, ``/api/events/ID/clip`` (mp4),
``/api/events/ID/snapshot`` (JPEG), ``/api/stream`` (Server-Sent Events: scores, alerts,
evidence, camera states), ``/metrics`` (Prometheus) and ``/healthz``.

Security: with a token, every request but ``/healthz`` must carry it, as ``Authorization:
Bearer TOKEN``, as ``?token=TOKEN`` (the page's first load; the answer sets a cookie that
the page's ``<video>`` and ``<img>`` elements then send), or as that cookie; otherwise
401 (for a browser opening a page, a short page saying how to open the dashboard; JSON
for the rest). The token is compared in constant time and never logged (uvicorn's access
log, which would print query strings, is off). Binding to anything but the loopback
without a token is refused (:func:`check_bind`).
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles

from rsanet.serve.config import LOCALHOSTS, ConfigError

STATIC = Path(__file__).with_name("static")
COOKIE = "rsanet_token"
OPEN_PATHS = frozenset({"/healthz"})


def check_bind(host: str, token: str | None) -> None:
    """ConfigError unless ``host`` is the loopback or a token protects the API."""
    if host not in LOCALHOSTS and not token:
        raise ConfigError(
            f"http: host {host!r} is not the loopback: a token is required to serve it "
            "(http.token in the configuration, --token, or RSANET_SERVE_TOKEN)"
        )


class Broadcaster:
    """Messages from the server's threads to the ``/api/stream`` clients: each subscriber
    has a bounded queue; a slow client loses its oldest messages, never blocks the
    server."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._subscribers: set[queue.Queue] = set()
        self._lock = threading.Lock()

    def subscribe(self) -> queue.Queue:
        subscriber: queue.Queue = queue.Queue(self.size)
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: queue.Queue) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        message = (kind, data)
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            while True:
                try:
                    subscriber.put_nowait(message)
                    break
                except queue.Full:
                    try:
                        subscriber.get_nowait()
                    except queue.Empty:
                        pass


class TokenGate:
    """ASGI middleware: 401 for HTTP requests without the token (see the module
    docstring)."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app, self.token = app, token

    def allowed(self, scope: dict[str, Any]) -> bool:
        from starlette.requests import HTTPConnection

        if self.token is None or scope.get("path") in OPEN_PATHS:
            return True
        connection = HTTPConnection(scope)
        offered = []
        header = connection.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            offered.append(header[7:].strip())
        offered.append(connection.query_params.get("token", ""))
        offered.append(connection.cookies.get(COOKIE, ""))
        expected = self.token.encode()
        return any(hmac.compare_digest(value.encode(), expected) for value in offered if value)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not self.allowed(scope):
            await refusal(scope)(scope, receive, send)
            return
        await self.app(scope, receive, send)


REFUSED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rsanet serve: token required</title>
<link rel="icon" href="data:,"></head>
<body style="font-family: system-ui, sans-serif; background: #111; color: #eee; padding: 1em">
<h1 style="font-size: 1.2em">rsanet serve</h1>
<p id="error" class="error" role="alert" style="background: #a02020; padding: 0.6em 1em">
Not authorised (HTTP 401): this server needs its token. Open the page as
<code>/?token=TOKEN</code> (the page then keeps it in a cookie and removes it from the
address bar).</p></body></html>
"""


def refusal(scope: dict[str, Any]) -> Response:
    """The 401: JSON for API clients, a short page saying what to do for a browser that
    navigates to a page (it would otherwise show raw JSON, or nothing)."""
    from starlette.requests import HTTPConnection

    headers = {"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"}
    accept = HTTPConnection(scope).headers.get("accept", "")
    if scope.get("method") == "GET" and "text/html" in accept:
        return HTMLResponse(REFUSED_PAGE, status_code=401, headers=headers)
    return JSONResponse(
        {"detail": "a token is required (Authorization: Bearer TOKEN)"},
        status_code=401,
        headers=headers,
    )


def parse_time(value: str | None, name: str) -> float | None:
    """``since``/``until``: Unix seconds or an ISO 8601 time (UTC when no zone is given)."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
        if math.isfinite(number):
            return number
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(422, f"{name}: expected Unix seconds or an ISO time") from None
    if moment.tzinfo is None:
        from datetime import timezone

        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def jpeg(image: Any, caption: str | None = None, quality: int = 80) -> bytes:
    """A JPEG of an RGB frame, with ``caption`` drawn on a dark band (top-left)."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image)
    if caption:
        draw = ImageDraw.Draw(picture)
        box = draw.textbbox((6, 4), caption)
        draw.rectangle((0, 0, box[2] + 6, box[3] + 4), fill=(0, 0, 0))
        draw.text((6, 4), caption, fill=(255, 255, 255))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    """An event as the API returns it (with the URLs of its evidence when ready)."""
    view = dict(event)
    view.pop("clip", None)
    view.pop("snapshot", None)
    ready = event.get("evidence") == "ready"
    view["clip_url"] = f"/api/events/{event['id']}/clip" if ready else None
    view["snapshot_url"] = f"/api/events/{event['id']}/snapshot" if ready else None
    return view


def create_app(
    *,
    store: Any,
    storage: str | Path,
    cameras: Callable[[], Iterable[Any]] | Iterable[Any] = (),
    metrics: Any = None,
    broadcaster: Broadcaster | None = None,
    token: str | None = None,
    closing: threading.Event | None = None,
) -> Any:
    """The FastAPI application over a store (events), the storage folder (evidence) and
    the cameras (anything with ``name``, ``describe()``, ``latest_frame`` and
    ``latest``)."""
    storage = Path(storage).resolve()
    listing = cameras if callable(cameras) else (lambda items=list(cameras): items)
    broadcaster = broadcaster or Broadcaster()
    closing = closing or threading.Event()
    app = FastAPI(title="rsanet serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.broadcaster = broadcaster

    def camera_named(name: str) -> Any:
        for camera in listing():
            if camera.name == name:
                return camera
        raise HTTPException(404, f"no camera {name!r}")

    def event_or_404(event_id: int) -> dict[str, Any]:
        event = store.get(event_id)
        if event is None:
            raise HTTPException(404, f"no event {event_id}")
        return event

    def evidence_file(event_id: int, key: str, media: str) -> FileResponse:
        event = event_or_404(event_id)
        relative = event.get(key)
        if event.get("evidence") != "ready" or not relative:
            raise HTTPException(404, f"event {event_id}: evidence {event.get('evidence')}")
        path = (storage / relative).resolve()
        if storage not in path.parents or not path.is_file():
            raise HTTPException(404, f"event {event_id}: the {key} file is gone")
        return FileResponse(path, media_type=media)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "time": time.time()}

    @app.get("/")
    def index(request: Request) -> Response:
        response = FileResponse(STATIC / "index.html", media_type="text/html")
        offered = request.query_params.get("token")
        if token and offered:  # the gate let it through: it is the token
            response.set_cookie(COOKIE, offered, httponly=True, samesite="strict")
        return response

    @app.get("/api/cameras")
    def list_cameras() -> list[dict[str, Any]]:
        return [camera.describe() for camera in listing()]

    @app.get("/api/events")
    def list_events(
        camera: str | None = None,
        label: str | None = None,
        since: str | None = None,
        until: str | None = None,
        acknowledged: bool | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        events = store.events(
            camera=camera,
            label=label,
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
            acknowledged=acknowledged,
            limit=max(1, min(int(limit), 1000)),
        )
        return [event_view(event) for event in events]

    @app.get("/api/events/{event_id}")
    def get_event(event_id: int) -> dict[str, Any]:
        view = event_view(event_or_404(event_id))
        view["deliveries"] = store.deliveries(event_id)
        return view

    @app.post("/api/events/{event_id}/ack")
    def acknowledge(event_id: int) -> dict[str, Any]:
        event_or_404(event_id)
        event = store.acknowledge(event_id)
        broadcaster.publish("ack", {"id": event_id})
        return event_view(event)

    @app.get("/api/events/{event_id}/clip")
    def clip(event_id: int) -> FileResponse:
        return evidence_file(event_id, "clip", "video/mp4")

    @app.get("/api/events/{event_id}/snapshot")
    def snapshot(event_id: int) -> FileResponse:
        return evidence_file(event_id, "snapshot", "image/jpeg")

    def caption(camera: Any) -> str | None:
        latest = getattr(camera, "latest", None)
        if latest is None or not latest.top:
            return f"{camera.name}: {camera.describe().get('status', '')}"
        label, score = latest.top[0]
        return f"{camera.name}: {label} {score:.2f}"

    @app.get("/api/cameras/{name}/frame.jpg")
    def frame_jpeg(name: str) -> Response:
        camera = camera_named(name)
        frame = camera.latest_frame
        if frame is None:
            raise HTTPException(404, f"camera {name!r}: no frame yet")
        return Response(jpeg(frame.image, caption(camera)), media_type="image/jpeg")

    @app.get("/api/cameras/{name}/live.mjpg")
    async def live(name: str, request: Request, fps: float = 5.0, frames: int = 0):
        camera = camera_named(name)
        period = 1.0 / max(0.2, min(float(fps), 30.0))

        async def parts():
            sent, last = 0, None
            while not closing.is_set():
                frame = camera.latest_frame
                if frame is not None and frame is not last:
                    last = frame
                    data = await asyncio.to_thread(jpeg, frame.image, caption(camera))
                    yield (
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(data)).encode()
                        + b"\r\n\r\n"
                        + data
                        + b"\r\n"
                    )
                    sent += 1
                    if frames and sent >= frames:
                        return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(period)

        return StreamingResponse(
            parts(),
            media_type="multipart/x-mixed-replace; boundary=frame",
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/api/stream")
    async def stream(request: Request, limit: int = 0):
        subscriber = broadcaster.subscribe()

        async def messages():
            sent, quiet_since = 0, time.monotonic()
            try:
                yield ": rsanet serve\n\n"
                while not closing.is_set():
                    try:
                        kind, data = subscriber.get_nowait()
                    except queue.Empty:
                        if await request.is_disconnected():
                            return
                        if time.monotonic() - quiet_since > 15:
                            quiet_since = time.monotonic()
                            yield ": keep-alive\n\n"
                        await asyncio.sleep(0.1)
                        continue
                    quiet_since = time.monotonic()
                    yield f"event: {kind}\ndata: {json.dumps(data, allow_nan=False)}\n\n"
                    sent += 1
                    if limit and sent >= limit:
                        return
            finally:
                broadcaster.unsubscribe(subscriber)

        return StreamingResponse(
            messages(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/metrics")
    def prometheus() -> Response:
        if metrics is None:
            raise HTTPException(404, "no metrics")
        from rsanet.serve.metrics import CONTENT_TYPE

        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return TokenGate(app, token) if token else app


class WebServer:
    """uvicorn serving ``app`` from a daemon thread; :meth:`start` returns once it
    listens (``port`` is then the real one, also when 0 was asked)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        self.host, self.port = host, port
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,  # it would print ?token= query strings
            timeout_graceful_shutdown=3,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="rsanet-http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise OSError(f"cannot serve HTTP on {self.host}:{self.port} (see the log above)")
            if time.monotonic() > deadline:
                raise OSError(f"the HTTP server did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        servers = getattr(self.server, "servers", None) or []
        for server in servers:
            for sock in server.sockets:
                self.port = sock.getsockname()[1]
                return

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)
