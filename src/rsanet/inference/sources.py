"""What ``rsanet predict SOURCE`` reads: files, folders, URLs and capture devices, decoded
frame by frame with PyAV.

:func:`parse_source` says what SOURCE names; :func:`decode_frames` yields :class:`Frame`
objects, each frame already scaled (by FFmpeg's area filter) so that its short side is the
one the evaluation transforms resize to, which keeps the frames a window holds small. A
source that cannot be read raises :class:`SourceError` with a one-line reason.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsanet.data.annotations import VIDEO_EXTENSIONS
from rsanet.data.decoding import frame_to_rgb
from rsanet.inference.redact import one_line, redact_text, redact_url

#: URL schemes FFmpeg reads as network streams
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "rtp", "http", "https", "udp", "tcp", "srt")
#: FFmpeg input formats of capture devices, usable as ``FORMAT:TARGET`` (``v4l2:/dev/video0``)
DEVICE_FORMATS = ("v4l2", "video4linux2", "avfoundation", "dshow", "gdigrab", "x11grab")
#: files a folder SOURCE is searched for (lower-case extensions)
STREAM_EXTENSIONS = tuple(VIDEO_EXTENSIONS) + (".ts", ".mts", ".m2ts", ".3gp", ".wmv", ".ogv")
#: seconds to wait for a network source to open, and for one read before it counts as a stall
DEFAULT_TIMEOUT = (10.0, 5.0)


class SourceError(ValueError):
    """A source that cannot be opened or decoded; the message is one line."""


@dataclass(frozen=True)
class SourceSpec:
    """What SOURCE names: ``kind`` is ``file``, ``folder``, ``url`` or ``device``;
    ``target`` the path, URL or device; ``format`` FFmpeg's input format for devices."""

    kind: str
    target: str
    format: str | None = None

    @property
    def is_live(self) -> bool:
        """A camera or network stream (as opposed to a file read at any speed)."""
        return self.kind in ("url", "device")

    def __str__(self) -> str:
        """The source as printed: a URL's credentials (password, token, secret query
        parameters) are replaced by ``***`` (:func:`rsanet.inference.redact.redact_url`)."""
        if self.format:
            return f"{self.format}:{self.target}"
        return redact_url(self.target)


@dataclass
class Frame:
    """One decoded frame.

    time: seconds since the source started (for live sources: since the run started, so
        that times stay increasing across reconnections).
    image: (H, W, 3) uint8 RGB, short side scaled for the model.
    duration: seconds the frame lasts (1 / frame rate), 0 when unknown.
    index: frame number since the source was opened, or since the run started for live runs.
    display: (H0, W0, 3) uint8 RGB at the source resolution, kept only for ``--annotate``.
    segment: connection number of a live source (it changes after a reconnection).
    arrival: ``time.monotonic()`` when the frame was decoded.
    """

    time: float
    image: np.ndarray
    duration: float = 0.0
    index: int = 0
    display: np.ndarray | None = None
    segment: int = 0
    arrival: float = 0.0


def parse_source(text: str) -> SourceSpec:
    """Classify SOURCE: ``rtsp://...`` / ``http://...`` (url), ``/dev/video0``, ``0`` or
    ``avfoundation:0`` (device), an existing folder or file. Raises SourceError otherwise."""
    text = str(text)
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", text)
    if scheme and scheme.group(1).lower() in URL_SCHEMES:
        return SourceSpec("url", text)
    prefix, _, rest = text.partition(":")
    if rest and prefix.lower() in DEVICE_FORMATS:
        return SourceSpec("device", rest, prefix.lower())
    if os.path.isdir(text):
        return SourceSpec("folder", text)
    if os.path.exists(text):
        return SourceSpec("file", text)
    if text.startswith("/dev/video"):
        return SourceSpec("device", text, "v4l2")
    if text.isdigit():  # a webcam number
        return SourceSpec("device", f"/dev/video{text}", "v4l2")
    if scheme:
        raise SourceError(
            f"unsupported URL scheme {scheme.group(1)!r} in {redact_url(text)!r} "
            f"(supported: {', '.join(URL_SCHEMES)})"
        )
    raise SourceError(f"no such file, folder, URL or device: {redact_text(text)!r}")


def list_videos(folder: str | Path) -> list[str]:
    """The video files directly inside ``folder``, sorted by name."""
    with os.scandir(folder) as entries:
        names = sorted(
            entry.name
            for entry in entries
            if entry.is_file() and os.path.splitext(entry.name)[1].lower() in STREAM_EXTENSIONS
        )
    return [os.path.join(str(folder), name) for name in names]


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) with the short side scaled to ``short_side`` (None: unchanged), rounded
    like :class:`rsanet.data.ResizeShortSide` so that its resize is then a no-op."""
    if short_side is None:
        return width, height
    if height <= width:
        return max(1, round(width * short_side / height)), short_side
    return short_side, max(1, round(height * short_side / width))


def _one_line(error: BaseException) -> str:
    message = one_line(error)
    return message if len(message) <= 300 else message[:297] + "..."


def describe_av_error(error: BaseException) -> str:
    """A short reason for a PyAV/FFmpeg error: refused, timed out, missing, unsupported ..."""
    import av

    if isinstance(error, av.error.DecoderNotFoundError):
        return "unsupported codec: no decoder for it in this FFmpeg build"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (nothing listens at that address)"
    if isinstance(error, TimeoutError | av.error.ExitError) or "timed out" in str(error).lower():
        return "no answer (timed out)"
    if isinstance(error, FileNotFoundError):
        return "not found"
    if isinstance(error, av.error.InvalidDataError):
        return "not a video FFmpeg can read (invalid data)"
    if isinstance(error, av.error.FFmpegError) and error.strerror:
        return redact_text(error.strerror)  # without the file name PyAV appends
    return _one_line(error)


def open_container(
    spec: SourceSpec,
    *,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    options: dict[str, str] | None = None,
):
    """Open ``spec`` with PyAV: (container, its first video stream). Raises SourceError
    naming the source and the reason: missing, empty, refused, timed out, no video stream,
    unsupported codec."""
    import av

    if spec.kind == "file":
        try:
            size = os.path.getsize(spec.target)
        except OSError as error:
            raise SourceError(f"{spec}: cannot read: {error.strerror or error}") from None
        if size == 0:
            raise SourceError(f"{spec}: empty file (0 bytes)")
    av_options = dict(options or {})
    if spec.kind == "url" and spec.target.lower().startswith(("rtsp://", "rtsps://")):
        av_options.setdefault("rtsp_transport", "tcp")
    started = time.monotonic()
    try:
        container = av.open(
            spec.target,
            format=spec.format,
            options=av_options,
            timeout=timeout if spec.is_live else None,
        )
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as error:
        reason = describe_av_error(error)
        if spec.is_live and time.monotonic() - started >= 0.95 * timeout[0]:
            reason = f"no answer within {timeout[0]:g} s (timed out)"
        raise SourceError(f"cannot open {spec}: {reason}") from None
    if not container.streams.video:
        container.close()
        raise SourceError(f"{spec}: no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        tag = getattr(stream, "codec_tag", "") or "unknown"
        container.close()
        raise SourceError(
            f"{spec}: unsupported codec ({tag!r}): no decoder for it in this FFmpeg build"
        )
    stream.thread_type = "AUTO"
    return container, stream


def decode_frames(
    spec: SourceSpec,
    *,
    short_side: int | None,
    keep_display: bool = False,
    pace: bool = False,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    options: dict[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> Iterator[Frame]:
    """Decode ``spec`` frame by frame: :class:`Frame` objects with ``time`` from the frame
    timestamps (0 at the first frame) and ``image`` scaled to ``short_side``.

    ``pace``: yield each frame no earlier than its timestamp after the first frame (replay of
    a file at its real frame rate, as a camera would deliver it). Decoding errors raise
    SourceError; the container is closed when the iterator is closed or exhausted.
    """
    import av

    container, stream = open_container(spec, timeout=timeout, options=options)
    rate = stream.average_rate or stream.guessed_rate
    default_duration = float(1 / rate) if rate else 0.0
    first_time: float | None = None
    started = 0.0
    count = 0
    try:
        for frame in container.decode(stream):
            stamp = frame.time
            if stamp is None:
                stamp = count * default_duration
            if first_time is None:
                first_time, started = stamp, clock()
            elapsed = stamp - first_time
            if pace:
                delay = started + elapsed - clock()
                if delay > 0:
                    sleep(delay)
            width, height = scaled_size(frame.width, frame.height, short_side)
            image = frame_to_rgb(frame, width=width, height=height, interpolation="AREA")
            duration = (
                float(frame.duration * frame.time_base)
                if frame.duration and frame.time_base
                else default_duration
            )
            yield Frame(
                time=elapsed,
                image=image,
                duration=duration,
                index=count,
                display=frame_to_rgb(frame) if keep_display else None,
                arrival=clock(),
            )
            count += 1
    except av.error.FFmpegError as error:
        where = f"after frame {count}" if count else "before the first frame"
        raise SourceError(f"{spec}: decoding failed {where}: {describe_av_error(error)}") from None
    finally:
        container.close()
    if count == 0:
        raise SourceError(f"{spec}: no frame could be decoded")
