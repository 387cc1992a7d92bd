"""Evidence: a clip from the pre-buffer to post seconds after the alert and a snapshot,
written atomically; retention by age and size; a full disk marks the evidence missing
while the event stays stored."""

from __future__ import annotations

import errno
import os
import time

import av
import numpy as np
from PIL import Image

from rsanet.serve import evidence as evidence_module
from rsanet.serve.delivery import WEBHOOK
from rsanet.serve.evidence import EvidenceRecorder, mark_interrupted, prune
from rsanet.serve.store import EventStore
from support.inference import moving_square
from support.serve import wait_for


def feed(recorder: EvidenceRecorder, camera: str, start: float, count: int, fps: float = 25):
    images = moving_square(count)
    for i in range(count):
        recorder.add_frame(camera, start + i / fps, images[i])


def event(store: EventStore, camera: str = "door") -> int:
    stored = store.add_event(
        camera=camera, label="fighting", score=0.9, threshold=0.5, start=1.0, end=2.0,
        sinks=[WEBHOOK], payload={},
    )  # fmt: skip
    return stored["id"]


def test_a_clip_from_before_to_after_the_alert_and_a_snapshot(tmp_path):
    store = EventStore(tmp_path / "events.sqlite3")
    recorder = EvidenceRecorder(tmp_path, store, pre=1.0, post=0.5, buffer_seconds=3.0)
    feed(recorder, "door", 0.0, 75)  # 3 s of frames: only the last 1 s + post go in the clip
    event_id = event(store)
    recorder.start(event_id, "door", moment=2.96)
    feed(recorder, "other", 3.0, 10)  # another camera's frames do not end the recording
    feed(recorder, "door", 3.0, 15)  # 0.6 s after the alert: complete
    assert wait_for(lambda: store.get(event_id)["evidence"] == "ready")
    stored = store.get(event_id)
    clip, snapshot = tmp_path / stored["clip"], tmp_path / stored["snapshot"]
    assert stored["clip"].startswith("evidence/door/") and clip.suffix == ".mp4"
    with av.open(str(clip)) as container:
        codec = container.streams.video[0].codec_context
        assert "Baseline" in codec.profile and codec.pix_fmt == "yuv420p"  # browsers play it
        decoded = list(container.decode(video=0))
    assert 35 <= len(decoded) <= 42  # 1 s before + 0.5 s after at 25 fps
    data = clip.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # +faststart: the index first
    assert decoded[0].width == 64 and decoded[0].height == 48
    with Image.open(snapshot) as picture:
        assert picture.format == "JPEG" and picture.size == (64, 48)
    assert not list(clip.parent.glob(".*.tmp"))
    recorder.close()
    store.close()


def test_close_writes_the_recordings_still_open(tmp_path):
    store = EventStore(tmp_path / "events.sqlite3")
    recorder = EvidenceRecorder(tmp_path, store, pre=1.0, post=30.0)
    feed(recorder, "door", 0.0, 30)
    event_id = event(store)
    recorder.start(event_id, "door", moment=1.2)
    recorder.close()
    assert store.get(event_id)["evidence"] == "ready"
    store.close()


def test_a_full_disk_marks_the_evidence_missing_the_event_stays(tmp_path, monkeypatch):
    def full(path, shots, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evidence_module, "encode_clip", full)
    store = EventStore(tmp_path / "events.sqlite3")
    recorder = EvidenceRecorder(tmp_path, store, pre=1.0, post=0.0)
    feed(recorder, "door", 0.0, 30)
    event_id = event(store)
    recorder.start(event_id, "door", moment=1.2)
    assert wait_for(lambda: store.get(event_id)["evidence"] == "missing")
    stored = store.get(event_id)
    assert "no space left" in stored["evidence_error"] and stored["label"] == "fighting"
    assert store.deliveries(event_id)[0]["status"] == "pending"  # still to be sent
    assert stored["clip"] is None and not list((tmp_path / "evidence").rglob("*.jpg"))
    assert recorder.missing == 1
    recorder.close()
    store.close()


def test_retention_by_age_then_by_total_size(tmp_path):
    folder = tmp_path / "evidence" / "door" / "2024-01-01"
    folder.mkdir(parents=True)
    now = time.time()
    for number, age_days in enumerate([40, 3, 2, 1]):
        path = folder / f"{number:08d}.mp4"
        path.write_bytes(bytes(400_000))
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
    removed = prune(tmp_path, max_age_days=30, max_total_mb=0.8, now=now)
    assert removed == [
        "evidence/door/2024-01-01/00000000.mp4",
        "evidence/door/2024-01-01/00000001.mp4",
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["00000002.mp4", "00000003.mp4"]
    assert prune(tmp_path, max_age_days=None, max_total_mb=None, now=now) == []


def test_pruned_evidence_and_interrupted_recordings_are_marked(tmp_path):
    store = EventStore(tmp_path / "events.sqlite3")
    recorder = EvidenceRecorder(tmp_path, store, pre=0.5, post=0.0, max_total_mb=0.0001)
    feed(recorder, "door", 0.0, 20)
    first = event(store)
    recorder.start(first, "door", moment=0.7)
    assert wait_for(lambda: store.get(first)["evidence"] == "ready")
    recorder.prune()
    assert store.get(first)["evidence"] == "pruned"
    second = event(store)  # its recording never finished: a crash
    mark_interrupted(store)
    assert store.get(second)["evidence"] == "missing"
    recorder.close()
    store.close()


def test_odd_frame_sizes_are_cropped_to_even(tmp_path):
    shots = [evidence_module.Shot(i / 25, np.full((45, 61, 3), i * 5, np.uint8)) for i in range(10)]
    path = evidence_module.encode_clip(tmp_path / "odd.mp4", shots)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (60, 44)
