"""SynthCCTV: untrimmed multi-camera surveillance recordings generated procedurally, written
in the AI Hub layout so that ``read_untrimmed("aihub-cctv", OUT)`` reads them as it is.

A *session* is one staged scene filmed by 2-3 cameras (different centre, scale, and possibly
a mirrored view of the same world) for ``seconds`` seconds. Its background is a static
textured ground (paving, walkway, planters, optionally a marked no-entry zone and a bin)
with fixed per-camera pixel noise, slow lighting changes and temporal noise; 1-6 people walk
across it as distractors (some stop for a moment). At most one event happens, at a random
time, for 2-20 s, seen by every camera of the session at the same time:

=============  ============================================================================
class          motion
=============  ============================================================================
assault        two people meet; one strikes fast (arm and lunge), the other recoils, then
               falls and lies still; the attacker walks away
fight          two people face each other and both strike, sway and lunge fast
theft          a person walks to a bag on the ground, crouches, and leaves carrying it:
               exactly ``dumping`` played backwards (the same scene, the event's frames
               reversed), so only the direction of motion tells the two apart
vandalism      a person stands at a bin and strikes it again and again; the bin shakes at
               every strike and gets flatter, tilted, darker and scarred
fainting       a walker stops, sways, falls and lies still, then gets up after the event
loitering      a person wanders slowly in a small region, pausing, for 10-20 s (walkers
               cross the scene in about 10 s)
intrusion      a person walks into the zone marked on the ground and wanders inside it
dumping        a person carrying a bag walks in, crouches, puts it down and walks away
kidnapping     one person grabs another, who flails, and drags them off screen
drunkenness    a person staggers slowly: zig-zag path, swaying body, uneven speed
=============  ============================================================================

Every person walks in from off screen and leaves off screen; outside the event the actors
walk like the distractors. Nobody but an intruder enters the zone (paths go round it).
Zones and bins also appear in normal scenes, so that their presence is no giveaway.
Everything is a pure function of ``(seed, session index, class)`` (:func:`plan_session`);
the motions are staged in :mod:`rsanet.data.synthcctv_events` and drawn by
:mod:`rsanet.data.synthcctv_render`. The bytes written are too (see
:data:`X264_OPTIONS` and :func:`to_yuv420p`).

Layout (``OUT``)::

    01.폭행(assult)/s0003/s0003_cam01_assault01_place07_day_spring.mp4 (+ .xml)
    00.정상(normal)/s0001/s0001_cam02_normal01_place12_night_autumn.mp4 (+ .xml, no <event>)
    synthcctv.json   the settings and the recordings written
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from rsanet.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from rsanet.data.synthcctv_events import CHOREOGRAPHY, Stage, vandalism, walkers
from rsanet.data.synthcctv_render import (
    Actor,
    Camera,
    Ground,
    Prop,
    Zone,
    draw_actor,
    draw_prop,
    hsv,
    sin,
)

#: the classes SynthCCTV renders (AI Hub ids, in AI Hub's folder order)
SYNTHCCTV_CLASSES = (
    "assault",
    "fight",
    "theft",
    "vandalism",
    "fainting",
    "loitering",
    "intrusion",
    "dumping",
    "kidnapping",
    "drunkenness",
)
#: AI Hub's class folders (its own spellings) and the event token of the file names
FOLDERS = {
    "assault": ("01.폭행(assult)", "assault"),
    "fight": ("02.싸움(fight)", "fight"),
    "theft": ("03.절도(burglary)", "burglary"),
    "vandalism": ("04.기물파손(vandalism)", "vandalism"),
    "fainting": ("05.실신(swoon)", "swoon"),
    "loitering": ("06.배회(wander)", "wander"),
    "intrusion": ("07.침입(trespass)", "trespass"),
    "dumping": ("08.투기(dump)", "dump"),
    "kidnapping": ("11.납치(kidnap)", "kidnap"),
    "drunkenness": ("12.주취행동(drunken)", "drunken"),
}
#: the folder of the recordings without an event (no class of the reader's map)
NORMAL_FOLDER = ("00.정상(normal)", "normal")
#: event length range per class (seconds), within 2-20 s
DURATIONS = {
    "assault": (4.0, 15.0),
    "fight": (3.0, 15.0),
    "theft": (3.0, 8.0),
    "vandalism": (3.0, 15.0),
    "fainting": (3.0, 20.0),
    "loitering": (10.0, 20.0),
    "intrusion": (2.0, 10.0),
    "dumping": (3.0, 8.0),
    "kidnapping": (4.0, 10.0),
    "drunkenness": (5.0, 20.0),
}
#: how large people are drawn: at 1 a person is 17-30 % of the picture's height (far to
#: near), at 1.8 30-54 %. A network squeezes a 160 x 120 camera to 64 x 64 and first looks
#: at time at a quarter of that: at 1 a person is there 3-5 cells tall and an arm well under
#: one. The CCTV job's frame AUC rose from 0.672 to 0.713 with 1.8 (docs/events.md)
PERSON_SCALE = 1.8
SEASONS = ("spring", "summer", "autumn", "winter")
#: frames rendered at a time (the temporal noise is drawn per chunk: keep it fixed)
CHUNK = 50
#: libx264 settings. One thread, a fixed GOP and no macroblock tree make the bytes a
#: function of the frames: with the tree, the first recording encoded in a process was
#: seen to differ from later encodings of the same frames
X264_OPTIONS = {
    "crf": "27",
    "preset": "veryfast",
    "x264-params": "threads=1:keyint=20:min-keyint=20:scenecut=0:mbtree=0",
}
MANIFEST = "synthcctv.json"


@dataclass
class SessionPlan:
    """Everything a session's recordings show, as functions of time (nothing rendered)."""

    seed: int
    index: int
    label: str | None
    seconds: float
    fps: int
    width: int
    height: int
    place: int
    night: bool
    season: str
    ground: Ground
    cameras: list[Camera]
    walkers: list[Actor]
    actors: list = field(default_factory=list)
    props: list = field(default_factory=list)  # (Prop, drawn over the people)
    event: tuple[int, int] | None = None  # first and last frame
    actions: list = field(default_factory=list)  # (actor, action, start_s, end_s)
    light: tuple = ()

    @property
    def frames(self) -> int:
        return round(self.seconds * self.fps)

    @property
    def session(self) -> str:
        return f"s{self.index + 1:04d}"

    def gain(self, t: np.ndarray) -> np.ndarray:
        """Overall brightness over time: slow lighting changes (clouds, lamps)."""
        base, (a1, p1, f1), (a2, p2, f2) = self.light
        return base * (
            1 + a1 * sin(2 * math.pi * t / p1 + f1) + a2 * sin(2 * math.pi * t / p2 + f2)
        )


def plan_session(
    seed: int,
    index: int,
    label: str | None,
    *,
    seconds: float = 30.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    cameras: tuple[int, int] = (2, 3),
    person_scale: float = PERSON_SCALE,
) -> SessionPlan:
    """The session ``index`` of ``seed`` showing ``label`` (None: no event). Two labels give
    the same scene, walkers and cameras except where the event needs a zone or a bin;
    ``dumping`` and ``theft`` give exactly the same scene, the event played both ways.
    ``person_scale`` sizes the people and the things they carry or strike (see
    :data:`PERSON_SCALE`); it draws nothing from the session's random stream."""
    if label is not None and label not in DURATIONS:
        raise ValueError(
            f"unknown SynthCCTV class {label!r}; choose from {', '.join(SYNTHCCTV_CLASSES)}"
        )
    if seconds < 3:
        raise ValueError(f"seconds must be >= 3, got {seconds}")
    rng = np.random.default_rng([seed & 0xFFFFFFFF, index, 0xCC7])
    width, height = size
    season = int(rng.integers(4))
    night = bool(rng.random() < 0.25)
    place = int(rng.integers(1, 21))
    ground = Ground(rng, width, height, season)
    zone = Zone(
        x := rng.uniform(0.2, 0.6) * width,
        y := rng.uniform(0.45, 0.7) * height,
        x + rng.uniform(0.15, 0.22) * width,
        y + rng.uniform(0.14, 0.2) * height,
    )
    has_zone = rng.random() < 0.35 or label == "intrusion"
    has_bin = rng.random() < 0.35 or label == "vandalism"
    ground.zone = zone if has_zone else None
    camera_count = int(rng.integers(cameras[0], cameras[1] + 1))
    views = []
    for number in range(3):
        spread = 0.04 if number == 0 else 0.08
        views.append(
            Camera(
                cx=width * (0.5 + rng.uniform(-spread, spread)),
                cy=height * (0.5 + rng.uniform(-spread, spread)),
                scale=rng.uniform(0.95, 1.1) if number == 0 else rng.uniform(0.85, 1.15),
                mirror=bool(number > 0 and rng.random() < 0.5),
                width=width,
                height=height,
                exposure=rng.uniform(0.9, 1.1) * (0.55 if night else 1.0),
                noise_seed=(seed & 0xFFFFFFFF, index, number),
            )
        )
    light = (
        1.0,
        (rng.uniform(0.03, 0.08), rng.uniform(15, 40), rng.uniform(0, 2 * math.pi)),
        (rng.uniform(0.01, 0.04), rng.uniform(4, 12), rng.uniform(0, 2 * math.pi)),
    )
    plan = SessionPlan(
        seed, index, label, seconds, fps, width, height, place, night, SEASONS[season],
        ground, views[:camera_count], [], light=light,
    )  # fmt: skip
    stage = Stage(rng, (width, height), fps, ground.zone, person_scale)
    bin_spot = stage.spot()
    bin_size = stage.body_height(bin_spot[1])
    bin_prop = Prop(
        lambda t: (np.full_like(t, bin_spot[0]), np.full_like(t, bin_spot[1])),
        0.35 * bin_size,
        0.45 * bin_size,
        hsv(rng.random(), rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.7)),
    )
    if has_bin:
        plan.props.append((bin_prop, False))
        stage.avoid.append(bin_spot)
    plan.walkers = walkers(stage, seconds)
    if label is None:
        return plan
    longest = seconds - 1.0
    low, high = (min(v, longest) for v in DURATIONS[label])
    margin = round(0.5 * fps)  # the event starts and ends at least 0.5 s inside the video
    length = max(1, min(round(rng.uniform(low, high) * fps), plan.frames - 2 * margin))
    first = int(rng.integers(margin, plan.frames - length - margin + 1))
    plan.event = (first, first + length)
    ts, te = first / fps, (first + length) / fps
    if label == "vandalism":
        actors, props, actions = vandalism(stage, ts, te, bin_prop, bin_spot)
    else:
        actors, props, actions = CHOREOGRAPHY[label](stage, ts, te)
    plan.actors, plan.actions = actors, actions
    plan.props.extend(props)
    return plan


# -- rendering ----------------------------------------------------------------------------


def render_frames(
    plan: SessionPlan, camera: int, start: int, stop: int, *, nuisances: bool = True
) -> np.ndarray:
    """Frames ``[start, stop)`` of camera ``camera``: (n, H, W, 3) uint8. ``nuisances=False``
    leaves out what changes with time but the event (walkers, lighting, temporal noise)."""
    view = plan.cameras[camera]
    t = np.arange(start, stop) / plan.fps
    frames = np.repeat(view.background(plan.ground)[None], len(t), axis=0)
    for prop, over in plan.props:
        if not over:
            draw_prop(frames, view, prop.state(t), prop)
    people = plan.actors + (plan.walkers if nuisances else [])
    states = [(person, person.state(t)) for person in people]
    for person, state in sorted(states, key=lambda item: float(item[1]["y"].mean())):
        draw_actor(frames, view, state, person)
    for prop, over in plan.props:
        if over:
            draw_prop(frames, view, prop.state(t), prop)
    gain = plan.gain(t) if nuisances else np.full_like(t, plan.light[0])
    frames *= (255 * gain).astype(np.float32)[:, None, None, None]
    frames += 0.5
    if nuisances:  # temporal noise: the difference of two uniform bytes, per chunk
        rng = np.random.default_rng([plan.seed & 0xFFFFFFFF, plan.index, camera, start])
        noise = np.frombuffer(rng.bytes(2 * frames.size), np.uint8).reshape(2, *frames.shape)
        scale = (5.0 if plan.night else 2.5) / (255 / math.sqrt(6))
        frames += (noise[0].astype(np.float32) - noise[1]) * scale
    return frames.clip(0, 255, out=frames).astype(np.uint8)


# -- the AI Hub files ---------------------------------------------------------------------


def clock(seconds: float) -> str:
    """``HH:MM:SS.f`` (tenths; milliseconds when a time needs them)."""
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, millis = divmod(rest, 1000)
    fraction = f"{millis // 100}" if millis % 100 == 0 else f"{millis:03d}"
    return f"{hours:02d}:{minutes:02d}:{whole:02d}.{fraction}"


def recording_path(plan: SessionPlan, camera: int) -> str:
    """``FOLDER/SESSION/SESSION_camNN_EVENTNN_placeNN_day_season.mp4`` (relative)."""
    folder, token = FOLDERS[plan.label] if plan.label else NORMAL_FOLDER
    time = "night" if plan.night else "day"
    stem = (
        f"{plan.session}_cam{camera + 1:02d}_{token}01_place{plan.place:02d}_{time}_{plan.season}"
    )
    return f"{folder}/{plan.session}/{stem}.mp4"


def annotation_xml(plan: SessionPlan, camera: int, settings: str = "") -> str:
    """The AI Hub ``<annotation>`` of one recording (no ``<event>`` for a normal one)."""
    name = recording_path(plan, camera).rsplit("/", 1)[1]
    fps, frames = plan.fps, plan.frames
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<annotation>",
        f"  <folder>{plan.session}</folder>",
        f"  <filename>{escape(name)}</filename>",
        "  <source><database>SynthCCTV</database>"
        f"<annotation>{escape(settings)}</annotation></source>",
        f"  <size><width>{plan.width}</width><height>{plan.height}</height><depth>3</depth></size>",
        "  <header>",
        f"    <duration>{clock(frames / fps)}</duration><fps>{fps}</fps><frames>{frames}</frames>",
        f"    <inout>outside</inout><location>synthetic place{plan.place:02d}</location>",
        f"    <season>{plan.season}</season><weather>sunny</weather>"
        f"<time>{'night' if plan.night else 'day'}</time>",
        f"    <population>{len(plan.walkers) + len(plan.actors)}</population>",
        "  </header>",
    ]
    if plan.event is not None:
        first, last = plan.event
        folder_token = FOLDERS[plan.label][1]
        lines.append(
            f"  <event><eventname>{folder_token}</eventname><starttime>{clock(first / fps)}"
            f"</starttime><duration>{clock((last - first) / fps)}</duration></event>"
        )
    view = plan.cameras[camera]
    by_actor: dict[str, list] = {}
    for actor, action, start, end in plan.actions:
        a, b = max(0, round(start * fps)), min(frames - 1, round(end * fps))
        if a <= b:
            by_actor.setdefault(actor, []).append((action, a, b))
    for actor in plan.actors:
        if actor.name not in by_actor:
            continue
        keyframe = plan.event[0]
        state = actor.state(np.array([keyframe / fps]))
        u, v = view.to_image(state["x"], state["y"])
        lines.append(f"  <object><objectname>{actor.name}</objectname>")
        x, y = int(np.clip(u[0], 0, plan.width - 1)), int(np.clip(v[0], 0, plan.height - 1))
        lines.append(
            f"    <position><keyframe>{keyframe}</keyframe><keypoint><x>{x}</x><y>{y}</y>"
            "</keypoint></position>"
        )
        for action, a, b in by_actor[actor.name]:
            lines.append(
                f"    <action><actionname>{action}</actionname><frame><start>{a}</start>"
                f"<end>{b}</end></frame></action>"
            )
        lines.append("  </object>")
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


# -- writing ------------------------------------------------------------------------------


def session_labels(
    sessions: int, classes: Sequence[str], normal_fraction: float, seed: int
) -> list[str | None]:
    """The class of each session: ``round(sessions * normal_fraction)`` normal ones (None),
    the rest cycling through ``classes``, in an order shuffled by ``seed``."""
    normal = round(sessions * normal_fraction)
    labels = [None] * normal + [classes[i % len(classes)] for i in range(sessions - normal)]
    order = np.random.default_rng([seed & 0xFFFFFFFF, 0x1AB]).permutation(sessions)
    return [labels[i] for i in order]


def scene_labels(label: str | None, classes: Sequence[str], events_per_scene: int) -> list:
    """The events a session's scene is staged with: its class and the ``events_per_scene -
    1`` classes after it in ``classes`` (so that no scene belongs to one class); a normal
    session (None) once."""
    if label is None:
        return [None]
    first = classes.index(label)
    count = min(events_per_scene, len(classes))
    return [classes[(first + shift) % len(classes)] for shift in range(count)]


def to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """RGB frames (n, H, W, 3) uint8 as planar YUV 4:2:0 (BT.601, limited range), the layout
    of a ``yuv420p`` frame: (n, 3H/2, W) uint8. Done here rather than by FFmpeg's scaler,
    whose output depends on the memory alignment of the input (so bytes would vary)."""
    rgb = frames.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    cb = 128 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    cr = 128 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    n, height, width = y.shape

    def half(plane):
        blocks = plane.reshape(n, height // 2, 2, width // 2, 2).mean(axis=(2, 4))
        return blocks.reshape(n, height // 4, width)  # two half rows per row of the layout

    planes = [y.reshape(n, height, width), half(cb), half(cr)]
    return np.concatenate(planes, axis=1).round().clip(0, 255).astype(np.uint8)


def encode(path: Path, chunks, width: int, height: int, fps: int) -> None:
    """Encode RGB frame chunks as H.264 (libx264, :data:`X264_OPTIONS`) into ``path``,
    atomically."""
    import av

    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.thread_count = 1
        stream.options = dict(X264_OPTIONS)
        number = 0
        for chunk in chunks:
            for planes in to_yuv420p(chunk):
                frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                frame.pts, number = number, number + 1
                container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _write_recording(job: tuple) -> tuple[str, bool]:
    """Render and write one camera of one session; skip it when its XML is already the one
    it would write and its video is there. Returns (relative path, written)."""
    out, seed, index, label, camera, options, settings = job
    plan = plan_session(seed, index, label, **options)
    relative = recording_path(plan, camera)
    video = Path(out) / relative
    xml_path = video.with_suffix(".xml")
    xml = annotation_xml(plan, camera, settings)
    if video.is_file() and xml_path.is_file() and xml_path.read_text("utf-8") == xml:
        return relative, False
    for path in (video, xml_path):
        remove_stale_temporaries(path)
    xml_path.unlink(missing_ok=True)  # the XML goes last: it marks the video complete
    chunks = (
        render_frames(plan, camera, start, min(start + CHUNK, plan.frames))
        for start in range(0, plan.frames, CHUNK)
    )
    encode(video, chunks, plan.width, plan.height, plan.fps)
    atomic_write_text(xml_path, xml)
    return relative, True


def write_synthcctv(
    out: str | Path,
    sessions: int = 40,
    *,
    cameras: tuple[int, int] = (2, 3),
    seconds: float = 30.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    classes: Sequence[str] | None = None,
    normal_fraction: float = 0.25,
    seed: int = 0,
    events_per_scene: int = 1,
    person_scale: float = PERSON_SCALE,
    workers: int = 0,
    progress: bool = False,
) -> dict:
    """Write ``sessions`` SynthCCTV sessions to ``out`` (see the module text); returns the
    summary also written to ``out/synthcctv.json``: settings, recordings, written, skipped.

    ``events_per_scene`` k > 1 stages every scene with an event k times, with k different
    classes (:func:`scene_labels`; the recordings of one scene share its session id, so a
    split by session keeps them together): the scene then tells nothing of the class, and
    a network has to learn the motion rather than which places show which event.

    Every file is written atomically; a recording whose XML and video are already there
    (from an interrupted run with the same settings) is kept. ``out`` must be new, empty,
    or hold SynthCCTV written with the same settings."""
    classes = list(SYNTHCCTV_CLASSES if classes is None else classes)
    unknown = [c for c in classes if c not in DURATIONS]
    if unknown or not classes:
        raise ValueError(
            f"unknown or no classes {unknown}; choose from {', '.join(SYNTHCCTV_CLASSES)}"
        )
    if events_per_scene < 1:
        raise ValueError(f"events_per_scene must be >= 1, got {events_per_scene}")
    if sessions < 1 or not 0 <= normal_fraction <= 1:
        raise ValueError(
            f"need sessions >= 1 and normal_fraction in [0, 1], got {sessions}, {normal_fraction}"
        )
    if not 1 <= cameras[0] <= cameras[1] <= 3:
        raise ValueError(f"cameras must be a range within 1-3, got {cameras}")
    width, height = size
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise ValueError(f"size must be even and at least 32x32, got {width}x{height}")
    if fps < 1 or seconds < 3:
        raise ValueError(f"need fps >= 1 and seconds >= 3, got {fps}, {seconds}")
    if not 0.5 <= person_scale <= 3:
        raise ValueError(f"person_scale must be within 0.5-3, got {person_scale}")
    out = Path(out)
    settings = {
        "sessions": sessions,
        "cameras": list(cameras),
        "seconds": seconds,
        "fps": fps,
        "size": [width, height],
        "classes": classes,
        "normal_fraction": normal_fraction,
        "seed": seed,
        "person_scale": person_scale,
    }
    if events_per_scene > 1:  # settings of sets written before the option keep their text
        settings["events_per_scene"] = events_per_scene
    _claim(out, settings)
    options = {
        "seconds": seconds,
        "fps": fps,
        "size": (width, height),
        "cameras": tuple(cameras),
        "person_scale": person_scale,
    }
    text = json.dumps(settings, sort_keys=True)
    jobs = []
    for index, first in enumerate(session_labels(sessions, classes, normal_fraction, seed)):
        for label in scene_labels(first, classes, events_per_scene):
            count = len(plan_session(seed, index, label, **options).cameras)
            jobs += [
                (str(out), seed, index, label, camera, options, text) for camera in range(count)
            ]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="synthcctv", unit="recording")
    results = []
    if workers > 0:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            for result in pool.map(_write_recording, jobs):
                results.append(result)
                if bar is not None:
                    bar.update()
    else:
        for job in jobs:
            results.append(_write_recording(job))
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    summary = {
        "settings": settings,
        "complete": True,
        "recordings": [path for path, _ in results],
        "written": sum(written for _, written in results),
        "skipped": sum(not written for _, written in results),
        "bytes": sum((out / path).stat().st_size for path, _ in results),
    }
    atomic_write_text(out / MANIFEST, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return summary


def _claim(out: Path, settings: dict) -> None:
    """Refuse ``out`` unless it is new, empty, or SynthCCTV of the same settings; mark it."""
    manifest = out / MANIFEST
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; SynthCCTV is written into a folder (choose another)")
    if manifest.is_file():
        try:
            previous = json.loads(manifest.read_text("utf-8")).get("settings")
        except ValueError:
            previous = None
        if previous != settings:
            raise ValueError(
                f"{out} holds SynthCCTV made with other settings ({manifest}): choose a new "
                "folder, or run again with the same settings to complete it"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise ValueError(
            f"{out} is not empty and holds no {MANIFEST}: choose a new or empty folder"
        )
    else:
        atomic_write_text(manifest, json.dumps({"settings": settings, "complete": False}) + "\n")
