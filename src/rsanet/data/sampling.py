"""Which frames of a video make a clip.

A sampler maps the frame count ``n`` of a video to indices ``(num_clips, clip_length)`` in
``[0, n)``. Training draws come from ``torch``'s generator (the global one by default, which
DataLoader seeds per worker), so a run is reproducible from its torch seed.

* :class:`TSNSampler` (TSN/TSM/RSA): ``clip_length`` equal segments; in training a random
  frame of each segment, in evaluation the segment centres. ``K`` evaluation clips take the
  positions ``(k + 0.5) / K`` inside each segment (uniformly spaced clips).
* :class:`DenseSampler`: ``clip_length`` frames ``stride`` apart from a start frame (random
  in training, centred in evaluation, ``K`` starts evenly spread over the video for
  multi-clip testing); videos shorter than the span loop.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

#: sampling names :func:`build_sampler` accepts
SAMPLINGS = ("tsn", "dense")


class FrameSampler(Protocol):
    clip_length: int
    num_clips: int
    train: bool

    def __call__(self, num_frames: int, generator: torch.Generator | None = None) -> np.ndarray: ...


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class TSNSampler:
    """TSN segment sampling: ``clip_length`` segments of ``n / clip_length`` frames.

    Returns int64 indices (num_clips, clip_length), non-decreasing along each clip; videos
    shorter than ``clip_length`` repeat frames.
    """

    def __init__(self, clip_length: int = 8, *, train: bool, num_clips: int = 1) -> None:
        _check_positive(clip_length=clip_length, num_clips=num_clips)
        self.clip_length, self.train, self.num_clips = clip_length, train, num_clips

    def __call__(self, num_frames: int, generator: torch.Generator | None = None) -> np.ndarray:
        _check_positive(num_frames=num_frames)
        segment = num_frames / self.clip_length
        starts = np.arange(self.clip_length) * segment
        if self.train:
            position = torch.rand(
                self.num_clips, self.clip_length, generator=generator, dtype=torch.float64
            ).numpy()
        else:
            position = (np.arange(self.num_clips)[:, None] + 0.5) / self.num_clips
            position = np.broadcast_to(position, (self.num_clips, self.clip_length))
        indices = np.floor(starts[None, :] + position * segment).astype(np.int64)
        return np.clip(indices, 0, num_frames - 1)

    def __repr__(self) -> str:
        return (
            f"TSNSampler(clip_length={self.clip_length}, train={self.train}, "
            f"num_clips={self.num_clips})"
        )


class DenseSampler:
    """Dense sampling: ``clip_length`` frames ``stride`` apart (a span of
    ``(clip_length - 1) * stride + 1`` frames). Returns int64 indices (num_clips,
    clip_length)."""

    def __init__(
        self, clip_length: int = 8, stride: int = 8, *, train: bool, num_clips: int = 1
    ) -> None:
        _check_positive(clip_length=clip_length, stride=stride, num_clips=num_clips)
        self.clip_length, self.stride = clip_length, stride
        self.train, self.num_clips = train, num_clips

    @property
    def span(self) -> int:
        return (self.clip_length - 1) * self.stride + 1

    def __call__(self, num_frames: int, generator: torch.Generator | None = None) -> np.ndarray:
        _check_positive(num_frames=num_frames)
        last_start = max(0, num_frames - self.span)
        if self.train:
            starts = torch.randint(0, last_start + 1, (self.num_clips,), generator=generator)
            starts = starts.numpy()
        elif self.num_clips == 1:
            starts = np.array([last_start // 2])
        else:
            starts = np.round(np.linspace(0, last_start, self.num_clips)).astype(np.int64)
        offsets = np.arange(self.clip_length) * self.stride
        return ((starts[:, None] + offsets[None, :]) % num_frames).astype(np.int64)

    def __repr__(self) -> str:
        return (
            f"DenseSampler(clip_length={self.clip_length}, stride={self.stride}, "
            f"train={self.train}, num_clips={self.num_clips})"
        )


def build_sampler(
    sampling: str,
    clip_length: int,
    *,
    train: bool,
    num_clips: int = 1,
    stride: int | None = None,
) -> TSNSampler | DenseSampler:
    """A sampler by name: ``tsn`` or ``dense`` (``stride`` default: 64 frames span /
    ``clip_length``, i.e. 8 for 8 frames)."""
    if sampling == "tsn":
        if stride is not None:
            raise ValueError("stride applies to dense sampling only (sampling='dense')")
        return TSNSampler(clip_length, train=train, num_clips=num_clips)
    if sampling == "dense":
        stride = stride if stride is not None else max(1, math.ceil(64 / clip_length))
        return DenseSampler(clip_length, stride, train=train, num_clips=num_clips)
    raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
