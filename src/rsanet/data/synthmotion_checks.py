"""Model-free checks of SynthMotion: is a class pair decidable from the pixels alone?

:func:`rotation_direction` estimates, from the frames only (no network, no renderer
state), whether the moving object of a rotation clip turns clockwise or anticlockwise on
screen; :func:`rotation_direction_accuracy` scores it on rendered clips of the rotation
pair, optionally horizontally flipped (a mirror must turn clockwise into anticlockwise,
which is what the ``swap`` flip mode assumes).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from rsanet.data.synthmotion import ROTATING_OBJECT_SCALE, SYNTHMOTION_CLASSES, render_video

#: class ids of the rotation pair: clockwise (forward) and anticlockwise (backwards)
CLOCKWISE, ANTICLOCKWISE = (
    SYNTHMOTION_CLASSES.index("rotating something clockwise"),
    SYNTHMOTION_CLASSES.index("rotating something anticlockwise"),
)


def _align(frames: torch.Tensor, reach: int) -> torch.Tensor:
    """Undo the integer camera jitter: each frame (T, C, H, W) shifted by the offset within
    ``reach`` pixels that best matches the first frame (the background dominates)."""
    reference = frames[0]
    aligned = [reference]
    for frame in frames[1:]:
        best, best_error = frame, math.inf
        for dy in range(-reach, reach + 1):
            for dx in range(-reach, reach + 1):
                moved = torch.roll(frame, (dy, dx), (-2, -1))
                inner = (slice(None), slice(reach, -reach), slice(reach, -reach))
                error = (moved[inner] - reference[inner]).square().mean().item()
                if error < best_error:
                    best, best_error = moved, error
        aligned.append(best)
    return torch.stack(aligned)


def _rotate(frames: torch.Tensor, angle: float, cx: float, cy: float) -> torch.Tensor:
    """``frames`` (N, C, H, W) turned by ``angle`` radians clockwise on screen about
    (cx, cy) (pixel coordinates, y down), bilinear."""
    height, width = frames.shape[-2:]
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    cos, sin = math.cos(angle), math.sin(angle)
    # output pixel p came from R(-angle) (p - c) + c (a clockwise turn on screen is +angle)
    dx, dy = xs - cx, ys - cy
    sx, sy = cos * dx + sin * dy + cx, -sin * dx + cos * dy + cy
    grid = torch.stack([2 * sx / (width - 1) - 1, 2 * sy / (height - 1) - 1], -1)
    return F.grid_sample(
        frames, grid.expand(len(frames), -1, -1, -1), align_corners=True, padding_mode="border"
    )


def rotation_direction(
    frames: np.ndarray | torch.Tensor,
    *,
    max_step: float = math.radians(40),
    steps: int = 40,
    radius: float = 0.22,
    candidates: int = 3,
) -> float:
    """Signed rotation speed (radians per frame, > 0: clockwise on screen) of the object
    that turns in ``frames`` (T, H, W, 3) uint8, from the pixels only.

    The camera jitter is undone by integer alignment to the first frame; the turning object
    is searched at the ``candidates`` highest peaks of the temporal variance (smoothed over a
    disc of ``radius`` x the frame size); at each, every speed in ``[-max_step, max_step]``
    (``2 * steps + 1`` values) turns each frame about that centre and is scored by how well
    it predicts the next frame inside the disc. Returns the best speed at the peak where the
    best turn beats no turn the most.
    """
    clip = torch.as_tensor(np.ascontiguousarray(frames)).float().div(255).permute(0, 3, 1, 2)
    size = min(clip.shape[-2:])
    clip = _align(clip, max(1, round(size / 48)))
    variance = clip.var(0).sum(0)[None, None]
    disc = max(1, round(radius * size))
    weights = variance.new_ones(1, 1, 2 * disc + 1, 2 * disc + 1)
    score = F.conv2d(variance, weights, padding=disc)[0, 0]
    ys, xs = torch.meshgrid(
        torch.arange(clip.shape[-2], dtype=torch.float32),
        torch.arange(clip.shape[-1], dtype=torch.float32),
        indexing="ij",
    )
    speeds = np.linspace(-max_step, max_step, 2 * steps + 1)
    best_speed, best_gain = 0.0, math.inf
    for _ in range(candidates):  # peaks of the variance, each disc suppressed in turn
        cy, cx = divmod(int(score.argmax()), score.shape[-1])
        mask = ((xs - cx).square() + (ys - cy).square() <= disc * disc).float()
        score = score.masked_fill(mask.bool(), -math.inf)
        errors = np.array(
            [
                ((_rotate(clip[:-1], float(speed), cx, cy) - clip[1:]).square().sum(1) * mask)
                .sum()
                .item()
                for speed in speeds
            ]
        )
        gain = errors.min() / max(errors[steps], 1e-12)  # best turn vs. no turn
        if gain < best_gain:
            best_speed, best_gain = float(speeds[int(errors.argmin())]), gain
    return best_speed


def rotation_direction_accuracy(
    num_videos: int = 100,
    *,
    num_frames: int = 8,
    size: int = 48,
    seed: int = 0,
    split: str = "val",
    flip: bool = False,
    downsample: int = 1,
    rotating_object_scale: float = ROTATING_OBJECT_SCALE,
) -> float:
    """Fraction of rotation clips (half clockwise, half anticlockwise; indices as in
    :class:`~rsanet.data.SynthMotion`) whose direction :func:`rotation_direction` gets
    right. ``flip`` mirrors every clip horizontally and expects the mirrored direction.
    ``downsample`` averages blocks of that many pixels first: 4 is the resolution at which
    the networks' first temporal layer sees the clip (after their stride-4 stem)."""
    right = 0
    for number in range(num_videos):
        label = (CLOCKWISE, ANTICLOCKWISE)[number % 2]
        index = 14 * (number // 2) + label
        frames = render_video(
            seed, split, index, label, num_frames, size, rotating_object_scale=rotating_object_scale
        )
        if flip:
            frames = frames[:, :, ::-1]
        if downsample > 1:
            pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
            pixels = F.avg_pool2d(pixels, downsample).round().clamp(0, 255).byte()
            frames = pixels.permute(0, 2, 3, 1).numpy()
        clockwise = rotation_direction(frames) > 0
        right += clockwise == ((label == CLOCKWISE) != flip)
    return right / num_videos
