"""SynthMotion: a motion-centric benchmark generated procedurally, so that training, tests
and demos run anywhere without a download.

Every video is a pure function of ``(seed, split, index)``. The 14 classes come in pairs of
temporal opposites: class ``2k + 1`` is class ``2k`` played backwards (moving left / right,
up / down, rotating clockwise / anticlockwise, growing / shrinking, appearing /
disappearing, approaching another object until touching / moving apart from it, turning
the camera left / right). A video of class ``2k + 1`` is rendered as the same random scene
as one of class ``2k`` with its frames reversed, so within a pair the set of frames has the
same distribution: a model that sees the frames without their order (shuffled frames, an
average over time) is at chance within a pair; only the order tells the classes apart.

Scenes: a textured background (two crossed gratings and smooth noise), a main object and a
distractor, each a random shape (circle, square, diamond, triangle, hexagon, cross) in two
random colours split along a diameter (so that rotations show), camera jitter and pixel
noise. Appearance distributions are the same for every class but the rotation pair, whose
turning object is twice as large (:data:`ROTATING_OBJECT_SCALE`): one frame may tell that
pair, never its direction.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from rsanet.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from rsanet.data.transforms import Compose, Normalize

#: class names by id; classes 2k and 2k + 1 are temporal opposites
SYNTHMOTION_CLASSES = (
    "moving something left",
    "moving something right",
    "moving something up",
    "moving something down",
    "rotating something clockwise",
    "rotating something anticlockwise",
    "something growing",
    "something shrinking",
    "something appearing",
    "something disappearing",
    "moving something towards something until they touch",
    "moving something away from something",
    "turning the camera left",
    "turning the camera right",
)
#: classes that a horizontal flip turns into each other (by name)
SYNTHMOTION_FLIP_PAIRS = (
    (SYNTHMOTION_CLASSES[0], SYNTHMOTION_CLASSES[1]),
    (SYNTHMOTION_CLASSES[4], SYNTHMOTION_CLASSES[5]),
    (SYNTHMOTION_CLASSES[12], SYNTHMOTION_CLASSES[13]),
)
NUM_PAIRS = len(SYNTHMOTION_CLASSES) // 2
SPLIT_IDS = {"train": 0, "val": 1}
SHAPES = ("circle", "square", "diamond", "triangle", "hexagon", "cross")
#: pixel noise (standard deviation on [0, 1] values)
NOISE_STD = 0.04
#: the rotating object is drawn this much larger than the others. At the common size
#: (radius 11-16 % of the frame) its turn moves 1-2 pixels of the maps where the networks'
#: first temporal layer looks (a quarter of the frame's resolution), and no network learned
#: the direction (docs/data.md, "Why the rotating object is larger").
ROTATING_OBJECT_SCALE = 2.0


def opposite(label: int | torch.Tensor) -> int | torch.Tensor:
    """The class a SynthMotion video of ``label`` becomes when played backwards."""
    return label ^ 1


def play_backwards(
    clip: torch.Tensor, label: int | torch.Tensor, *, time_dim: int = -3
) -> tuple[torch.Tensor, int | torch.Tensor]:
    """``clip`` (..., C, T, H, W) with time reversed, and the class it then shows."""
    return clip.flip(time_dim), opposite(label)


# -- rendering ----------------------------------------------------------------------------


def _gauge(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Gauge of a shape of radius 1 at object coordinates (u, v): <= 1 inside."""
    if shape == "circle":
        return np.sqrt(u * u + v * v)
    au, av = np.abs(u), np.abs(v)
    if shape == "square":
        return np.maximum(au, av) / 0.82
    if shape == "diamond":
        return (au + av) / 1.12
    if shape == "hexagon":
        a, b = 0.5 * au, 0.8660254 * av
        return np.maximum(np.maximum(au, a + b), np.abs(a - b)) / 0.92
    if shape == "triangle":  # flat top, apex down (v points down)
        return np.maximum(np.maximum(-v, 0.8660254 * u + 0.5 * v), -0.8660254 * u + 0.5 * v) / 0.62
    if shape == "cross":
        return np.minimum(np.maximum(au, av / 0.36), np.maximum(au / 0.36, av)) / 1.02
    raise ValueError(f"unknown shape {shape!r}")


def _extent(shape: str, angle: float) -> float:
    """Distance from the centre to the border of a radius-1 shape along ``angle``."""
    return float(1.0 / _gauge(shape, np.array(math.cos(angle)), np.array(math.sin(angle))))


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    return (value - value * saturation * np.clip(np.minimum(k, 4 - k), 0, 1)).astype(np.float32)


def _object_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    hue = rng.random()
    first = _hsv(hue, rng.uniform(0.55, 1.0), rng.uniform(0.7, 1.0))
    second = _hsv((hue + rng.uniform(0.3, 0.7)) % 1, rng.uniform(0.55, 1.0), rng.uniform(0.5, 1.0))
    return first, second


def _interpolation_matrix(length: int, knots: int) -> np.ndarray:
    """(length, knots) weights of linear interpolation from ``knots`` evenly spaced values."""
    position = np.linspace(0, knots - 1, length)
    low = np.minimum(position.astype(int), knots - 2)
    weights = np.zeros((length, knots), np.float32)
    weights[np.arange(length), low] = 1 - (position - low)
    weights[np.arange(length), low + 1] = position - low
    return weights


def _background(rng: np.random.Generator, height: int, width: int, size: int) -> np.ndarray:
    """A textured (3, height, width) float32 canvas: two crossed gratings and smooth noise
    between two dull colours."""
    ys = np.arange(height, dtype=np.float32)
    xs = np.arange(width, dtype=np.float32)
    angle = rng.uniform(0, math.pi)
    pattern = np.zeros((height, width), np.float32)
    for turn in (0.0, rng.uniform(math.pi / 4, 3 * math.pi / 4)):
        wavelength = rng.uniform(0.12, 0.35) * size
        kx, ky = np.cos(angle + turn) / wavelength, np.sin(angle + turn) / wavelength
        phase_x = 2 * np.pi * kx * xs + rng.uniform(0, 2 * np.pi)
        phase_y = 2 * np.pi * ky * ys
        # sin(a + b) = sin a cos b + cos a sin b: two outer products
        pattern += np.outer(np.cos(phase_y), np.sin(phase_x))
        pattern += np.outer(np.sin(phase_y), np.cos(phase_x))
    coarse = rng.random((5, 5)).astype(np.float32)
    noise = _interpolation_matrix(height, 5) @ coarse @ _interpolation_matrix(width, 5).T
    mix = np.clip(0.5 + 0.22 * pattern + 0.5 * (noise - 0.5), 0, 1)
    hue = rng.random()
    dark = _hsv(hue, rng.uniform(0.0, 0.6), rng.uniform(0.1, 0.35))
    light = _hsv((hue + rng.uniform(-0.2, 0.2)) % 1, rng.uniform(0.0, 0.6), rng.uniform(0.35, 0.6))
    return np.stack([low + (high - low) * mix for low, high in zip(dark, light, strict=True)])


class _Object:
    """A shape with its per-frame centre, angle, radius (pixels) and opacity."""

    def __init__(self, rng: np.random.Generator, size: int, frames: int) -> None:
        self.shape = SHAPES[rng.integers(len(SHAPES))]
        self.radius = rng.uniform(0.11, 0.16) * size
        self.colours = _object_colours(rng)
        self.angle = np.full(frames, rng.uniform(0, 2 * math.pi))
        self.scale = np.ones(frames)
        self.alpha = np.ones(frames)
        self.x = np.zeros(frames)
        self.y = np.zeros(frames)

    def reach(self) -> float:
        """Largest distance from the centre to the border (pixels, any angle, any frame)."""
        return self.radius * float(self.scale.max()) * 1.25

    def draw(self, frames: np.ndarray, shift_x: np.ndarray, shift_y: np.ndarray) -> None:
        """Composite onto ``frames`` (T, 3, S, S) in place, the scene shifted by the camera."""
        size = frames.shape[-1]
        reach = self.reach() + 2
        cx, cy = self.x + shift_x, self.y + shift_y
        x0, x1 = max(0, int(cx.min() - reach)), min(size, int(math.ceil(cx.max() + reach)) + 1)
        y0, y1 = max(0, int(cy.min() - reach)), min(size, int(math.ceil(cy.max() + reach)) + 1)
        if x0 >= x1 or y0 >= y1:
            return
        radius = (self.radius * self.scale).astype(np.float32)[:, None, None]
        cx, cy = cx.astype(np.float32)[:, None, None], cy.astype(np.float32)[:, None, None]
        dx = np.arange(x0, x1, dtype=np.float32)[None, None, :] - cx
        dy = np.arange(y0, y1, dtype=np.float32)[None, :, None] - cy
        cos = np.cos(self.angle).astype(np.float32)[:, None, None]
        sin = np.sin(self.angle).astype(np.float32)[:, None, None]
        u = (cos * dx + sin * dy) / radius
        v = (cos * dy - sin * dx) / radius
        cover = np.clip((1 - _gauge(self.shape, u, v)) * radius + 0.5, 0, 1)
        cover *= self.alpha.astype(np.float32)[:, None, None]
        tone = np.clip(v * radius + 0.5, 0, 1)
        first, second = self.colours
        for channel in range(3):
            region = frames[:, channel, y0:y1, x0:x1]
            region += (second[channel] + (first[channel] - second[channel]) * tone - region) * cover


def _place(rng: np.random.Generator, low: float, high: float) -> float:
    return rng.uniform(low, high) if high > low else (low + high) / 2


def render_pair(
    rng: np.random.Generator,
    pair: int,
    num_frames: int,
    size: int,
    reverse: bool = False,
    *,
    rotating_object_scale: float = ROTATING_OBJECT_SCALE,
) -> np.ndarray:
    """The forward video (class ``2 * pair``) of a random scene, or with ``reverse`` the
    same video backwards (class ``2 * pair + 1``): (T, S, S, 3) uint8.
    ``rotating_object_scale`` sizes the turning object of the rotation pair."""
    t = np.linspace(0.0, 1.0, num_frames)
    jitter = max(1, round(size / 48))
    pan_max = math.ceil(0.5 * size)
    canvas = _background(rng, size + 2 * jitter, size + 2 * jitter + pan_max, size)
    main, other = _Object(rng, size, num_frames), _Object(rng, size, num_frames)
    margin = jitter + 1.0
    shift_x = rng.integers(-jitter, jitter + 1, num_frames).astype(np.float64)
    shift_y = rng.integers(-jitter, jitter + 1, num_frames).astype(np.float64)
    distance = rng.uniform(0.35, 0.5) * size  # travel of translations and pans
    other_fixed = False

    if pair in (0, 1):  # moving left (forward) / up
        r = main.reach()
        along = _place(rng, r + margin + distance, size - r - margin) - distance * t
        across = np.full(num_frames, _place(rng, r + margin, size - r - margin))
        main.x, main.y = (along, across) if pair == 0 else (across, along)
    elif pair in (2, 4):  # rotating clockwise / appearing, in place
        if pair == 2:
            main.radius *= rotating_object_scale
            main.angle = main.angle[0] + rng.uniform(0.6, 0.9) * math.pi * t
        else:
            start = rng.uniform(0.05, 0.35)
            width = min(rng.uniform(0.15, 0.4), 0.8 - start)
            main.alpha = np.clip((t - start) / width, 0, 1)
        r = main.reach()
        main.x[:] = _place(rng, r + margin, size - r - margin)
        main.y[:] = _place(rng, r + margin, size - r - margin)
    elif pair == 3:  # growing
        small, large = rng.uniform(0.45, 0.6), rng.uniform(1.3, 1.5)
        main.scale = small * (large / small) ** t
        r = main.reach()
        main.x[:] = _place(rng, r + margin, size - r - margin)
        main.y[:] = _place(rng, r + margin, size - r - margin)
    elif pair == 5:  # approaching the other object until touching
        other_fixed = True
        travel = rng.uniform(0.3, 0.42) * size
        for _ in range(100):
            direction = rng.uniform(0, 2 * math.pi)
            touch = main.radius * _extent(
                main.shape, direction + math.pi - main.angle[0]
            ) + other.radius * _extent(other.shape, direction - other.angle[0])
            ro = other.reach()
            ox, oy = (_place(rng, ro + margin, size - ro - margin) for _ in range(2))
            gap = touch + travel * (1 - t)
            xs, ys = ox + gap * math.cos(direction), oy + gap * math.sin(direction)
            r = main.reach()
            low, high = min(xs.min(), ys.min()), max(xs.max(), ys.max())
            if low >= r + margin and high <= size - r - margin:
                break
        other.x[:], other.y[:] = ox, oy
        main.x, main.y = xs, ys
    elif pair == 6:  # turning the camera left: the whole scene moves right
        shift_x += distance * t
        for item in (main, other):
            r = item.reach()
            item.x[:] = _place(rng, r + margin, size - r - margin - distance)
            item.y[:] = _place(rng, r + margin, size - r - margin)
    else:
        raise ValueError(f"pair must be in 0..{NUM_PAIRS - 1}, got {pair}")

    if not other_fixed:  # a distractor away from the main object's path, drifting slightly
        drift = rng.uniform(-0.05, 0.05, 2) * size
        ro, rm = other.reach(), main.reach()
        high = size - ro - margin - (distance if pair == 6 else 0)
        best, best_gap = (0.0, 0.0), -np.inf
        for _ in range(30):  # the candidate farthest from the path, the first clear one
            ox, oy = _place(rng, ro + margin, high), _place(rng, ro + margin, size - ro - margin)
            gap = np.hypot(main.x - ox, main.y - oy).min() - 0.8 * (ro + rm)
            if gap > best_gap:
                best, best_gap = (ox, oy), gap
            if gap > 0:
                break
        other.x, other.y = best[0] + drift[0] * t, best[1] + drift[1] * t

    frames = np.empty((num_frames, 3, size, size), np.float32)
    left0, top0 = jitter + pan_max, jitter
    for index in range(num_frames):
        top, left = top0 - int(shift_y[index]), left0 - int(shift_x[index])
        frames[index] = canvas[:, top : top + size, left : left + size]
    other.draw(frames, shift_x, shift_y)
    main.draw(frames, shift_x, shift_y)
    # pixel noise: the difference of two uniform bytes (triangular, cheap to draw)
    noise = np.frombuffer(rng.bytes(2 * frames.size), np.uint8).reshape(2, *frames.shape)
    scale = NOISE_STD * 255 / (255 / math.sqrt(6))  # to NOISE_STD of [0, 1] values
    frames *= 255
    frames += 0.5
    frames += (noise[0].astype(np.float32) - noise[1]) * scale
    frames = frames.clip(0, 255, out=frames).astype(np.uint8)
    return np.ascontiguousarray((frames[::-1] if reverse else frames).transpose(0, 2, 3, 1))


def render_video(
    seed: int,
    split: str,
    index: int,
    label: int,
    num_frames: int,
    size: int,
    *,
    rotating_object_scale: float = ROTATING_OBJECT_SCALE,
) -> np.ndarray:
    """The SynthMotion video ``(seed, split, index)`` shown as ``label``: (T, S, S, 3) uint8.
    Labels ``2k`` and ``2k + 1`` give the same scene, forwards and backwards."""
    if split not in SPLIT_IDS:
        raise ValueError(f"split must be one of {', '.join(SPLIT_IDS)}, got {split!r}")
    if not 0 <= label < len(SYNTHMOTION_CLASSES):
        raise ValueError(f"label must be in 0..{len(SYNTHMOTION_CLASSES) - 1}, got {label}")
    rng = np.random.default_rng([seed & 0xFFFFFFFF, SPLIT_IDS[split], index])
    return render_pair(
        rng,
        label // 2,
        num_frames,
        size,
        reverse=bool(label % 2),
        rotating_object_scale=rotating_object_scale,
    )


class SynthMotion(Dataset):
    """SynthMotion in memory: ``num_videos`` videos of ``num_frames`` frames of
    ``size`` x ``size``, deterministic from ``(seed, split, index)``; the label of index
    ``i`` is ``i % 14`` (balanced classes).

    ``pairs`` keeps only those pairs (e.g. ``[2]``: the rotation pair alone, to ask whether a
    network can learn it): the classes are then theirs, in that order, labelled from 0, and
    every video is the one the full data set shows for that class (the same scene).
    ``rotating_object_scale`` sizes the rotation pair's turning object (see
    :data:`ROTATING_OBJECT_SCALE`).

    ``__getitem__`` returns ``(clip, label)``: clip (3, T, size, size) float32 normalised
    with the ImageNet statistics, or what ``transform(frames (T, H, W, 3) uint8, label) ->
    (clip, label)`` returns (e.g. :func:`rsanet.data.build_transforms`).
    """

    classes = list(SYNTHMOTION_CLASSES)
    flip_pairs = SYNTHMOTION_FLIP_PAIRS

    def __init__(
        self,
        num_videos: int,
        *,
        num_frames: int = 8,
        size: int = 64,
        seed: int = 0,
        split: str = "train",
        transform: Callable | None = None,
        pairs: Sequence[int] | None = None,
        rotating_object_scale: float = ROTATING_OBJECT_SCALE,
    ) -> None:
        if num_videos < 1 or num_frames < 2 or size < 16:
            raise ValueError(
                f"SynthMotion needs num_videos >= 1, num_frames >= 2, size >= 16; "
                f"got {num_videos}, {num_frames}, {size}"
            )
        if split not in SPLIT_IDS:
            raise ValueError(f"split must be one of {', '.join(SPLIT_IDS)}, got {split!r}")
        if not rotating_object_scale > 0:
            raise ValueError(f"rotating_object_scale must be > 0, got {rotating_object_scale}")
        self.num_videos, self.num_frames, self.size = num_videos, num_frames, size
        self.seed, self.split = seed, split
        self.transform = transform if transform is not None else Compose([Normalize()])
        self.rotating_object_scale = float(rotating_object_scale)
        self.pairs = _check_pairs(pairs)
        #: class id in the full data set of each label of this one
        self._full_class = [2 * pair + side for pair in self.pairs for side in (0, 1)]
        self.classes = [SYNTHMOTION_CLASSES[c] for c in self._full_class]

    def __len__(self) -> int:
        return self.num_videos

    def label_of(self, index: int) -> int:
        return index % len(self.classes)

    def frames(self, index: int, label: int | None = None) -> np.ndarray:
        """The raw video ``index`` (T, S, S, 3) uint8; ``label`` renders the same scene as
        another class of its pair (or any class) instead."""
        if not 0 <= index < self.num_videos:
            raise IndexError(f"index {index} out of range for {self.num_videos} videos")
        label = self.label_of(index) if label is None else label
        # the full data set's index of this video: its round of 14, then its own class
        scene = len(SYNTHMOTION_CLASSES) * (index // len(self.classes))
        scene += self._full_class[self.label_of(index)]
        return render_video(
            self.seed,
            self.split,
            scene,
            self._full_class[label],
            self.num_frames,
            self.size,
            rotating_object_scale=self.rotating_object_scale,
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = self.label_of(index)
        clip, label = self.transform(self.frames(index), label)
        return clip, int(label)

    @staticmethod
    def opposite(label: int) -> int:
        """The class of the same video played backwards (2k <-> 2k + 1)."""
        return int(opposite(label))


def _check_pairs(pairs: Sequence[int] | None) -> list[int]:
    """``pairs`` as a list of distinct pair numbers (all seven when None)."""
    if pairs is None:
        return list(range(NUM_PAIRS))
    kept = [int(pair) for pair in pairs]
    if not kept or len(set(kept)) != len(kept) or not all(0 <= p < NUM_PAIRS for p in kept):
        raise ValueError(
            f"pairs must be distinct pair numbers in 0..{NUM_PAIRS - 1} (0: moving left / right,"
            f" 2: rotating, ...), got {list(pairs)}"
        )
    return kept


# -- writing to disk ----------------------------------------------------------------------


#: FFmpeg muxer of a video file extension (the temporary name of an atomic write hides it)
_MUXERS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
}


def write_video(
    path: str | Path, frames: np.ndarray, *, fps: int = 12, crf: int = 18, codec: str = "libx264"
) -> None:
    """Encode frames (T, H, W, 3) uint8 (even H and W) as an H.264 mp4 with PyAV, atomically
    (a temporary file renamed over ``path``: never a half-written video)."""
    import av

    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"mp4 (yuv420p) needs an even frame size, got {height}x{width}")
    muxer = _MUXERS.get(Path(path).suffix.lower(), "mp4")
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def write_frames(
    folder: str | Path, frames: np.ndarray, *, template: str = "{:05d}.jpg", quality: int = 90
) -> None:
    """Save frames (T, H, W, 3) uint8 as ``folder/00001.jpg ...``, atomically as a folder:
    written into a temporary folder beside it, then renamed to ``folder`` (a killed write
    leaves the previous folder, or none, never a folder with frames missing)."""
    from PIL import Image

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for number, frame in enumerate(frames, start=1):
            Image.fromarray(frame).save(tmp / template.format(number), quality=quality)
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp creates 0700
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
        elif folder.exists() or folder.is_symlink():
            folder.unlink()
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_temporaries(folder: Path) -> None:
    """Delete the temporary files and folders (``.*.tmp``) a killed write left in one of
    the folders SynthMotion writes."""
    for leftover in folder.glob(".*.tmp"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _refuse_foreign_lists(out: Path) -> None:
    """Refuse to write into ``out`` when it is a file, or holds the list files of another
    data set (a ``classes.txt`` that is not SynthMotion's, or lists without one)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; SynthMotion is written into a folder (choose another)")
    classes, lists = out / "classes.txt", [out / "train.txt", out / "val.txt"]
    expected = ("\n".join(SYNTHMOTION_CLASSES) + "\n").encode()
    if classes.is_file():
        foreign = classes.read_bytes() != expected
    else:
        foreign = any(path.exists() for path in lists)
    if foreign:
        raise ValueError(
            f"{out} holds the list files of another data set (its classes.txt is not "
            "SynthMotion's): writing train.txt/val.txt there would replace them; choose a "
            "new or empty folder"
        )


def _write_one(job: tuple) -> str:
    out, split, index, seed, num_frames, size, fmt = job
    label = index % len(SYNTHMOTION_CLASSES)
    frames = render_video(seed, split, index, label, num_frames, size)
    if fmt == "mp4":
        relative = f"videos/{split}/{index:06d}.mp4"
        write_video(Path(out) / relative, frames)
    else:
        relative = f"frames/{split}/{index:06d}"
        write_frames(Path(out) / relative, frames)
    return f"{relative} {num_frames} {label}"


def write_synthmotion(
    out: str | Path,
    num_videos: int,
    *,
    num_val_videos: int | None = None,
    num_frames: int = 16,
    size: int = 112,
    format: str = "mp4",
    seed: int = 0,
    workers: int = 0,
    progress: bool = False,
) -> dict[str, Path]:
    """Write SynthMotion to ``out`` for the ``list`` format: ``videos/<split>/N.mp4`` (or
    ``frames/<split>/N/00001.jpg``), ``train.txt`` / ``val.txt`` (``path num_frames label``)
    and ``classes.txt``. ``num_val_videos`` defaults to ``max(1, num_videos // 4)``.
    ``workers`` > 0 renders in that many processes. Returns the paths of the three files.

    Every file is written atomically, the list files last, and temporaries of a killed run
    are swept away; ``out`` must not be a file nor hold another data set's list files."""
    if format not in ("mp4", "frames"):
        raise ValueError(f"format must be 'mp4' or 'frames', got {format!r}")
    if num_videos < 1:
        raise ValueError(f"num_videos must be >= 1, got {num_videos}")
    if format == "mp4" and size % 2:
        raise ValueError(f"mp4 needs an even --size, got {size}")
    out = Path(out)
    _refuse_foreign_lists(out)
    num_val = max(1, num_videos // 4) if num_val_videos is None else num_val_videos
    jobs = {
        split: [(str(out), split, i, seed, num_frames, size, format) for i in range(count)]
        for split, count in (("train", num_videos), ("val", num_val))
    }
    for split in jobs:
        folder = out / ("videos" if format == "mp4" else "frames") / split
        folder.mkdir(parents=True, exist_ok=True)
        _remove_temporaries(folder)
    all_jobs = jobs["train"] + jobs["val"]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(all_jobs), desc="synthmotion", unit="video")
    if workers > 0:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            lines = []
            for line in pool.map(_write_one, all_jobs, chunksize=8):
                lines.append(line)
                if bar is not None:
                    bar.update()
    else:
        lines = []
        for job in all_jobs:
            lines.append(_write_one(job))
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    paths = {"train": out / "train.txt", "val": out / "val.txt", "classes": out / "classes.txt"}
    texts = {
        "classes": "\n".join(SYNTHMOTION_CLASSES) + "\n",  # first: it marks OUT as SynthMotion's
        "train": "\n".join(lines[:num_videos]) + "\n",
        "val": "\n".join(lines[num_videos:]) + "\n",
    }
    for name, text in texts.items():  # after every video: a list never names a missing one
        remove_stale_temporaries(paths[name])
        atomic_write_text(paths[name], text)
    return paths
