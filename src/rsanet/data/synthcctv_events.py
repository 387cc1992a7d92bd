"""SynthCCTV choreography: how the people of a session move, as keyframed tracks plus
motions (functions of time) on :class:`~rsanet.data.synthcctv_render.Actor`.

:func:`walkers` makes the distractors; :data:`CHOREOGRAPHY` maps each event class to the
function that stages it between ``ts`` and ``te`` (seconds), returning its actors, its props
(with whether they are drawn over the people) and its actions ``(actor, action, start_s,
end_s)``; :func:`vandalism` also takes the scene's bin. :class:`Stage` holds what they
share: the session's random generator, where people come from and go to, and the marked
zone that nobody but an intruder may enter. The motions are described in
:mod:`rsanet.data.synthcctv`.
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np

from rsanet.data.synthcctv_render import (
    Actor,
    Prop,
    Reversed,
    Track,
    Zone,
    body_height,
    hsv,
    sin,
    smoothstep,
    window,
)


class Stage:
    """Shared helpers of the event choreographies: the world size, the session's rng, where
    people come from and go to, how large they are."""

    def __init__(
        self,
        rng: np.random.Generator,
        size: tuple[int, int],
        fps: int,
        zone: Zone | None,
        person_scale: float = 1.0,
    ) -> None:
        self.rng, self.fps, self.zone, self.person_scale = rng, fps, zone, person_scale
        self.w, self.h = size
        self.avoid: list[tuple[float, float]] = []  # points to keep away from (the bin)

    def speed(self) -> float:
        return self.rng.uniform(0.10, 0.16) * self.w

    def spot(self, clearance: float = 0.06) -> tuple[float, float]:
        """A free point seen by every camera, away from the bin and at least ``clearance``
        (a fraction of the width) from the zone."""
        best, best_score = (0.0, 0.0), -math.inf
        for _ in range(100):  # the first clear point, else the clearest
            x, y = self.rng.uniform(0.3, 0.7) * self.w, self.rng.uniform(0.35, 0.88) * self.h
            score = min(
                [math.hypot(x - ax, y - ay) - 0.15 * self.w for ax, ay in self.avoid]
                + ([] if self.zone is None else [self.zone.distance(x, y) - clearance * self.w])
                + [math.inf]
            )
            if score > 0:
                return x, y
            if score > best_score:
                best, best_score = (x, y), score
        return best

    def off_screen(self, side: float, y: float) -> tuple[float, float]:
        """A point outside every camera's view on the ``side`` (-1 left, +1 right)."""
        x = -0.45 * self.w if side < 0 else 1.45 * self.w
        return x, float(np.clip(y + self.rng.uniform(-0.1, 0.1) * self.h, 0.3 * self.h, self.h))

    def side(self) -> float:
        return -1.0 if self.rng.random() < 0.5 else 1.0

    def clear(self, *points) -> bool:
        """Whether the straight path through ``points`` stays out of the zone."""
        if self.zone is None:
            return True
        for (ax, ay), (bx, by) in pairwise(points):
            for f in np.linspace(0, 1, 25):
                if self.zone.contains(ax + f * (bx - ax), ay + f * (by - ay), 0.02 * self.w):
                    return False
        return True

    def _route(self, point, side) -> list:
        """Points from off screen on ``side`` (or the other side) to ``point`` avoiding the
        zone: straight, else along a line just above or below it."""
        first = side or self.side()
        for candidate in (first,) if side else (first, -first):
            start = self.off_screen(candidate, point[1])
            if self.clear(start, point):
                return [start, point]
        z = self.zone
        below = point[1] > (z.y0 + z.y1) / 2
        lane = z.y1 + 0.06 * self.h if below else z.y0 - 0.06 * self.h
        return [(self.off_screen(first, lane)[0], lane), (point[0], lane), point]

    def _timed(self, points, at: float, *, ending: bool) -> list:
        """Keyframes walking through ``points`` at one speed, ending (or starting) at ``at``."""
        steps = [math.hypot(bx - ax, by - ay) for (ax, ay), (bx, by) in pairwise(points)]
        speed = self.speed()
        times = np.concatenate([[0.0], np.cumsum(steps)]) / speed
        times = times + (at - times[-1] if ending else at)
        return [(float(t), x, y) for t, (x, y) in zip(times, points, strict=True)]

    def visit(self, point, arrive: float, leave: float, *, keys=(), enter=None, exit=None) -> list:
        """Keyframes: walk in from off screen (on the side ``enter``, else either) to
        ``point`` by ``arrive``, follow ``keys`` (or stand) until ``leave``, walk off screen
        (to the side ``exit``); around the zone, never through it."""
        inner = list(keys) or [(leave, *point)]
        last = inner[-1][1:]
        coming = self._timed(self._route(point, enter), arrive, ending=True)
        if abs(last[0] - self.w / 2) > 0.9 * self.w:  # already off screen: a step further out
            away = [last, (last[0] + math.copysign(0.1 * self.w, last[0] - self.w / 2), last[1])]
        else:
            away = self._route(last, exit)[::-1]
        going = self._timed(away, inner[-1][0], ending=False)
        return [*coming, *inner, *going[1:]]

    def actor(self, keys, name: str) -> Actor:
        return Actor(Track(keys), self.rng, self.h, name, self.person_scale)

    def body_height(self, y: float) -> float:
        """A person's height (world pixels) with the feet at ``y``."""
        return float(body_height(np.array(y), self.h, self.person_scale))


def _wave(freq: float, phase: float):
    return lambda t: 0.5 + 0.5 * sin(2 * math.pi * freq * t + phase)


def _fight(stage: Stage, ts: float, te: float):
    rng = stage.rng
    x, y = stage.spot()
    gap = 0.2 * stage.body_height(y)
    people = []
    for number, side in ((1, -1.0), (2, 1.0)):
        keys = stage.visit((x + side * gap, y), ts - rng.uniform(0, 1), te + rng.uniform(0, 0.5))
        person = stage.actor(keys, f"person_{number}")
        person.facing = -side
        freq, phase = rng.uniform(1.5, 2.5), rng.uniform(0, 2 * math.pi)
        hit, sway = _wave(freq, phase), _wave(1.3 * freq, rng.uniform(0, 2 * math.pi))
        person.add("arm", lambda t, hit=hit: window(t, ts, te) * hit(t))
        person.add("dx", lambda t, hit=hit, s=side: window(t, ts, te) * -s * 0.5 * gap * hit(t))
        person.add("dy", lambda t, sway=sway: window(t, ts, te) * 0.2 * gap * (sway(t) - 0.5))
        person.add(
            "tilt", lambda t, sway=sway, s=side: window(t, ts, te) * s * 0.3 * (sway(t) - 0.5)
        )
        people.append(person)
    return people, [], [(p.name, "punching", ts, te) for p in people]


def _assault(stage: Stage, ts: float, te: float):
    rng = stage.rng
    x, y = stage.spot()
    gap = 0.2 * stage.body_height(y)
    side = -1.0 if rng.random() < 0.5 else 1.0  # where the attacker stands
    fall = ts + rng.uniform(0.45, 0.65) * (te - ts)
    up = te + rng.uniform(1.0, 3.0)
    attacker = stage.actor(
        stage.visit((x + side * gap, y), ts - rng.uniform(0, 1), fall + rng.uniform(0.5, 1.5)),
        "person_1",
    )
    victim = stage.actor(
        stage.visit((x - side * gap, y), ts - rng.uniform(0.5, 1.5), up + 1.2), "person_2"
    )
    attacker.facing, victim.facing = -side, side
    hit = _wave(rng.uniform(2.0, 3.0), rng.uniform(0, 2 * math.pi))
    attacker.add("arm", lambda t: window(t, ts, fall) * hit(t))
    attacker.add("dx", lambda t: window(t, ts, fall) * -side * 0.5 * gap * hit(t))
    victim.add("dx", lambda t: window(t, ts, fall) * -side * 0.3 * gap * hit(t - 0.1))
    victim.add("tilt", lambda t: window(t, ts, fall) * -side * 0.25 * hit(t - 0.1))
    victim.add(
        "tilt",
        lambda t: -side * math.pi / 2 * smoothstep((t - fall) / 0.6) * (1 - smoothstep(t - up)),
    )
    actions = [("person_1", "punching", ts, fall), ("person_2", "falldown", fall, fall + 0.6)]
    return [attacker, victim], [], actions


def _fainting(stage: Stage, ts: float, te: float):
    rng = stage.rng
    point = stage.spot()
    person = stage.actor(stage.visit(point, ts, te + 1.6), "person_1")
    side = -1.0 if rng.random() < 0.5 else 1.0
    fall = ts + min(0.8, 0.3 * (te - ts))
    person.add("tilt", lambda t: window(t, ts, fall, 0.2) * 0.15 * sin(2 * math.pi * 1.5 * t))
    person.add(
        "tilt",
        lambda t: side * math.pi / 2 * smoothstep((t - fall) / 0.5) * smoothstep(te + 1.2 - t),
    )
    return [person], [], [("person_1", "falldown", fall, fall + 0.5)]


def _loitering(stage: Stage, ts: float, te: float):
    rng = stage.rng
    cx, cy = stage.spot(clearance=0.12)
    radius, speed = 0.07 * stage.w, rng.uniform(0.03, 0.06) * stage.w
    keys, t, (x, y) = [], ts, (cx, cy)
    while t < te:
        if rng.random() < 0.4:  # a pause
            t += rng.uniform(0.5, 2.0)
            keys.append((t, x, y))
        angle, r = rng.uniform(0, 2 * math.pi), radius * math.sqrt(rng.random())
        nx, ny = cx + r * math.cos(angle), cy + 0.6 * r * math.sin(angle)
        t += max(0.3, math.hypot(nx - x, ny - y) / speed)
        x, y = nx, ny
        keys.append((t, x, y))
    track = Track([(ts, cx, cy), *keys])
    end = [(te, *(float(v) for v in track.at(np.array(te))[:2]))]
    person = stage.actor(
        stage.visit((cx, cy), ts, te, keys=[k for k in keys if k[0] < te] + end), "person_1"
    )
    return [person], [], [("person_1", "loitering", ts, te)]


def _intrusion(stage: Stage, ts: float, te: float):
    rng, z = stage.rng, stage.zone
    mx, my = min(3.0, (z.x1 - z.x0) / 4), min(3.0, (z.y1 - z.y0) / 4)
    side = -1.0 if rng.random() < 0.5 else 1.0
    enter = (z.x0 if side < 0 else z.x1, rng.uniform(z.y0 + my, z.y1 - my))
    keys, t = [], ts
    inside_speed = rng.uniform(0.06, 0.1) * stage.w
    x, y = enter
    while True:
        nx, ny = rng.uniform(z.x0 + mx, z.x1 - mx), rng.uniform(z.y0 + my, z.y1 - my)
        step = math.hypot(nx - x, ny - y) / inside_speed
        if t + step >= te - 0.5:
            break
        t, x, y = t + max(step, 0.3), nx, ny
        keys.append((t, x, y))
    leave = (z.x0 if rng.random() < 0.5 else z.x1, rng.uniform(z.y0 + my, z.y1 - my))
    keys.append((te, *leave))
    out_side = -1.0 if leave[0] == z.x0 else 1.0
    person = stage.actor(
        stage.visit(enter, ts, te, keys=keys, enter=side, exit=out_side), "person_1"
    )
    return [person], [], [("person_1", "trespassing", ts, te)]


def _dumping(stage: Stage, ts: float, te: float):
    """Walk in carrying a bag, crouch, put it down, walk away (theft reverses it)."""
    rng = stage.rng
    x, y = stage.spot()
    d = te - ts
    side = -1.0 if rng.random() < 0.5 else 1.0  # walking direction
    speed = stage.speed()
    arrive, drop, leave = ts + 0.3 * d, ts + 0.45 * d, ts + 0.6 * d
    drift = rng.uniform(-0.05, 0.05) * stage.h
    before = (x - side * speed * 0.3 * d, y)
    after = (x + side * speed * 0.4 * d, y + drift)
    if not stage.clear(before, (x, y), after):  # the other way round, past the zone
        side = -side
        before, after = (x - side * speed * 0.3 * d, y), (x + side * speed * 0.4 * d, y + drift)
    keys = stage.visit(
        before, ts, te, keys=[(arrive, x, y), (leave, x, y), (te, *after)], enter=-side, exit=side
    )
    person = stage.actor(keys, "person_1")
    person.add(
        "crouch",
        lambda t: (
            smoothstep((t - arrive) / (drop - arrive))
            * (1 - smoothstep((t - drop) / (leave - drop)))
        ),
    )

    def where(t):
        state = person.state(t)
        lift = np.maximum(0.0, 0.3 * state["h"] * (1 - state["crouch"]))
        carried = t < drop
        return np.where(carried, state["x"], x), np.where(carried, state["y"] - lift, y)

    size = stage.body_height(y)
    bag = Prop(where, 0.3 * size, 0.22 * size, hsv(rng.random(), rng.uniform(0.2, 0.8), 0.3))
    return [person], [(bag, True)], [("person_1", "throwing", arrive, leave)]


def _theft(stage: Stage, ts: float, te: float):
    people, props, actions = _dumping(stage, ts, te)
    fps = stage.fps
    pivot = round(ts * fps) + round(te * fps)
    flipped = [(name, "picking", ts + te - b, ts + te - a) for name, _, a, b in actions]
    return (
        [Reversed(p, pivot, fps) for p in people],
        [(Reversed(p, pivot, fps), over) for p, over in props],
        flipped,
    )


def _kidnapping(stage: Stage, ts: float, te: float):
    rng = stage.rng
    x, y = stage.spot()
    gap = 0.25 * stage.body_height(y)
    side = -1.0 if x < stage.w / 2 else 1.0  # the nearer edge, where they go
    if not stage.clear((x, y), (stage.off_screen(side, y)[0], y)):
        side = -side  # the other edge: the zone is in the way
    grab = ts + 1.0
    exit_x = stage.off_screen(side, y)[0]
    victim = stage.actor(
        stage.visit((x, y), ts - rng.uniform(0.5, 1.5), grab, keys=[(grab, x, y), (te, exit_x, y)]),
        "person_2",
    )
    attacker = stage.actor(
        stage.visit(
            (x + side * gap, y),
            ts,
            grab,
            keys=[(grab, x + side * gap, y), (te, exit_x + side * gap, y)],
            enter=side,
        ),
        "person_1",
    )
    attacker.facing = -side
    attacker.add("arm", lambda t: window(t, ts, te, 0.2))
    flail = _wave(3.0, rng.uniform(0, 2 * math.pi))
    victim.facing = side
    victim.add("arm", lambda t: window(t, ts, te) * flail(t))
    victim.add(
        "tilt", lambda t: side * (0.4 * window(t, ts, grab, 0.2) + 0.9 * window(t, grab, te + 5))
    )
    victim.add("crouch", lambda t: 0.3 * window(t, grab, te + 5))
    actions = [("person_1", "pulling", ts, te), ("person_2", "dragged", grab, te)]
    return [attacker, victim], [], actions


def _drunkenness(stage: Stage, ts: float, te: float):
    rng = stage.rng
    d = te - ts
    side = -1.0 if rng.random() < 0.5 else 1.0
    speed = min(rng.uniform(0.05, 0.08) * stage.w, 0.75 * stage.w / d)
    start_x = stage.w / 2 - side * speed * d / 2
    for _ in range(20):  # a lane whose zig-zag stays clear of the zone
        _, y = stage.spot()
        end_x, wide = start_x + side * speed * d, 0.07 * stage.h
        if stage.clear((start_x, y - wide), (end_x, y - wide)) and stage.clear(
            (start_x, y + wide), (end_x, y + wide)
        ):
            break
    steps = max(2, int(d / 1.0))
    keys = []
    for k in range(1, steps + 1):
        at = ts + d * (k + (rng.uniform(-0.25, 0.25) if k < steps else 0)) / steps
        lateral = rng.uniform(-0.06, 0.06) * stage.h if k < steps else 0.0
        keys.append((at, start_x + side * speed * (at - ts), y + lateral))
    person = stage.actor(stage.visit((start_x, y), ts, te, keys=keys), "person_1")
    p1, p2 = rng.uniform(0, 2 * math.pi, 2)
    person.add(
        "tilt",
        lambda t: (
            window(t, ts, te, 0.5)
            * (0.3 * sin(2 * math.pi * 0.6 * t + p1) + 0.12 * sin(2 * math.pi * 1.7 * t + p2))
        ),
    )
    return [person], [], [("person_1", "totter", ts, te)]


def vandalism(stage: Stage, ts: float, te: float, bin_prop: Prop, spot) -> tuple:
    rng = stage.rng
    bx, by = spot
    size = stage.body_height(by)
    side = -1.0 if rng.random() < 0.5 else 1.0  # where the vandal stands
    person = stage.actor(
        stage.visit(
            (bx + side * 0.45 * size, by), ts - rng.uniform(0, 0.8), te + rng.uniform(0, 1)
        ),
        "person_1",
    )
    person.facing = -side
    freq = rng.uniform(1.5, 2.5)
    stop = te - 0.5
    strikes = max(1, int((stop - ts) * freq))
    hit = _wave(freq, -math.pi / 2 - 2 * math.pi * freq * ts)  # peaks at ts + (k + 0.5) / freq
    person.add("arm", lambda t: window(t, ts, stop, 0.2) * hit(t))
    person.add("dx", lambda t: window(t, ts, stop, 0.2) * -side * 0.12 * size * hit(t))
    person.add("tilt", lambda t: window(t, ts, stop, 0.2) * -side * 0.2 * hit(t))
    worst = rng.uniform(0.7, 1.0)
    bin_prop.damage = lambda t: (
        worst * np.clip(np.floor((t - ts) * freq - 0.5) + 1, 0, strikes) / strikes
    )
    bin_prop.where = lambda t: (
        bx - side * 0.05 * size * window(t, ts, stop, 0.2) * hit(t) ** 4,
        np.full_like(t, by),
    )
    return [person], [], [("person_1", "kicking", ts, stop)]


CHOREOGRAPHY = {
    "assault": _assault,
    "fight": _fight,
    "theft": _theft,
    "fainting": _fainting,
    "loitering": _loitering,
    "intrusion": _intrusion,
    "dumping": _dumping,
    "kidnapping": _kidnapping,
    "drunkenness": _drunkenness,
}


def walkers(stage: Stage, seconds: float) -> list[Actor]:
    """1-6 people crossing the scene again and again, at constant-ish speed; some stop for
    a moment on the way. Their lanes never cross the zone."""
    rng, w, h = stage.rng, stage.w, stage.h
    walkers = []
    for slot in range(int(rng.integers(1, 7))):
        t = rng.uniform(-14, 4)
        while t < seconds:
            speed = stage.speed()
            for _ in range(30):
                y0 = rng.uniform(0.3, 0.98) * h
                y1 = float(np.clip(y0 + rng.uniform(-0.15, 0.15) * h, 0.3 * h, 0.98 * h))
                xs = np.linspace(0, w, 20)
                lane = y0 + (y1 - y0) * xs / w
                if stage.zone is None or not any(
                    stage.zone.contains(a, b, 0.05 * w) for a, b in zip(xs, lane, strict=True)
                ):
                    break
            x0, x1 = (-0.45 * w, 1.45 * w) if rng.random() < 0.5 else (1.45 * w, -0.45 * w)
            keys = [(t, x0, y0)]
            middle = rng.uniform(0.35, 0.65)
            mx, my = x0 + (x1 - x0) * middle, y0 + (y1 - y0) * middle
            t_mid = t + math.hypot(mx - x0, my - y0) / speed
            keys.append((t_mid, mx, my))
            if rng.random() < 0.25:  # a short stop (a phone, a look around)
                t_mid += rng.uniform(1.0, 4.0)
                keys.append((t_mid, mx, my))
            t_end = t_mid + math.hypot(x1 - mx, y1 - my) / (speed * rng.uniform(0.9, 1.1))
            keys.append((t_end, x1, y1))
            walkers.append(stage.actor(keys, f"walker_{slot}"))
            t = t_end + rng.uniform(0.0, 8.0)
    return walkers
