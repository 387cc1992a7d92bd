"""``--annotate OUT.mp4``: the video with the current label and score drawn on each frame
(Pillow ``ImageDraw``), encoded with PyAV (H.264, timestamps kept, so frames dropped from a
live stream leave the timing intact).

The video is written to a temporary file beside ``OUT`` and renamed over it when finished
(:func:`rsanet.atomic.atomic_path`): an interrupted or failed run never leaves a half-written
video, and a previous ``OUT`` stays intact until the new one is complete."""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path

import numpy as np

from rsanet.atomic import atomic_path

#: timestamps of the written video, in milliseconds
TIME_BASE = Fraction(1, 1000)
#: FFmpeg muxer of each supported output extension (the temporary name has none)
CONTAINERS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".avi": "avi",
    ".ts": "mpegts",
}


def container_format(path: str | Path) -> str:
    """The FFmpeg muxer for ``path``'s extension; ValueError naming the supported ones."""
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise ValueError(
            f"cannot write an annotated video to {str(path)!r}: unsupported extension "
            f"{suffix or '(none)'!r}; use one of {', '.join(CONTAINERS)}"
        )
    return CONTAINERS[suffix]


class _Aborted(Exception):
    """Thrown into the atomic write to discard the temporary video."""


class Annotator:
    """Writes annotated frames to ``path`` (mp4/mkv/...); frames (H, W, 3) uint8 RGB, at
    most ``max_width`` wide (larger frames are scaled down). Open on the first frame, so the
    output has the source's size; :meth:`close` finishes the file and puts it in place,
    :meth:`abort` discards it."""

    def __init__(
        self,
        path: str | Path,
        *,
        codec: str = "libx264",
        crf: int = 23,
        max_width: int | None = 1280,
    ) -> None:
        self.path = Path(path)
        self.format = container_format(self.path)
        self.codec, self.crf, self.max_width = codec, crf, max_width
        self._atomic: contextlib.ExitStack | None = None
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None
        self._last_pts = -1
        self._font = None
        self.frames = 0

    def _open(self, width: int, height: int) -> None:
        import av

        if self.max_width and width > self.max_width:
            height = round(height * self.max_width / width)
            width = self.max_width
        width, height = width - width % 2, height - height % 2  # yuv420p needs even sides
        self._atomic = contextlib.ExitStack()
        temporary = self._atomic.enter_context(atomic_path(self.path))
        try:
            self._container = av.open(str(temporary), "w", format=self.format)
        except BaseException:
            self.abort()
            raise
        stream = self._container.add_stream(self.codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = TIME_BASE
        if self.codec == "libx264":
            stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        self._stream = stream
        self._size = (width, height)

    def _fonts(self, height: int):
        from PIL import ImageFont

        if self._font is None:
            self._font = ImageFont.load_default(size=max(12, height // 22))
        return self._font

    def draw(
        self,
        image: np.ndarray,
        label: str | None,
        score: float | None,
        *,
        alert: str | None = None,
        time: float | None = None,
    ) -> np.ndarray:
        """``image`` (H, W, 3) uint8 with a banner: the label and score (a bar for the
        score), the stream time, and a red frame and line when ``alert`` is set."""
        from PIL import Image, ImageDraw

        picture = Image.fromarray(np.ascontiguousarray(image))
        width, height = picture.size
        font = self._fonts(height)
        draw = ImageDraw.Draw(picture, "RGBA")
        banner = max(16, height // 12)
        draw.rectangle((0, 0, width, banner), fill=(0, 0, 0, 160))
        text = "..." if label is None else f"{label}  {score:.2f}"
        if time is not None:
            text = f"{time:7.2f} s  {text}"
        draw.text((6, banner // 2), text, fill=(255, 255, 255, 255), font=font, anchor="lm")
        if score is not None:
            draw.rectangle((0, banner - 3, int(width * score), banner), fill=(80, 220, 80, 255))
        if alert:
            edge = max(3, height // 90)
            draw.rectangle((0, 0, width - 1, height - 1), outline=(230, 30, 30, 255), width=edge)
            draw.rectangle((0, height - banner, width, height), fill=(200, 0, 0, 170))
            draw.text(
                (6, height - banner // 2),
                f"ALERT: {alert}",
                fill=(255, 255, 255, 255),
                font=font,
                anchor="lm",
            )
        return np.asarray(picture)

    def write(
        self,
        image: np.ndarray,
        time: float,
        label: str | None = None,
        score: float | None = None,
        *,
        alert: str | None = None,
    ) -> None:
        """Draw and encode one frame shown at ``time`` seconds (frames at or before the last
        written time are skipped: timestamps must increase)."""
        import av

        pts = round(time / TIME_BASE)
        if pts <= self._last_pts:
            return
        if self._container is None:
            self._open(image.shape[1], image.shape[0])
        width, height = self._size
        if (image.shape[1], image.shape[0]) != (width, height):
            from PIL import Image

            image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        drawn = self.draw(image, label, score, alert=alert, time=time)
        frame = av.VideoFrame.from_ndarray(drawn, format="rgb24")
        frame.pts, frame.time_base = pts, TIME_BASE
        self._container.mux(self._stream.encode(frame))
        self._last_pts = pts
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder, finish the file and rename it to ``path`` (a no-op when no
        frame was written). On a failure the temporary file is removed and the error
        raised (:class:`rsanet.atomic.DiskFullError` for a full disk)."""
        if self._container is None:
            return
        try:
            self._container.mux(self._stream.encode())
            self._container.close()
        except BaseException:
            self.abort()
            raise
        self._container = None
        atomic, self._atomic = self._atomic, None
        if atomic is not None:
            atomic.close()  # fsync, then os.replace over ``path``

    def abort(self) -> None:
        """Discard the video being written (the temporary file); ``path`` is untouched."""
        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(Exception):
                container.close()
        atomic, self._atomic = self._atomic, None
        if atomic is not None:
            error = _Aborted()
            with contextlib.suppress(_Aborted):
                atomic.__exit__(_Aborted, error, None)
