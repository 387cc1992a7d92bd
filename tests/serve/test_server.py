"""End to end: two cameras (tiny clips replayed in real time, in a loop) in one process
with a tiny checkpoint whose rule fires, the API answering while it runs; SIGTERM stops it
and everything is flushed: each camera's alert is stored with its clip and snapshot and
delivered to the webhook. And the command line's own errors."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import threading
import time

import httpx
import pytest

import rsanet.cli
from rsanet.serve.batching import CPU_MAX_BATCH
from rsanet.serve.config import load_config
from rsanet.serve.server import Server
from support.inference import rules_file
from support.serve import wait_for


def write_config(folder, checkpoint, clip, hook_url=None, **http):
    rules = rules_file(folder, {"fighting": {"threshold": 0.5, "cooldown": 600}})
    lines = [
        f"model: {checkpoint}",
        f"rules: {rules}",
        "window_seconds: 1.0",
        "stride_seconds: 0.5",
        "smoothing: 1",
        "cameras:",
        f"  - {{name: door, url: '{clip}', loop: true}}",
        f"  - {{name: yard, url: '{clip}', loop: true}}",
        f"storage: {{folder: {folder / 'data'}, pre_seconds: 1, post_seconds: 0.5}}",
        f"http: {json.dumps({'port': 0, **http})}",
    ]
    if hook_url:
        lines.append(f"webhook: {{url: '{hook_url}', auth: 'Bearer hook-s3cret', retries: 3}}")
    path = folder / "serve.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_two_cameras_alerts_evidence_webhook_and_a_graceful_stop(
    tmp_path, fighting_checkpoint, square_clip, receiver
):
    hook = receiver()
    config = load_config(write_config(tmp_path, fighting_checkpoint, square_clip, hook.url))
    server = Server(config, flush_timeout=5.0)
    database = tmp_path / "data" / "events.sqlite3"
    seen: dict = {}

    def cameras_alerted() -> bool:
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT DISTINCT camera FROM events").fetchall()
        return {row[0] for row in rows} == {"door", "yard"}

    def watch() -> None:
        try:
            wait_for(lambda: server.web is not None and server.web.server.started, 30)
            wait_for(cameras_alerted, 40)
            base = server.url
            seen["cameras"] = httpx.get(base + "api/cameras", timeout=5).json()
            seen["events"] = httpx.get(base + "api/events", timeout=5).json()
            seen["metrics"] = httpx.get(base + "metrics", timeout=5).text
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    summary = server.run()
    watcher.join(5)
    assert time.monotonic() - started < 60
    assert summary["signal"] == "SIGTERM"
    assert {c["name"] for c in seen["cameras"]} == {"door", "yard"}
    assert all(c["status"] in ("live", "outage") for c in seen["cameras"])
    assert {e["camera"] for e in seen["events"]} == {"door", "yard"}
    assert 'rsanet_alerts_total{camera="door",label="fighting"}' in seen["metrics"]
    forwards = re.search(r"^rsanet_batch_size_count (\S+)$", seen["metrics"], re.MULTILINE)
    assert forwards and float(forwards.group(1)) >= 1  # every forward's windows observed
    assert server.loop.max_batch == CPU_MAX_BATCH  # the configuration names none
    assert summary["forwards"] >= 1 and summary["alerts"] == 2  # cooldown: one per camera
    # after the stop: stored, evidence written (open recordings flushed), delivered
    from rsanet.serve.store import EventStore

    store = EventStore(database)
    events = store.events()
    assert {e["camera"] for e in events} == {"door", "yard"} and len(events) == 2
    for event in events:
        assert event["evidence"] == "ready", event
        assert (tmp_path / "data" / event["clip"]).stat().st_size > 0
        assert (tmp_path / "data" / event["snapshot"]).read_bytes()[:2] == b"\xff\xd8"
        assert store.deliveries(event["id"])[0]["status"] == "sent"
    assert store.outbox_counts() == {"sent": 2}
    store.close()
    bodies = [json.loads(r.body) for r in hook.requests]
    assert sorted(b["camera"] for b in bodies) == ["door", "yard"]
    assert all(r.headers["Authorization"] == "Bearer hook-s3cret" for r in hook.requests)
    assert all(b["label"] == "fighting" and b["score"] > 0.5 for b in bodies)


def test_cli_asking_for_cuda_on_a_machine_without_it(
    tmp_path, fighting_checkpoint, square_clip, capsys, monkeypatch
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = write_config(tmp_path, fighting_checkpoint, square_clip)
    code = rsanet.cli.main(["serve", str(path), "--device", "cuda"])
    error = capsys.readouterr().err
    assert code == 2 and "cuda was asked but PyTorch sees no CUDA GPU" in error
    assert "--device cpu" in error and len(error.strip().splitlines()) == 1


def test_cli_half_on_a_cpu_is_an_error(tmp_path, fighting_checkpoint, square_clip, capsys):
    path = write_config(tmp_path, fighting_checkpoint, square_clip)
    code = rsanet.cli.main(["serve", str(path), "--half"])
    error = capsys.readouterr().err
    assert code == 2 and "fp16 (--half) runs on a CUDA GPU" in error
    assert len(error.strip().splitlines()) == 1


def test_a_float_tail_without_int8_is_a_config_error(
    tmp_path, fighting_checkpoint, square_clip, capsys
):
    path = write_config(tmp_path, fighting_checkpoint, square_clip)
    path.write_text(path.read_text() + "float_from: layer4\n")
    code = rsanet.cli.main(["serve", str(path)])
    error = capsys.readouterr().err
    assert code == 2 and "float_from: 'layer4' keeps the last layers" in error
    assert "needs precision int8, not fp32" in error and len(error.strip().splitlines()) == 1


def test_cli_onnxruntime_on_a_gpu_it_cannot_use(tmp_path, fighting_checkpoint, square_clip, capsys):
    """An onnxruntime without GPU providers (this machine's): one line naming the fix."""
    from rsanet.inference import export_model, load_classifier

    model = load_classifier(fighting_checkpoint).model
    onnx = export_model(model, tmp_path / "m.onnx", "onnx", frames=8, size=48, check=False)
    path = write_config(tmp_path, onnx.path, square_clip)  # an .onnx model: onnxruntime
    path.write_text(path.read_text() + "device: cuda\n")
    code = rsanet.cli.main(["serve", str(path)])
    error = capsys.readouterr().err
    assert code == 2 and "no GPU execution provider" in error and "onnxruntime-gpu" in error
    assert len(error.strip().splitlines()) == 1


def test_cli_refuses_a_public_address_without_a_token(
    tmp_path, fighting_checkpoint, square_clip, capsys, monkeypatch
):
    monkeypatch.delenv("RSANET_SERVE_TOKEN", raising=False)
    path = write_config(tmp_path, fighting_checkpoint, square_clip)
    code = rsanet.cli.main(["serve", str(path), "--host", "0.0.0.0"])
    error = capsys.readouterr().err
    assert code == 2 and "a token is required" in error


def test_cli_config_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "serve.yaml"
    path.write_text("model: nothing.pt\ncameras: [{name: door}]\n")
    assert rsanet.cli.main(["serve", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "model: no such file" in error and len(error.splitlines()) == 1


def test_cli_token_from_the_environment(tmp_path, fighting_checkpoint, square_clip):
    from argparse import Namespace

    from rsanet.cli.serve import apply_overrides

    config = load_config(write_config(tmp_path, fighting_checkpoint, square_clip))
    args = Namespace(
        host="0.0.0.0",
        port=9000,
        token=None,
        device=None,
        precision=None,
        half=False,
        calibration=None,
        calibration_clips=None,
        float_from=None,
    )
    changed = apply_overrides(config, args, {"RSANET_SERVE_TOKEN": "from-the-env"})
    assert (changed.http.host, changed.http.port, changed.http.token) == (
        "0.0.0.0",
        9000,
        "from-the-env",
    )


def test_the_model_is_warmed_up_before_any_camera_opens(tmp_path):
    """The first forward pays for lazy set-up (seconds on a CPU): serve runs it on a blank
    clip before it opens a camera, so no camera's first frames wait for it."""
    from rsanet.serve.config import CameraConfig, ServeConfig, StorageConfig
    from support.serve import paced_opener, stub_predictor

    predictor = stub_predictor()
    forwards_when_opened = []

    def opener():
        forwards_when_opened.append(list(predictor.backend.batches))
        return paced_opener(count=5)()

    config = ServeConfig(
        model=tmp_path / "unused.pt",
        cameras=[CameraConfig("door", "rtsp://10.0.0.5/s")],
        storage=StorageConfig(tmp_path / "data"),
    )
    server = Server(config, predictor=predictor, openers={"door": opener}, http=False)
    server.start()
    try:
        assert wait_for(lambda: forwards_when_opened, 10)
    finally:
        server.close()
    assert forwards_when_opened[0] == [1]  # the blank clip, and nothing else yet
    assert server.summary()["warm_up_ms"] >= 0
