"""Clip transforms: (T, H, W, C) uint8 frames in, (C, T, H, W) float32 clips out.

:class:`Compose` takes a clip (T, H, W, C), or a stack of views (V, T, H, W, C), as a numpy
array or a tensor, and a label; it hands the transforms a tensor (V, T, C, H, W) (a view of
the input: the same memory, channels last, which keeps resizing uint8 fast) and returns
``(clip, label)`` with the clip (C, T, H, W), or (V', C, T, H, W) when the input had a view
axis or a transform made several views (:class:`ThreeCrop`).

Spatial transforms act on the last two axes and keep the dtype (uint8 stays uint8 until
:class:`Normalize`, which maps to ``(x / 255 - mean) / std``). One random draw per clip:
all frames and views get the same crop and flip. Randomness comes from ``torch`` (the global
generator unless one is given), so DataLoader's per-worker seeding makes runs reproducible.

Horizontal flips change the meaning of direction-bearing labels ("Pushing something from
left to right"); :class:`RandomHorizontalFlip` has three modes: ``none`` (never flip),
``skip`` (flip, except samples of direction-bearing classes: the RSA paper) and ``swap``
(flip, and swap the label with its mirror class). The pairs are given by class name and
resolved to ids by :func:`resolve_flip_pairs` from whichever label file is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: ImageNet statistics of [0, 1] RGB values, the default normalisation
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: TSN multi-scale crop: crop sides relative to the short side of the frame
MULTI_SCALE_CROP_SCALES = (1.0, 0.875, 0.75, 0.66)
#: full-frame training crops keep at least this fraction of each side of the frame
FULL_FRAME_MIN_SCALE = 0.9
#: crop positions of the multi-scale crop as (top, left) fractions of the free space:
#: centre, corners, edge middles and the four quarter points
CROP_POSITIONS = (
    (0.5, 0.5),
    (0.0, 0.0),
    (0.0, 1.0),
    (1.0, 0.0),
    (1.0, 1.0),
    (0.0, 0.5),
    (1.0, 0.5),
    (0.5, 0.0),
    (0.5, 1.0),
    (0.25, 0.25),
    (0.25, 0.75),
    (0.75, 0.25),
    (0.75, 0.75),
)
#: flip modes for direction-bearing labels
FLIP_MODES = ("none", "skip", "swap")

#: Something-Something (V1 and V2) classes that a horizontal flip turns into each other
SOMETHING_FLIP_PAIRS = (
    ("Pushing something from left to right", "Pushing something from right to left"),
    ("Pulling something from left to right", "Pulling something from right to left"),
    (
        "Turning the camera left while filming something",
        "Turning the camera right while filming something",
    ),
)

ClipTransform = Callable[[torch.Tensor], torch.Tensor]


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return int(height), int(width)


def _resize(clip: torch.Tensor, height: int, width: int, antialias: bool = True) -> torch.Tensor:
    """Bilinear resize of the last two axes of (..., C, H, W); uint8 stays uint8."""
    if clip.shape[-2:] == (height, width):
        return clip
    lead = clip.shape[:-3]
    flat = clip.reshape(-1, *clip.shape[-3:])
    if flat.dtype == torch.uint8 and not flat.is_contiguous(memory_format=torch.channels_last):
        flat = flat.contiguous(memory_format=torch.channels_last)
    elif flat.dtype not in (torch.uint8, torch.float32, torch.float64):
        flat = flat.float()
    down = height < flat.shape[-2] or width < flat.shape[-1]
    out = F.interpolate(
        flat,
        size=(height, width),
        mode="bilinear",
        align_corners=False,
        antialias=antialias and down,
    )
    return out.reshape(*lead, *out.shape[-3:])


class ResizeShortSide:
    """Resize (..., C, H, W) so that the short side is ``size`` (aspect ratio kept)."""

    def __init__(self, size: int, antialias: bool = True) -> None:
        self.size, self.antialias = int(size), antialias

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        height, width = clip.shape[-2:]
        if height <= width:
            new = (self.size, max(1, round(width * self.size / height)))
        else:
            new = (max(1, round(height * self.size / width)), self.size)
        return _resize(clip, *new, antialias=self.antialias)

    def __repr__(self) -> str:
        return f"ResizeShortSide({self.size})"


class Resize:
    """Resize (..., C, H, W) to exactly ``size`` (an int for square)."""

    def __init__(self, size: int | Sequence[int], antialias: bool = True) -> None:
        self.size, self.antialias = _size_pair(size), antialias

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return _resize(clip, *self.size, antialias=self.antialias)

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class CenterCrop:
    """The centre ``size`` crop of (..., C, H, W); frames smaller than ``size`` are an
    error (resize first)."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _size_pair(size)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        height, width = clip.shape[-2:]
        crop_h, crop_w = self.size
        if crop_h > height or crop_w > width:
            raise ValueError(
                f"frames {height}x{width} are smaller than the crop "
                f"{crop_h}x{crop_w}: resize them first (ResizeShortSide)"
            )
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return clip[..., top : top + crop_h, left : left + crop_w]

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class ThreeCrop:
    """Three ``size`` x ``size`` crops along the long side (left/centre/right, or
    top/centre/bottom): views (V, T, C, H, W) -> (3V, T, C, size, size), view-major."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        height, width = clip.shape[-2:]
        size = self.size
        if size > min(height, width):
            raise ValueError(
                f"frames {height}x{width} are smaller than the crop {size}: "
                "resize the short side to the crop size first"
            )
        if width >= height:
            top = (height - size) // 2
            boxes = [(top, left) for left in (0, (width - size) // 2, width - size)]
        else:
            left = (width - size) // 2
            boxes = [(top, left) for top in (0, (height - size) // 2, height - size)]
        crops = [clip[..., t : t + size, l : l + size] for t, l in boxes]
        return torch.stack(crops, dim=1).flatten(0, 1)

    def __repr__(self) -> str:
        return f"ThreeCrop({self.size})"


class MultiScaleCrop:
    """TSN multi-scale crop: a crop of height and width each ``scale x short side``
    (scales at most ``max_distort`` steps apart in ``scales``), at one of
    :data:`CROP_POSITIONS`, resized to ``size``."""

    def __init__(
        self,
        size: int | Sequence[int],
        scales: Sequence[float] = MULTI_SCALE_CROP_SCALES,
        *,
        max_distort: int = 1,
        positions: Sequence[tuple[float, float]] = CROP_POSITIONS,
        generator: torch.Generator | None = None,
    ) -> None:
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f"scales must be in (0, 1], got {scales!r}")
        self.size, self.scales, self.positions = _size_pair(size), tuple(scales), tuple(positions)
        self.pairs = [
            (i, j)
            for i in range(len(scales))
            for j in range(len(scales))
            if abs(i - j) <= max_distort
        ]
        self.generator = generator

    def params(self, height: int, width: int) -> tuple[int, int, int, int]:
        """A random crop box (top, left, crop height, crop width) of a height x width frame."""
        base = min(height, width)
        draw = torch.randint(
            0, len(self.pairs) * len(self.positions), (1,), generator=self.generator
        ).item()
        i, j = self.pairs[draw % len(self.pairs)]
        fy, fx = self.positions[draw // len(self.pairs)]
        crop_h, crop_w = max(1, int(base * self.scales[i])), max(1, int(base * self.scales[j]))
        return round(fy * (height - crop_h)), round(fx * (width - crop_w)), crop_h, crop_w

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        top, left, crop_h, crop_w = self.params(*clip.shape[-2:])
        return _resize(clip[..., top : top + crop_h, left : left + crop_w], *self.size)

    def __repr__(self) -> str:
        return f"MultiScaleCrop({self.size}, scales={self.scales})"


class RandomFrameCrop:
    """A random crop keeping at least ``min_scale`` of each side of the frame (one draw per
    clip: the sides' fractions and the position), resized to ``size`` x ``size`` with the
    aspect ratio not kept. The training view of a fixed camera, where an event can happen
    anywhere in the picture and a crop of the short side could cut it out."""

    def __init__(
        self,
        size: int | Sequence[int],
        min_scale: float = FULL_FRAME_MIN_SCALE,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale!r}")
        self.size, self.min_scale, self.generator = _size_pair(size), float(min_scale), generator

    def params(self, height: int, width: int) -> tuple[int, int, int, int]:
        """A random crop box (top, left, crop height, crop width) of a height x width frame."""
        draw = torch.rand(4, generator=self.generator).tolist()
        crop_h = max(1, round(height * (self.min_scale + (1 - self.min_scale) * draw[0])))
        crop_w = max(1, round(width * (self.min_scale + (1 - self.min_scale) * draw[1])))
        return round(draw[2] * (height - crop_h)), round(draw[3] * (width - crop_w)), crop_h, crop_w

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        top, left, crop_h, crop_w = self.params(*clip.shape[-2:])
        return _resize(clip[..., top : top + crop_h, left : left + crop_w], *self.size)

    def __repr__(self) -> str:
        return f"RandomFrameCrop({self.size}, min_scale={self.min_scale:g})"


def _normalise_name(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("[", "").replace("]", "")).strip().lower()


def resolve_flip_pairs(
    classes: Sequence[str], pairs: Iterable[tuple[str, str]] = SOMETHING_FLIP_PAIRS
) -> dict[int, int]:
    """Class ids that a horizontal flip swaps, both ways: ``{id_a: id_b, id_b: id_a}``,
    from ``pairs`` of class names found in ``classes`` (case, brackets and spacing ignored;
    pairs not in ``classes`` are left out)."""
    index = {_normalise_name(name): i for i, name in enumerate(classes)}
    resolved: dict[int, int] = {}
    for first, second in pairs:
        a, b = index.get(_normalise_name(first)), index.get(_normalise_name(second))
        if a is not None and b is not None:
            resolved[a], resolved[b] = b, a
    return resolved


class RandomHorizontalFlip:
    """Flip (..., W) with probability ``p``, minding direction-bearing labels.

    ``mode``: ``none`` never flips; ``skip`` never flips samples whose label is in
    ``pairs``; ``swap`` flips any sample and maps a flipped label through ``pairs``.
    ``pairs``: class id -> its mirror id (see :func:`resolve_flip_pairs`).
    """

    needs_label = True

    def __init__(
        self,
        p: float = 0.5,
        mode: str = "skip",
        pairs: Mapping[int, int] | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        if mode not in FLIP_MODES:
            raise ValueError(f"flip mode must be one of {', '.join(FLIP_MODES)}, got {mode!r}")
        if not 0 <= p <= 1:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p, self.mode, self.pairs = p, mode, dict(pairs or {})
        self.generator = generator

    def __call__(self, clip: torch.Tensor, label: int) -> tuple[torch.Tensor, int]:
        if self.mode == "none" or (self.mode == "skip" and label in self.pairs):
            return clip, label
        if torch.rand(1, generator=self.generator).item() >= self.p:
            return clip, label
        label = self.pairs.get(label, label) if self.mode == "swap" else label
        return clip.flip(-1), label

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p}, mode={self.mode!r}, pairs={len(self.pairs)})"


class Normalize:
    """``(x / 255 - mean) / std`` per channel of (..., C, H, W) uint8 (float input is taken
    as [0, 1]); returns float32."""

    def __init__(
        self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        scale = 1 / self.std if clip.is_floating_point() else 1 / (255 * self.std)
        return clip.to(torch.float32) * scale - self.mean / self.std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def denormalize(
    clip: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Undo :class:`Normalize` on (..., C, T, H, W): [0, 1] float values (for display)."""
    shape = (-1, 1, 1, 1)
    mean_t = torch.tensor(mean, dtype=clip.dtype).view(shape)
    std_t = torch.tensor(std, dtype=clip.dtype).view(shape)
    return (clip * std_t + mean_t).clamp(0, 1)


def as_views(frames: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Frames (T, H, W, C) or (V, T, H, W, C) as a tensor (V, T, C, H, W) (a view, no
    copy), and whether the input had the view axis."""
    clip = (
        torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    )
    if clip.dim() not in (4, 5) or clip.shape[-1] not in (1, 3):
        raise ValueError(
            f"expected frames (T, H, W, C) or (V, T, H, W, C) with C = 3, "
            f"got shape {tuple(clip.shape)}"
        )
    had_views = clip.dim() == 5
    if not had_views:
        clip = clip.unsqueeze(0)
    return clip.permute(0, 1, 4, 2, 3), had_views


class Compose:
    """Apply ``transforms`` in turn to a clip: ``(frames, label) -> (clip, label)``.

    ``frames``: (T, H, W, C) or (V, T, H, W, C) uint8, numpy or torch. Transforms get
    (V, T, C, H, W); those with ``needs_label`` get and return ``(clip, label)``. The result
    is (C, T, H, W), or (V', C, T, H, W) when the input had a view axis or V' > 1.
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(
        self, frames: np.ndarray | torch.Tensor, label: int = -1
    ) -> tuple[torch.Tensor, int]:
        clip, had_views = as_views(frames)
        for transform in self.transforms:
            if getattr(transform, "needs_label", False):
                clip, label = transform(clip, label)
            else:
                clip = transform(clip)
        if not clip.is_floating_point():
            clip = clip.to(torch.float32) / 255
        clip = clip.permute(0, 2, 1, 3, 4).contiguous()
        if clip.shape[0] == 1 and not had_views:
            clip = clip[0]
        return clip, label

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


def build_transforms(
    *,
    train: bool,
    size: int,
    flip_mode: str = "none",
    flip_pairs: Mapping[int, int] | None = None,
    flip_prob: float = 0.5,
    num_crops: int = 1,
    scales: Sequence[float] = MULTI_SCALE_CROP_SCALES,
    resize: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    full_frame: bool = False,
) -> Compose:
    """The TSN/TSM/RSA pipeline.

    Training: :class:`MultiScaleCrop` to ``size``, :class:`RandomHorizontalFlip`
    (``flip_mode``), :class:`Normalize`. Evaluation, one crop: short side to ``resize``
    (default ``size * 256 / 224``), :class:`CenterCrop`; three crops: short side to ``size``,
    :class:`ThreeCrop` (TSM's multi-crop test), then :class:`Normalize`.

    ``full_frame`` (fixed cameras: nothing of the picture may be cut away): training takes
    :class:`RandomFrameCrop` instead of the multi-scale crop, and evaluation resizes the
    short side to ``size``, then the whole frame to ``size`` x ``size`` (one crop only).
    """
    if flip_mode not in FLIP_MODES:
        raise ValueError(f"flip_mode must be one of {', '.join(FLIP_MODES)}, got {flip_mode!r}")
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops!r}")
    if full_frame and num_crops != 1:
        raise ValueError("full_frame shows the whole frame: num_crops must be 1")
    steps: list[Callable] = []
    if train:
        if num_crops != 1:
            raise ValueError("num_crops=3 is for evaluation (train=False)")
        steps.append(RandomFrameCrop(size) if full_frame else MultiScaleCrop(size, scales))
        if flip_mode != "none":
            steps.append(RandomHorizontalFlip(flip_prob, flip_mode, flip_pairs))
    elif full_frame:
        steps += [ResizeShortSide(size), Resize(size)]
    elif num_crops == 1:
        steps += [ResizeShortSide(resize or round(size * 256 / 224)), CenterCrop(size)]
    else:
        steps += [ResizeShortSide(resize or size), ThreeCrop(size)]
    steps.append(Normalize(mean, std))
    return Compose(steps)
