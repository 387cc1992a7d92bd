"""SynthCCTV rendering: the world a session's cameras look at, and how each camera draws it.

Everything is a function of time, so a recording can be rendered in chunks of frames and a
stretch of it can be played backwards exactly (:class:`Reversed`):

* :class:`Ground`: the static textured world (paving tiles, smooth colour noise, a walkway,
  planters, optionally a marked no-entry zone), a function of world coordinates;
* :class:`Camera`: a view of that world (centre, scale, mirror), with its own fixed pixel
  noise and colour tint;
* :class:`Actor`: a person (head, torso, two arms, two legs whose swing follows the distance
  walked) on a :class:`Track` of keyframes, with added motions (offsets, tilt to fall, arm
  strikes, crouching) given as functions of time;
* :class:`Prop`: a box on the ground or in a hand (a bag, a bin that gets damaged).

World coordinates are pixels of a camera at scale 1 whose view is the world rectangle
``[0, width] x [0, height]``; ``y`` grows downwards; an actor's position is its feet.
All drawing is vectorised over the frames of a chunk: each item is rasterised on a small
patch around it in every frame at once and composited with one fancy-indexed gather and
scatter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Motion = Callable[[np.ndarray], np.ndarray]


def sin(x) -> np.ndarray:
    """``math.sin`` of every element. NumPy's vectorised sine may round the last bit
    differently depending on where an array sits in memory; the C library's does not, and
    the output bytes must be a function of the seed alone. Used on per-frame values only."""
    x = np.asarray(x, np.float64)
    return np.fromiter(map(math.sin, x.ravel()), np.float64, x.size).reshape(x.shape)


def cos(x) -> np.ndarray:
    """``math.cos`` of every element (see :func:`sin`)."""
    x = np.asarray(x, np.float64)
    return np.fromiter(map(math.cos, x.ravel()), np.float64, x.size).reshape(x.shape)


def _norm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sqrt(a^2 + b^2) with correctly rounded operations only (see :func:`sin`)."""
    return np.sqrt(a * a + b * b)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, a smooth S between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def window(t: np.ndarray, start: float, end: float, ramp: float = 0.3) -> np.ndarray:
    """1 inside ``[start, end]``, ramping smoothly from 0 over ``ramp`` seconds at both ends."""
    return smoothstep((t - start) / ramp) * smoothstep((end - t) / ramp)


def hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    return (value - value * saturation * np.clip(np.minimum(k, 4 - k), 0, 1)).astype(np.float32)


def _bilinear(grid: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """``grid`` (rows, cols) sampled at fractional cell coordinates (clamped to the grid)."""
    gx = np.clip(gx, 0, grid.shape[1] - 1.001)
    gy = np.clip(gy, 0, grid.shape[0] - 1.001)
    x0, y0 = gx.astype(int), gy.astype(int)
    fx, fy = gx - x0, gy - y0
    top = grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx
    bottom = grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


# -- the world and the cameras ------------------------------------------------------------


@dataclass
class Zone:
    """A marked rectangle (world pixels) that nobody should enter."""

    x0: float
    y0: float
    x1: float
    y1: float

    def contains(self, x: float, y: float, margin: float = 0.0) -> bool:
        return (
            self.x0 - margin <= x <= self.x1 + margin and self.y0 - margin <= y <= self.y1 + margin
        )

    def distance(self, x: float, y: float) -> float:
        """Distance from (x, y) to the rectangle (0 inside)."""
        return math.hypot(max(self.x0 - x, 0, x - self.x1), max(self.y0 - y, 0, y - self.y1))


class Ground:
    """The static world: square paving tiles with grout lines, smooth colour noise, a lighter
    walkway across the scene, a few dark planters, and the marked zone if there is one."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, season: int) -> None:
        self.width, self.height = width, height
        hue = rng.random()
        self.dark = hsv(hue, rng.uniform(0.05, 0.35), rng.uniform(0.25, 0.4))
        self.light = hsv((hue + rng.uniform(-0.1, 0.1)) % 1, rng.uniform(0.05, 0.3), 0.55)
        self.walkway = hsv(rng.random(), rng.uniform(0.0, 0.2), rng.uniform(0.6, 0.75))
        self.tile = rng.uniform(0.08, 0.14) * width
        self.tile_phase = rng.uniform(0, 1, 2)
        self.noise = rng.random((7, 9)).astype(np.float32)  # over [-w/2, 3w/2] x [-h/2, 3h/2]
        self.band = (rng.uniform(0.3, 0.7) * height, rng.uniform(0.12, 0.22) * height)
        self.band_slope = rng.uniform(-0.15, 0.15)
        self.planters = [
            (rng.uniform(-0.2, 1.2) * width, rng.uniform(0.02, 0.25) * height, rng.uniform(8, 20))
            for _ in range(rng.integers(1, 4))
        ]
        self.tint = np.array([1.0, 1.0, 1.0], np.float32) + (
            np.array([[0, 0.04, -0.03], [0.03, 0.02, -0.04], [0.06, 0.0, -0.06], [-0.03, 0, 0.04]])[
                season
            ]
        ).astype(np.float32)
        self.zone: Zone | None = None

    def colour(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """RGB (..., 3) float32 in [0, 1] at world points."""
        w, h = self.width, self.height
        noise = _bilinear(self.noise, (x + w / 2) / (2 * w) * 8, (y + h / 2) / (2 * h) * 6)
        mix = np.clip(0.25 + 0.6 * noise, 0, 1)[..., None]
        rgb = self.dark + (self.light - self.dark) * mix
        centre, half = self.band
        inside = np.abs(y - centre - self.band_slope * (x - w / 2)) < half
        rgb = np.where(inside[..., None], 0.7 * self.walkway + 0.3 * rgb, rgb)
        gx = (x / self.tile + self.tile_phase[0]) % 1
        gy = (y / self.tile + self.tile_phase[1]) % 1
        grout = (np.minimum(gx, 1 - gx) < 0.05) | (np.minimum(gy, 1 - gy) < 0.05)
        rgb = np.where(grout[..., None], 0.8 * rgb, rgb)
        for px, py, radius in self.planters:
            cover = np.clip(radius - _norm(x - px, (y - py) * 1.6), 0, 1)[..., None]
            rgb = rgb + (np.array([0.15, 0.3, 0.12], np.float32) - rgb) * cover
        if self.zone is not None:
            z = self.zone
            inside = (x >= z.x0) & (x <= z.x1) & (y >= z.y0) & (y <= z.y1)
            edge = np.minimum.reduce([x - z.x0, z.x1 - x, y - z.y0, z.y1 - y])
            border = inside & (edge < 2.0)
            hatch = inside & (((x + y) / 7.0) % 1 < 0.25)
            yellow = np.array([0.9, 0.8, 0.1], np.float32)
            rgb = np.where(hatch[..., None], 0.6 * rgb + 0.4 * yellow, rgb)
            rgb = np.where(border[..., None], yellow, rgb)
        return (rgb * self.tint).astype(np.float32)


@dataclass
class Camera:
    """A view of the world: the world point at the image centre, the scale (image pixels per
    world pixel), a horizontal mirror (seen from the other side), the image size, an
    exposure factor, a seed for the fixed pixel noise."""

    cx: float
    cy: float
    scale: float
    mirror: bool
    width: int
    height: int
    exposure: float = 1.0
    noise_seed: Sequence[int] = (0,)
    _background: np.ndarray | None = field(default=None, repr=False)

    def to_image(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = (x - self.cx) * self.scale + self.width / 2
        v = (y - self.cy) * self.scale + self.height / 2
        return (self.width - u if self.mirror else u), v

    def background(self, ground: Ground) -> np.ndarray:
        """The ground as this camera sees it, fixed pixel noise included: (H, W, 3) float32."""
        if self._background is None:
            u = np.arange(self.width, dtype=np.float64) + 0.5
            v = np.arange(self.height, dtype=np.float64) + 0.5
            if self.mirror:
                u = self.width - u
            x = (u - self.width / 2) / self.scale + self.cx
            y = (v - self.height / 2) / self.scale + self.cy
            xx, yy = np.meshgrid(x, y)
            rng = np.random.default_rng(list(self.noise_seed))
            fixed = rng.normal(0, 0.015, (self.height, self.width, 3)).astype(np.float32)
            self._background = ground.colour(xx, yy) * self.exposure + fixed
        return self._background


# -- things that move ---------------------------------------------------------------------


class Track:
    """A path through keyframes ``(time, x, y)`` (times increasing), straight between them,
    standing still before the first and after the last; with the distance walked."""

    def __init__(self, keys: Sequence[tuple[float, float, float]]) -> None:
        keys = np.asarray(keys, np.float64)
        if np.any(np.diff(keys[:, 0]) <= 0):
            raise ValueError("track keyframe times must increase")
        self.t, self.x, self.y = keys.T
        steps = _norm(np.diff(self.x), np.diff(self.y))
        self.dist = np.concatenate([[0.0], np.cumsum(steps)])

    def at(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.interp(t, self.t, self.x),
            np.interp(t, self.t, self.y),
            np.interp(t, self.t, self.dist),
        )


def body_height(y: np.ndarray, world_height: float, person_scale: float = 1.0) -> np.ndarray:
    """A person's height (world pixels) with the feet at ``y``: smaller far away (up). At
    ``person_scale`` 1, 17 % of the world's height at the top edge and 30 % at the bottom."""
    return person_scale * world_height * (0.17 + 0.13 * np.clip(y / world_height, -0.5, 1.5))


class Actor:
    """A person on a :class:`Track`. ``motions`` add to ``dx``, ``dy`` (world pixels),
    ``tilt`` (radians about the feet; +-pi/2 lies down), ``arm`` (0 hanging .. 1 struck out
    towards ``facing``), ``crouch`` (0 .. 1) and set ``facing`` (+1 right, -1 left)."""

    def __init__(
        self,
        track: Track,
        rng: np.random.Generator,
        world_height: float,
        name: str = "",
        person_scale: float = 1.0,
    ) -> None:
        self.track, self.name, self.world_height = track, name, world_height
        self.person_scale = person_scale
        self.size = rng.uniform(0.9, 1.1)
        self.shirt = hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.35, 0.95))
        self.legs = hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.1, 0.5))
        self.head = hsv(rng.uniform(0.03, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.8))
        self.motions: dict[str, list[Motion]] = {}
        self.facing: Motion | float = 1.0 if rng.random() < 0.5 else -1.0

    def add(self, channel: str, motion: Motion) -> Actor:
        self.motions.setdefault(channel, []).append(motion)
        return self

    def _sum(self, channel: str, t: np.ndarray) -> np.ndarray:
        total = np.zeros_like(t)
        for motion in self.motions.get(channel, ()):
            total = total + motion(t)
        return total

    def state(self, t: np.ndarray) -> dict[str, np.ndarray]:
        x, y, dist = self.track.at(t)
        _, _, ahead = self.track.at(t + 0.1)
        _, _, behind = self.track.at(t - 0.1)
        height = body_height(y, self.world_height, self.person_scale) * self.size
        stride = 0.2 * self.world_height * self.person_scale  # a step, world pixels
        facing = self.facing(t) if callable(self.facing) else np.full_like(t, self.facing)
        return {
            "x": x + self._sum("dx", t),
            "y": y + self._sum("dy", t),
            "h": height,
            "phase": dist / stride * 2 * math.pi,
            "gait": np.clip((ahead - behind) / 0.2 / (0.05 * self.world_height), 0, 1),
            "tilt": self._sum("tilt", t),
            "arm": np.clip(self._sum("arm", t), 0, 1),
            "crouch": np.clip(self._sum("crouch", t), 0, 1),
            "facing": np.sign(facing + 1e-9),
        }


class Prop:
    """A box: ``where(t)`` gives its bottom centre (x, y) world arrays; ``width``, ``height``
    in world pixels; ``damage(t)`` in [0, 1] flattens, tilts and darkens it; ``shown(t)``."""

    def __init__(
        self,
        where: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
        width: float,
        height: float,
        colour: np.ndarray,
        *,
        damage: Motion | None = None,
        shown: Motion | None = None,
    ) -> None:
        self.where, self.width, self.height, self.colour = where, width, height, colour
        self.damage, self.shown = damage, shown

    def state(self, t: np.ndarray) -> dict[str, np.ndarray]:
        x, y = self.where(t)
        damage = np.zeros_like(t) if self.damage is None else self.damage(t)
        shown = np.ones_like(t) if self.shown is None else self.shown(t)
        return {"x": x, "y": y, "damage": damage, "shown": shown}


class Reversed:
    """``item`` played backwards around the frame ``pivot``: its state at frame ``i`` is the
    item's at frame ``pivot - i`` (exactly: times are rebuilt from whole frame numbers)."""

    def __init__(self, item: Actor | Prop, pivot: int, fps: float) -> None:
        self.item, self.pivot, self.fps = item, pivot, fps
        self.name = getattr(item, "name", "")

    def __getattr__(self, name: str):
        return getattr(self.item, name)

    def state(self, t: np.ndarray) -> dict[str, np.ndarray]:
        frames = np.rint(t * self.fps)
        return self.item.state((self.pivot - frames) / self.fps)


# -- drawing ------------------------------------------------------------------------------


def _segment(u, v, ax, ay, bx, by):
    """Distance from points (u, v) to the segments a-b (broadcast)."""
    ex, ey = bx - ax, by - ay
    along = np.clip(((u - ax) * ex + (v - ay) * ey) / (ex * ex + ey * ey + 1e-9), 0, 1)
    return _norm(u - ax - along * ex, v - ay - along * ey)


def _cover(distance: np.ndarray, radius) -> np.ndarray:
    return np.clip(radius - distance + 0.5, 0, 1)


def _patch(frames, camera, x, y, half_width, up, down):
    """Pixel grids of a patch around (x, y) image points per frame, only for the frames
    where it meets the image: (frame index, rows, cols, centres u, v) or None."""
    n, height, width = frames.shape[:3]
    pw = int(math.ceil(2 * half_width.max())) + 2
    ph = int(math.ceil((up + down).max())) + 2
    x0 = np.floor(x - half_width).astype(int)
    y0 = np.floor(y - up).astype(int)
    seen = (x0 < width) & (x0 + pw > 0) & (y0 < height) & (y0 + ph > 0)
    if not seen.any():
        return None
    index = np.flatnonzero(seen)
    rows = y0[index, None, None] + np.arange(ph)[None, :, None]
    cols = x0[index, None, None] + np.arange(pw)[None, None, :]
    return index, rows, cols


def _composite(frames, index, rows, cols, layers) -> None:
    """Blend ``layers`` [(coverage (k, ph, pw), colour (3,) or (k, 3))] in order onto
    ``frames`` at the patch pixels."""
    height, width = frames.shape[1:3]
    total = np.maximum.reduce([cover for cover, _ in layers])
    mask = (total > 0) & (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    if not mask.any():
        return
    frame_of = np.broadcast_to(index[:, None, None], mask.shape)[mask]
    place = (
        frame_of,
        np.broadcast_to(rows, mask.shape)[mask],
        np.broadcast_to(cols, mask.shape)[mask],
    )
    pixels = frames[place]
    slot = np.broadcast_to(np.arange(len(index))[:, None, None], mask.shape)[mask]
    for cover, colour in layers:
        alpha = cover[mask][:, None]
        tone = colour if colour.ndim == 1 else colour[slot]
        pixels += (tone - pixels) * alpha
    frames[place] = pixels


def draw_actor(frames: np.ndarray, camera: Camera, state: dict, actor: Actor) -> None:
    """Draw a person (state of every frame of ``frames``) into ``frames`` (n, H, W, 3)."""
    x, y = camera.to_image(state["x"], state["y"])
    side = -1.0 if camera.mirror else 1.0
    h = state["h"] * camera.scale
    tilt, facing = state["tilt"] * side, state["facing"] * side
    lying = np.abs(tilt).max() > 0.35
    found = _patch(
        frames, camera, x, y, (1.05 if lying else 0.5) * h, 1.05 * h, (0.35 if lying else 0.12) * h
    )
    if found is None:
        return
    index, rows, cols = found

    def per_frame(value):
        return value[index, None, None]

    h, x, y = per_frame(h), per_frame(x), per_frame(y)
    cos_t, sin_t = cos(per_frame(tilt)), sin(per_frame(tilt))
    dx = cols + 0.5 - x
    dy = y - (rows + 0.5)  # upwards
    u = dx * cos_t - dy * sin_t
    v = dx * sin_t + dy * cos_t
    tall = h * (1 - 0.35 * per_frame(state["crouch"]))
    swing = per_frame(state["gait"] * sin(state["phase"]))
    hip, shoulder = 0.47 * tall, 0.76 * tall
    zero = np.zeros_like(h)
    legs = np.minimum(
        _segment(u, v, zero, hip, 0.16 * h * swing, zero),
        _segment(u, v, zero, hip, -0.16 * h * swing, zero),
    )
    strike = per_frame(state["arm"])
    reach_u = -0.1 * h * swing + strike * (per_frame(facing) * 0.42 * h + 0.1 * h * swing)
    reach_v = 0.45 * tall + strike * 0.27 * tall
    upper = np.minimum.reduce(
        [
            _segment(u, v, zero, hip, zero, shoulder) - 0.045 * h,
            _segment(u, v, zero, shoulder, reach_u, reach_v),
            _segment(u, v, zero, shoulder, 0.1 * h * swing, 0.45 * tall),
        ]
    )
    head = _norm(u, v - 0.89 * tall)
    layers = [
        (_cover(legs, 0.05 * h), actor.legs),
        (_cover(upper, 0.04 * h), actor.shirt),
        (_cover(head, 0.085 * h), actor.head),
    ]
    _composite(frames, index, rows, cols, layers)


def draw_prop(frames: np.ndarray, camera: Camera, state: dict, prop: Prop) -> None:
    """Draw a box (state of every frame) into ``frames``."""
    x, y = camera.to_image(state["x"], state["y"])
    side = -1.0 if camera.mirror else 1.0
    damage = state["damage"]
    w = np.full_like(x, prop.width * camera.scale)
    h = prop.height * camera.scale * (1 - 0.35 * damage)
    tilt = 0.35 * damage * side
    reach = np.maximum(w, h) * 0.75 + 1
    found = _patch(frames, camera, x, y, reach, 2 * reach, reach)
    if found is None:
        return
    index, rows, cols = found
    keep = state["shown"][index] > 0
    if not keep.any():
        return
    index, rows, cols = index[keep], rows[keep], cols[keep]

    def per_frame(value):
        return value[index, None, None]

    cos_t, sin_t = cos(per_frame(tilt)), sin(per_frame(tilt))
    dx = cols + 0.5 - per_frame(x)
    dy = per_frame(y) - (rows + 0.5)
    u = dx * cos_t - dy * sin_t
    v = dx * sin_t + dy * cos_t - per_frame(h) / 2
    gauge = np.maximum(np.abs(u) / (per_frame(w) / 2), np.abs(v) / (per_frame(h) / 2))
    cover = np.clip((1 - gauge) * per_frame(np.minimum(w, h)) / 2 + 0.5, 0, 1)
    scar = (np.abs(u + 0.3 * v) < 0.12 * per_frame(w)) * per_frame(damage)
    colour = prop.colour * (1 - 0.5 * damage[index, None])
    layers = [
        (cover, colour),
        (cover * np.clip(scar, 0, 1), np.array([0.08, 0.06, 0.05], np.float32)),
    ]
    _composite(frames, index, rows, cols, layers)
