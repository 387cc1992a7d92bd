"""Evidence of each alert: an mp4 clip from ``pre`` seconds before the alert to ``post``
seconds after it, and a JPEG snapshot of the moment it fired.

* Each camera keeps a bounded pre-buffer of its decoded frames (the last ``pre + window``
  seconds, at most ``max_frames``); an alert starts a recording with the buffered frames
  and adds the frames that follow until ``post`` seconds have passed.
* Finished recordings are encoded (PyAV: H.264 constrained baseline, yuv420p, the index
  first with ``+faststart``: what browsers play while it downloads) and the snapshot
  written (Pillow) by one writer thread, so the inference loop never waits for an encoder.
  Both files are written atomically (:mod:`rsanet.atomic`): a crash never leaves half a clip.
* A failed write (a full disk: ENOSPC, see :func:`rsanet.atomic.disk_full_error`) marks the
  event's evidence ``missing`` with the reason; the event itself is already stored and
  its deliveries queued.
* Retention: files older than ``retention_days`` go first, then the oldest ones until the
  folder holds at most ``max_total_mb``; the events they belonged to say ``pruned``.

Times here are ``time.monotonic()`` arrival times of frames (robust to reconnections,
which restart stream times). Frames are kept at the model's resolution (short side
scaled), not the camera's.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from rsanet.atomic import atomic_path, atomic_write, disk_full_error
from rsanet.inference.redact import one_line
from rsanet.serve.store import EventStore

logger = logging.getLogger("rsanet.serve")

EVIDENCE_FOLDER = "evidence"


@dataclass
class Shot:
    """A frame kept for evidence: its arrival (monotonic seconds) and RGB image."""

    arrival: float
    image: np.ndarray


@dataclass
class Recording:
    event_id: int
    camera: str
    moment: float  # arrival time of the alert's last frame
    until: float
    shots: list[Shot] = field(default_factory=list)


class PreBuffer:
    """The frames of the last ``seconds`` (at most ``max_frames``)."""

    def __init__(self, seconds: float, max_frames: int = 2000) -> None:
        self.seconds = float(seconds)
        self.shots: deque[Shot] = deque(maxlen=max(1, int(max_frames)))

    def add(self, shot: Shot) -> None:
        self.shots.append(shot)
        while len(self.shots) > 1 and shot.arrival - self.shots[0].arrival > self.seconds:
            self.shots.popleft()

    def since(self, start: float) -> list[Shot]:
        return [shot for shot in self.shots if shot.arrival >= start]

    def clear(self) -> None:
        self.shots.clear()


def relative_paths(camera: str, event_id: int, created: float) -> tuple[str, str]:
    """Where an event's clip and snapshot go, relative to the storage folder."""
    day = _dt.datetime.fromtimestamp(created, _dt.timezone.utc).strftime("%Y-%m-%d")
    base = f"{EVIDENCE_FOLDER}/{camera}/{day}/{event_id:08d}"
    return f"{base}.mp4", f"{base}.jpg"


def encode_clip(path: Path, shots: list[Shot], *, crf: int = 26) -> Path:
    """H.264 mp4 of ``shots`` (timestamps from their arrival times), written atomically:
    baseline profile, yuv420p, the index (``moov``) before the data so that a browser's
    ``<video>`` starts playing before the whole file arrives."""
    import av

    height, width = shots[-1].image.shape[:2]
    height, width = height - height % 2, width - width % 2  # yuv420p needs even sides
    origin = shots[0].arrival
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=25)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.options = {"preset": "veryfast", "crf": str(crf), "profile": "baseline"}
            last = -1
            for shot in shots:
                image = shot.image
                if image.shape[0] < height or image.shape[1] < width:
                    continue  # a resolution change in the middle: keep the final size
                frame = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(image[:height, :width]), format="rgb24"
                )
                pts = max(last + 1, round((shot.arrival - origin) * 1000))
                frame.pts, frame.time_base, last = pts, Fraction(1, 1000), pts
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
    return path


def write_snapshot(path: Path, image: np.ndarray, *, quality: int = 85) -> Path:
    """A JPEG of ``image`` (RGB), written atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def prune(
    folder: Path,
    *,
    max_age_days: float | None,
    max_total_mb: float | None,
    now: float | None = None,
) -> list[str]:
    """Delete evidence files older than ``max_age_days``, then the oldest ones until the
    evidence takes at most ``max_total_mb``; returns the deleted paths relative to
    ``folder`` (the storage folder)."""
    root = folder / EVIDENCE_FOLDER
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    files = []
    for path in root.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                files.append((stat.st_mtime, stat.st_size, path))
    files.sort(key=lambda item: (item[0], str(item[2])))
    removed: list[Path] = []
    keep = []
    for mtime, size, path in files:
        if max_age_days is not None and now - mtime > max_age_days * 86400:
            removed.append(path)
        else:
            keep.append((mtime, size, path))
    if max_total_mb is not None:
        total = sum(size for _, size, _ in keep)
        limit = max_total_mb * 2**20
        while keep and total > limit:
            _, size, path = keep.pop(0)
            removed.append(path)
            total -= size
    for path in removed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    for parent in sorted({p.parent for p in removed}, key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):  # not empty: kept
            parent.rmdir()
    return [path.relative_to(folder).as_posix() for path in removed]


class EvidenceRecorder:
    """Pre-buffers, recordings and the writer thread of every camera.

    Args:
        folder: the storage folder (evidence under ``evidence/CAMERA/DAY/``).
        store: where each event's evidence status goes.
        pre, post: seconds before and after the alert.
        buffer_seconds: seconds each pre-buffer holds (at least ``pre``).
        retention_days, max_total_mb: see :func:`prune` (checked every ``prune_every`` s).
        on_ready: called with (event id, status) once an event's evidence is settled.
    """

    def __init__(
        self,
        folder: str | Path,
        store: EventStore,
        *,
        pre: float = 5.0,
        post: float = 5.0,
        buffer_seconds: float | None = None,
        max_frames: int = 2000,
        retention_days: float | None = None,
        max_total_mb: float | None = None,
        prune_every: float = 600.0,
        on_ready=None,
    ) -> None:
        self.folder = Path(folder)
        self.store = store
        self.pre, self.post = float(pre), float(post)
        self.buffer_seconds = max(self.pre, float(buffer_seconds or 0.0))
        self.max_frames = int(max_frames)
        self.retention_days, self.max_total_mb = retention_days, max_total_mb
        self.prune_every = float(prune_every)
        self.on_ready = on_ready
        self._buffers: dict[str, PreBuffer] = {}
        self._open: list[Recording] = []
        self._lock = threading.Lock()
        self._jobs: queue.Queue[Recording | None] = queue.Queue()
        self._last_prune = time.monotonic()  # the server prunes once at start
        self.written = self.missing = 0
        self._thread = threading.Thread(target=self._work, name="rsanet-evidence", daemon=True)
        self._thread.start()

    # -- the inference loop's side ---------------------------------------------------------

    def add_frame(self, camera: str, arrival: float, image: np.ndarray) -> None:
        """Keep a frame of ``camera``; recordings that are complete go to the writer."""
        shot = Shot(arrival, image)
        with self._lock:
            buffer = self._buffers.get(camera)
            if buffer is None:
                buffer = self._buffers[camera] = PreBuffer(self.buffer_seconds, self.max_frames)
            buffer.add(shot)
            done = []
            for recording in self._open:
                if recording.camera != camera:
                    continue
                recording.shots.append(shot)
                if arrival >= recording.until:
                    done.append(recording)
            for recording in done:
                self._open.remove(recording)
                self._jobs.put(recording)

    def start(self, event_id: int, camera: str, moment: float) -> None:
        """Record the evidence of event ``event_id`` fired at ``moment`` (arrival time)."""
        with self._lock:
            buffer = self._buffers.get(camera)
            shots = buffer.since(moment - self.pre) if buffer is not None else []
            recording = Recording(event_id, camera, moment, moment + self.post, list(shots))
            if self.post <= 0:
                self._jobs.put(recording)
            else:
                self._open.append(recording)

    def interrupt(self, camera: str) -> None:
        """The camera's stream broke: its recordings end with the frames they have."""
        with self._lock:
            buffer = self._buffers.get(camera)
            if buffer is not None:
                buffer.clear()
            for recording in [r for r in self._open if r.camera == camera]:
                self._open.remove(recording)
                self._jobs.put(recording)

    # -- the writer thread -----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                recording = self._jobs.get(timeout=1.0)
            except queue.Empty:
                recording = False
            if recording is None:
                return
            if recording:
                self._write(recording)
            if time.monotonic() - self._last_prune >= self.prune_every:
                self.prune()

    def _write(self, recording: Recording) -> None:
        event = self.store.get(recording.event_id)
        created = event["created"] if event else time.time()
        clip, snapshot = relative_paths(recording.camera, recording.event_id, created)
        status, error = "ready", None
        try:
            if not recording.shots:
                raise ValueError("no frame was received around the alert")
            moment = min(recording.shots, key=lambda s: abs(s.arrival - recording.moment))
            write_snapshot(self.folder / snapshot, moment.image)
            encode_clip(self.folder / clip, recording.shots)
        except Exception as error_:  # a full disk, an encoder failure: the event stays
            if isinstance(error_, OSError):
                error_ = disk_full_error(error_, self.folder / clip, "the evidence is missing")
            status, error = "missing", one_line(error_)
            for name in (clip, snapshot):
                with contextlib.suppress(OSError):
                    (self.folder / name).unlink()
            logger.warning("evidence of event %d missing: %s", recording.event_id, error)
        try:
            if status == "ready":
                self.store.set_evidence(recording.event_id, status, clip=clip, snapshot=snapshot)
                self.written += 1
            else:
                self.store.set_evidence(recording.event_id, status, error=error)
                self.missing += 1
        except Exception as error_:  # the store itself failed: say so, keep going
            logger.warning("evidence of event %d not recorded: %s", recording.event_id, error_)
        if self.on_ready is not None:
            with contextlib.suppress(Exception):
                self.on_ready(recording.event_id, status)

    def prune(self) -> list[str]:
        self._last_prune = time.monotonic()
        if self.retention_days is None and self.max_total_mb is None:
            return []
        try:
            removed = prune(
                self.folder, max_age_days=self.retention_days, max_total_mb=self.max_total_mb
            )
            if removed:
                self.store.evidence_pruned(removed)
            return removed
        except Exception as error:
            logger.warning("evidence retention failed: %s", one_line(error))
            return []

    def close(self, timeout: float = 30.0) -> None:
        """End the open recordings with the frames they have, write everything queued
        (waiting up to ``timeout`` seconds) and stop the writer."""
        with self._lock:
            for recording in self._open:
                self._jobs.put(recording)
            self._open.clear()
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def files_bytes(self) -> int:
        root = self.folder / EVIDENCE_FOLDER
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0


def mark_interrupted(store: EventStore) -> None:
    """At start: events whose evidence a crash interrupted are marked ``missing``."""
    for event_id in store.pending_evidence():
        store.set_evidence(event_id, "missing", error="the server stopped before it was written")
