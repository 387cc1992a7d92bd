"""Reading frames: folders of images with Pillow, video files with PyAV (or decord /
torchcodec when installed and asked for).

Every source has ``num_frames()`` and ``read(indices) -> ndarray (N, H, W, 3) uint8`` (frames
in the order asked, repeats allowed). A source that cannot deliver raises
:class:`~rsanet.data.errors.BadSampleError` naming the path and the reason: missing, empty,
not a video, truncated, undecodable.

The PyAV reader demuxes the file once (packets only, no decoding) to learn each frame's
timestamp and the keyframes, then seeks to the keyframe before each needed frame and decodes
forward only as far as needed: 8 frames of a 300-frame video cost a few short GOP runs, not
300 decoded frames.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from rsanet.data.annotations import VIDEO_EXTENSIONS
from rsanet.data.errors import BadSampleError

#: image file extensions of frame folders (lower case)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: video backends :func:`open_video` accepts
BACKENDS = ("pyav", "decord", "torchcodec", "auto")
#: seconds: a frame starting within it of an asked time is the frame shown at that time
_EPS = 1e-6


class FrameSource(Protocol):
    """A video or a frame folder."""

    path: str

    def num_frames(self) -> int: ...

    def read(self, indices: Sequence[int]) -> np.ndarray: ...

    def close(self) -> None: ...


def _check_file(path: str) -> None:
    """Missing and empty files, reported before any decoder sees them."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise BadSampleError(
            path, "missing: no such file or folder (check ROOT and the annotation paths)"
        ) from None
    except OSError as error:
        raise BadSampleError(path, f"unreadable: {error.strerror or error}") from None
    if size == 0:
        raise BadSampleError(path, "empty file (0 bytes): re-download or re-extract it")


def _stack(frames: list[np.ndarray], path: str) -> np.ndarray:
    shapes = {frame.shape for frame in frames}
    if len(shapes) != 1:
        raise BadSampleError(path, f"frames of different sizes {sorted(shapes)}")
    return np.stack(frames)


_reformatters = threading.local()
_forked_scalers: list = []


def _own_scalers_after_fork() -> None:
    """A forked child (a DataLoader worker) starts with scalers of its own. Its parent's are
    kept, never used or freed: their threads were not copied, so using or freeing one would
    wait on them for ever."""
    global _reformatters
    _forked_scalers.append(_reformatters)
    _reformatters = threading.local()


os.register_at_fork(after_in_child=_own_scalers_after_fork)


def frame_to_rgb(
    frame: object,
    *,
    width: int | None = None,
    height: int | None = None,
    interpolation: str | None = None,
) -> np.ndarray:
    """A decoded PyAV ``frame`` as (H, W, 3) uint8 RGB (scaled to ``width`` x ``height``
    with ``interpolation`` when given): the pixels of ``frame.reformat(...).to_ndarray()``.

    PyAV gives every frame its own converter, so ``frame.to_ndarray(format="rgb24")``
    sets up a new FFmpeg scaler for each frame, which costs several times the conversion itself
    at surveillance sizes. One converter per thread and output size is kept here instead
    (FFmpeg scalers are not thread-safe; the size keeps a live source's two outputs from
    re-initialising each other), and per process: a scaler made before a fork (a
    DataLoader worker) would wait on its maker's threads for ever."""
    from av.video.reformatter import VideoReformatter

    cache = getattr(_reformatters, "by_output", None)
    if cache is None:
        cache = _reformatters.by_output = {}
    key = (width, height, interpolation)
    if key not in cache:
        cache[key] = VideoReformatter()
    converted = cache[key].reformat(
        frame, width=width, height=height, format="rgb24", interpolation=interpolation
    )
    return converted.to_ndarray()


# -- frame folders ------------------------------------------------------------------------


class FrameFolder:
    """A folder of image files, one per frame.

    With ``template`` (e.g. ``"{:05d}.jpg"``, frame ``i`` is ``template.format(start_index
    + i)``) and a known ``num_frames``, the folder is never listed; otherwise its images,
    sorted by name, are the frames.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        template: str | None = None,
        start_index: int = 1,
        num_frames: int | None = None,
    ) -> None:
        self.path = str(path)
        self.template = template
        self.start_index = start_index
        self._declared = num_frames
        self._files: list[str] | None = None

    def _listing(self) -> list[str]:
        if self._files is None:
            if not os.path.isdir(self.path):
                _check_file(self.path)
                raise BadSampleError(self.path, "not a folder of frames")
            with os.scandir(self.path) as entries:
                files = sorted(
                    entry.name
                    for entry in entries
                    if os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
                )
            if not files:
                raise BadSampleError(
                    self.path, f"empty frame folder: no {'/'.join(IMAGE_EXTENSIONS)} files"
                )
            self._files = files
        return self._files

    def num_frames(self) -> int:
        if self.template is not None and self._declared is not None:
            if not os.path.isdir(self.path):
                self._listing()
            return self._declared
        return len(self._listing())

    def frame_path(self, index: int) -> str:
        if self.template is not None:
            return os.path.join(self.path, self.template.format(self.start_index + index))
        files = self._listing()
        if not 0 <= index < len(files):
            raise BadSampleError(
                self.path, f"too short: frame {index} asked, folder has {len(files)} frames"
            )
        return os.path.join(self.path, files[index])

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames ``indices`` as (N, H, W, 3) uint8."""
        from PIL import Image

        cache: dict[int, np.ndarray] = {}
        for index in dict.fromkeys(int(i) for i in indices):
            path = self.frame_path(index)
            try:
                with Image.open(path) as image:
                    cache[index] = np.asarray(image.convert("RGB"))
            except FileNotFoundError:
                raise BadSampleError(
                    path,
                    f"missing frame {index} (the annotations declare "
                    f"{self._declared} frames; re-extract or fix the count)",
                ) from None
            except (OSError, ValueError, SyntaxError) as error:
                raise BadSampleError(path, f"undecodable image: {error}") from None
        return _stack([cache[int(i)] for i in indices], self.path)

    def close(self) -> None:
        pass


# -- PyAV ---------------------------------------------------------------------------------


def _av_reason(error: Exception, path: str | None = None) -> str:
    """FFmpeg's reason, without the path (the report names it), and the likely cause."""
    message = getattr(error, "strerror", None) or str(error)
    if path is not None and os.path.splitext(path)[1].lower() in (".mp4", ".mov", ".m4v"):
        with open(path, "rb") as handle:
            if handle.read(8)[4:8] == b"ftyp":
                return (
                    f"truncated or incomplete MP4 (it starts as an MP4 but FFmpeg cannot "
                    f"read its index: {message}): re-download the file"
                )
    return f"{type(error).__name__}: {message}"


class PyAVVideo:
    """A video file read with PyAV, seeking to the keyframe before each needed frame.

    On the way from a keyframe to a needed frame, frames that no other frame references
    (non-reference B-frames) are not decoded (FFmpeg ``skip_frame``), with one decoder
    thread. ``threads`` decoder threads (1 suits DataLoader workers, which run in parallel
    anyway). ``frames_decoded`` counts the frames this reader decoded, for tests and
    benchmarks.
    """

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        import av

        self.path = str(path)
        _check_file(self.path)
        try:
            self._container = av.open(self.path)
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
            raise BadSampleError(
                self.path, f"cannot open as a video: {_av_reason(error, self.path)}"
            ) from None
        if not self._container.streams.video:
            self._container.close()
            raise BadSampleError(self.path, "no video stream in the file")
        self._stream = self._container.streams.video[0]
        self._stream.thread_count = max(1, threads)
        self._skip_unreferenced = threads <= 1
        self._wanted: set[int] = set()
        self._pts: list[int] | None = None
        self._keyframes: list[int] = []
        self._decoder = None
        self._last = -1
        self.frames_decoded = 0

    def _index(self) -> list[int]:
        """Sorted presentation timestamps of all frames, from the packets (no decoding)."""
        import av

        if self._pts is not None:
            return self._pts
        pts, key_pts = [], []
        try:
            for packet in self._container.demux(self._stream):
                if packet.pts is None or packet.size == 0:
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
        except av.error.FFmpegError as error:
            raise BadSampleError(self.path, f"truncated or corrupt: {_av_reason(error)}") from None
        if not pts:
            raise BadSampleError(self.path, "no frames in the video stream")
        declared = self._stream.frames
        if declared and len(pts) < declared:
            raise BadSampleError(
                self.path,
                f"truncated: the container declares {declared} frames, only "
                f"{len(pts)} are in the file (re-download it)",
            )
        pts.sort()
        rank = {value: i for i, value in enumerate(pts)}
        self._keyframes = sorted(rank[value] for value in key_pts) or [0]
        self._pts, self._rank = pts, rank
        self._decoder = None
        return pts

    def num_frames(self) -> int:
        return len(self._index())

    def _frame_index(self, pts: int | None) -> int:
        if pts is None:
            return self._last + 1
        index = self._rank.get(pts)
        if index is None:  # a timestamp not in the packets: nearest at or before it
            index = max(0, bisect.bisect_right(self._pts, pts) - 1)
        return index

    def _seek(self, index: int) -> None:
        key = self._keyframes[max(0, bisect.bisect_right(self._keyframes, index) - 1)]
        self._container.seek(self._pts[key], backward=True, any_frame=False, stream=self._stream)
        self._decoder = self._decode()
        self._last = key - 1

    def _decode(self) -> Iterator:
        """Frames from the current position; packets of frames not in ``self._wanted`` are
        decoded only if other frames reference them."""
        context = self._stream.codec_context
        for packet in self._container.demux(self._stream):
            if self._skip_unreferenced:
                needed = packet.pts is None or self._rank.get(packet.pts) in self._wanted
                context.skip_frame = "DEFAULT" if needed else "NONREF"
            yield from packet.decode()

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames ``indices`` as (N, H, W, 3) uint8, decoding only from the keyframe before
        each run of needed frames."""
        import av

        pts = self._index()
        wanted = sorted({int(i) for i in indices})
        if wanted and not (0 <= wanted[0] and wanted[-1] < len(pts)):
            raise BadSampleError(
                self.path, f"too short: frame {wanted[-1]} asked, the video has {len(pts)} frames"
            )
        frames: dict[int, np.ndarray] = {}
        self._wanted = set(wanted)
        try:
            for target in wanted:
                if target in frames:
                    continue
                key_before = self._keyframes[
                    max(0, bisect.bisect_right(self._keyframes, target) - 1)
                ]
                if self._decoder is None or target <= self._last or key_before > self._last + 1:
                    self._seek(target)
                while True:
                    frame = next(self._decoder, None)
                    if frame is None:
                        raise BadSampleError(
                            self.path,
                            f"truncated: decoding stopped before frame {target} of "
                            f"{len(pts)} (re-download or re-encode the file)",
                        )
                    self.frames_decoded += 1
                    index = self._frame_index(frame.pts)
                    self._last = index
                    if index >= target:
                        frames[target] = frame_to_rgb(frame)
                        break
        except av.error.FFmpegError as error:
            self._decoder = None
            raise BadSampleError(self.path, f"undecodable: {_av_reason(error)}") from None
        return _stack([frames[int(i)] for i in indices], self.path)

    def read_seconds(self, times: Sequence[float]) -> np.ndarray:
        """The frames shown at the times ``times`` (seconds from the first frame) as (N, H,
        W, 3) uint8: for each time, the last frame starting at or before it, as a stream's
        windows pick their frames (:func:`rsanet.inference.windows.tsn_pick`), so that a
        network is trained on the frames it will be shown. Without indexing the file: one
        seek to the keyframe before the earliest time, then decoding forward to the latest;
        frames more than one frame period from every asked time are not decoded when
        nothing references them. For windows of long recordings, where :meth:`read` would
        first demux the whole file. A time before the first frame takes the first frame,
        and a time up to ``max(4 frame periods, 0.5 s)`` past the last frame (durations are
        rounded) the last frame; further is a truncated file."""
        import av

        targets = sorted({float(t) for t in times})
        if not targets:
            raise ValueError("read_seconds needs at least one time")
        stream, context = self._stream, self._stream.codec_context
        base = float(stream.time_base)
        origin = stream.start_time or 0
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        period = 1.0 / rate
        best: dict[float, tuple[float, np.ndarray]] = {}
        edge: dict[str, tuple[float, object]] = {}

        def nearby(t: float, reach: float) -> list[float]:
            lo = bisect.bisect_left(targets, t - reach)
            return targets[lo : bisect.bisect_right(targets, t + reach)]

        self._decoder = None  # ``read`` seeks again after this
        try:
            position = origin + int(max(0.0, targets[0] - period) / base)
            self._container.seek(position, backward=True, any_frame=False, stream=stream)
            done = False
            for packet in self._container.demux(stream):
                if self._skip_unreferenced and packet.pts is not None:
                    near = nearby((packet.pts - origin) * base, period)
                    context.skip_frame = "DEFAULT" if near else "NONREF"
                for frame in packet.decode():
                    if frame.pts is None:
                        continue
                    self.frames_decoded += 1
                    t = (frame.pts - origin) * base
                    edge.setdefault("first", (t, frame))
                    edge["last"] = (t, frame)
                    image = None
                    for target in nearby(t, period):  # the latest frame at or before it
                        if t <= target + _EPS and (target not in best or t > best[target][0]):
                            if image is None:
                                image = frame_to_rgb(frame)
                            best[target] = (t, image)
                    if t > targets[-1] + period:
                        done = True
                        break
                if done:
                    break
        except av.error.FFmpegError as error:
            raise BadSampleError(self.path, f"undecodable: {_av_reason(error)}") from None
        finally:
            context.skip_frame = "DEFAULT"
        tolerance = max(4 * period, 0.5)
        for target in targets:
            if target in best:
                continue
            for name in ("first", "last"):
                if name in edge and abs(edge[name][0] - target) <= tolerance:
                    best[target] = (0.0, frame_to_rgb(edge[name][1]))
                    break
            else:
                last = f"its last frame is at {edge['last'][0]:.2f} s" if edge else "none decoded"
                raise BadSampleError(
                    self.path,
                    f"truncated: no frame near {target:.2f} s ({last}); re-download or "
                    "re-encode the file, or fix its declared duration",
                )
        return _stack([best[float(t)][1] for t in times], self.path)

    def close(self) -> None:
        self._decoder = None
        self._container.close()

    def __enter__(self) -> PyAVVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def probe_video(path: str | Path) -> tuple[float, float | None]:
    """``(duration_s, fps)`` of a video file from its container header (nothing decoded;
    ``fps`` None when the header has no rate); a BadSampleError when the file is missing,
    not a video, or declares no duration."""
    import av

    path = str(path)
    _check_file(path)
    try:
        container = av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise BadSampleError(path, f"cannot open as a video: {_av_reason(error, path)}") from None
    with container:
        if not container.streams.video:
            raise BadSampleError(path, "no video stream in the file")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        if stream.duration:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        elif stream.frames and fps:
            duration = stream.frames / fps
        else:
            raise BadSampleError(
                path, "the container declares no duration (give it in the annotations)"
            )
    if not duration > 0:
        raise BadSampleError(path, f"no frames: the container declares {duration:g} s")
    return duration, fps


def decode_all(path: str | Path, *, to_rgb: bool = True, threads: int = 0) -> int:
    """Decode every frame of a video with PyAV (the whole-file baseline of the benchmark and
    the integrity check); returns the number of frames. ``threads=0`` lets FFmpeg choose."""
    import av

    path = str(path)
    _check_file(path)
    try:
        container = av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise BadSampleError(path, f"cannot open as a video: {_av_reason(error, path)}") from None
    try:
        with container:
            if not container.streams.video:
                raise BadSampleError(path, "no video stream in the file")
            stream = container.streams.video[0]
            if threads == 0:
                stream.thread_type = "AUTO"
            else:
                stream.thread_count = threads
            count = 0
            for frame in container.decode(stream):
                if to_rgb:
                    frame_to_rgb(frame)
                count += 1
            declared = stream.frames
    except av.error.FFmpegError as error:
        raise BadSampleError(path, f"undecodable: {_av_reason(error)}") from None
    if declared and count < declared:
        raise BadSampleError(
            path, f"truncated: {count} of the {declared} frames the container declares decoded"
        )
    if count == 0:
        raise BadSampleError(path, "no frames could be decoded")
    return count


# -- optional backends --------------------------------------------------------------------


class DecordVideo:
    """A video file read with decord (``pip install decord``)."""

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        try:
            import decord
        except ImportError as error:
            raise ImportError(
                "backend 'decord' is not installed: pip install decord, or use backend='pyav'"
            ) from error
        self.path = str(path)
        _check_file(self.path)
        try:
            self._reader = decord.VideoReader(self.path, num_threads=threads)
        except Exception as error:  # decord raises its own DECORDError / RuntimeError
            raise BadSampleError(self.path, f"cannot open as a video: {error}") from None

    def num_frames(self) -> int:
        return len(self._reader)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        try:
            return self._reader.get_batch([int(i) for i in indices]).asnumpy()
        except Exception as error:
            raise BadSampleError(self.path, f"undecodable: {error}") from None

    def close(self) -> None:
        self._reader = None


class TorchCodecVideo:
    """A video file read with torchcodec (``pip install torchcodec``)."""

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        try:
            from torchcodec.decoders import VideoDecoder
        except ImportError as error:
            raise ImportError(
                "backend 'torchcodec' is not installed: pip install torchcodec, "
                "or use backend='pyav'"
            ) from error
        self.path = str(path)
        _check_file(self.path)
        try:
            self._decoder = VideoDecoder(
                self.path, dimension_order="NHWC", num_ffmpeg_threads=threads
            )
        except Exception as error:
            raise BadSampleError(self.path, f"cannot open as a video: {error}") from None

    def num_frames(self) -> int:
        count = self._decoder.metadata.num_frames
        if not count:
            raise BadSampleError(self.path, "no frames in the video stream")
        return int(count)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        try:
            return self._decoder.get_frames_at(indices=[int(i) for i in indices]).data.numpy()
        except Exception as error:
            raise BadSampleError(self.path, f"undecodable: {error}") from None

    def close(self) -> None:
        self._decoder = None


def available_backends() -> list[str]:
    """The video backends importable here (``pyav`` first)."""
    import importlib.util

    names = {"pyav": "av", "decord": "decord", "torchcodec": "torchcodec"}
    return [name for name, module in names.items() if importlib.util.find_spec(module)]


def open_video(
    path: str | Path,
    *,
    backend: str = "pyav",
    threads: int = 1,
    frame_template: str | None = None,
    num_frames: int | None = None,
) -> FrameSource:
    """The frame source of ``path``: a :class:`FrameFolder` when it is a folder, else a
    video file read with ``backend`` (``pyav``, ``decord``, ``torchcodec``, or ``auto``:
    decord, then torchcodec, then PyAV, whichever is installed first)."""
    path = str(path)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if os.path.isdir(path):
        return FrameFolder(path, template=frame_template, num_frames=num_frames)
    if backend == "auto":
        installed = available_backends()
        backend = next((b for b in ("decord", "torchcodec") if b in installed), "pyav")
    if backend == "decord":
        return DecordVideo(path, threads=threads)
    if backend == "torchcodec":
        return TorchCodecVideo(path, threads=threads)
    return PyAVVideo(path, threads=threads)


def is_video_file(path: str | Path) -> bool:
    """Whether ``path`` has a video file extension."""
    return os.path.splitext(str(path))[1].lower() in VIDEO_EXTENSIONS
