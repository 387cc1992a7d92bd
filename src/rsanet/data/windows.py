"""Training on untrimmed recordings: fixed-length windows cut from long videos.

A window is ``window_s`` seconds of one recording, decoded as ``num_frames`` frames at the
centres of equal segments. Its label follows from the annotated events
(:func:`window_label`): the event class covering the largest fraction of the window when
that fraction is at least ``min_overlap`` (a *positive*), :data:`NORMAL_CLASS` when no
event touches it (a *negative*), and no label at all (the window is never used) in between.
``normal`` is class 0; the annotations' classes follow in their order.

:class:`WindowSampler` plans the windows: for training, ``windows_per_epoch`` windows of
which ``positive_fraction`` are positives (an event drawn uniformly, or a class drawn
uniformly and then one of its events with ``positive_sampling="class"``, then a start time
uniformly among those that cover enough of it) and the rest negatives (a start time
uniformly over all event-free time of all recordings), a pure function of ``(seed,
epoch)``, or as many *bags* of several windows (multiple-instance learning, ``bag_size``);
for validation a grid of windows ``stride_s`` apart over every recording. *Hard negatives*
(:func:`hard_negative_windows`) replace part of the normal windows by those a trained
network found most like an event.
:class:`UntrimmedWindows` is the dataset: it decodes only the frames of a window (one seek by
time), and a recording that cannot be read is a :class:`~rsanet.data.errors.BadSample`
replaced like in :class:`~rsanet.data.datasets.VideoDataset`.

:func:`split_by_session` splits recordings into training and validation sets without
letting one session (AI Hub: every camera and season of ``metadata["session"]``; other
formats: the video's name) fall on both sides.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from rsanet.data.decoding import BACKENDS, open_video, probe_video
from rsanet.data.errors import (
    BadSample,
    BadSampleError,
    BadSampleLog,
    ReplacesBadSamples,
    check_policy,
)
from rsanet.data.events import EventInterval, UntrimmedAnnotations, UntrimmedVideo
from rsanet.data.transforms import (
    FLIP_MODES,
    MULTI_SCALE_CROP_SCALES,
    Compose,
    Normalize,
    build_transforms,
    resolve_flip_pairs,
)
from rsanet.data.untrimmed import UNTRIMMED_FORMATS, read_untrimmed

#: the label of windows that no event touches: class index 0
NORMAL_CLASS = "normal"

#: how training positives are drawn: every event equally often, or every class equally often
POSITIVE_SAMPLING = ("event", "class")

#: which spans make a window positive: the events' whole intervals, or their key moments
#: (the annotated actions inside each event, :func:`key_moments`)
POSITIVE_SPANS = ("events", "actions")

#: errors of decoders that mean "this file is bad", not "this code is"
_DATA_ERRORS = (OSError, ValueError, RuntimeError, EOFError)


@dataclass(frozen=True)
class Window:
    """``[start_s, start_s + window_s]`` of recording ``video`` (an index into the dataset's
    videos), labelled ``label`` (a class index; 0 is normal); ``overlap``: the fraction of
    the window its class's events cover (0 for normal)."""

    video: int
    start_s: float
    label: int
    overlap: float


def _covered(events: Iterable[EventInterval], start: float, end: float) -> float:
    """Seconds of ``[start, end]`` inside the union of ``events``."""
    spans = sorted((max(e.start_s, start), min(e.end_s, end)) for e in events)
    total, reach = 0.0, start
    for first, last in spans:
        first = max(first, reach)
        if last > first:
            total += last - first
            reach = last
    return total


def class_coverage(
    events: Sequence[EventInterval], start_s: float, window_s: float
) -> dict[str, float]:
    """The fraction of ``[start_s, start_s + window_s]`` covered by the events of each class
    (overlapping events of one class count once); classes that do not touch it are left
    out."""
    end = start_s + window_s
    coverage = {}
    for label in dict.fromkeys(e.label for e in events):
        seconds = _covered((e for e in events if e.label == label), start_s, end)
        if seconds > 0:
            coverage[label] = seconds / window_s
    return coverage


def window_label(
    events: Sequence[EventInterval], start_s: float, window_s: float, min_overlap: float
) -> tuple[str | None, float]:
    """``(label, overlap)`` of a window: the class covering the largest fraction when it is
    at least ``min_overlap``, :data:`NORMAL_CLASS` (overlap 0) when no event touches the
    window, else ``(None, largest fraction)``: too little of an event to call it one, too
    much to call it normal."""
    coverage = class_coverage(events, start_s, window_s)
    if not coverage:
        return NORMAL_CLASS, 0.0
    label, overlap = max(coverage.items(), key=lambda item: item[1])
    return (label, overlap) if overlap >= min_overlap - 1e-9 else (None, overlap)


def key_moments(video: UntrimmedVideo) -> tuple[EventInterval, ...]:
    """Each event's key moment: the span from the first to the last of the recording's
    annotated actions that overlap the event (any actor; AI Hub's ``punching``,
    ``falldown``, ``throwing``...), clipped to the event and labelled with its class; the
    whole event when no action overlaps it. A dumping event is the walk in, the bag set
    down and the walk away; its key moment is the setting down."""
    moments = []
    for event in video.events:
        inside = [
            (max(a.start_s, event.start_s), min(a.end_s, event.end_s))
            for a in video.actions
            if a.start_s <= event.end_s and a.end_s >= event.start_s
        ]
        if inside:
            start, end = min(a for a, _ in inside), max(b for _, b in inside)
            moments.append(EventInterval(event.label, start, end, event.actor))
        else:
            moments.append(event)
    return tuple(moments)


def key_moment_label(
    moments: Sequence[EventInterval],
    events: Sequence[EventInterval],
    start_s: float,
    window_s: float,
    min_overlap: float,
) -> tuple[str | None, float]:
    """``(label, overlap)`` of a window when key moments (``moments``, from
    :func:`key_moments`) are the positives of ``events``: the class of the key moment it
    overlaps the most, when that overlap is at least ``min_overlap`` of the
    window or the whole key moment, whichever is shorter (a 0.5 s fall inside a 2 s window
    counts); :data:`NORMAL_CLASS` when no event touches it; else ``(None, overlap)``, the
    event time around a key moment, which is left out. ``overlap``: the fraction of the
    window the chosen key moment covers."""
    end = start_s + window_s
    best, best_seconds = None, 0.0
    for moment in moments:
        seconds = max(0.0, min(moment.end_s, end) - max(moment.start_s, start_s))
        inside = start_s - 1e-9 <= moment.start_s and moment.end_s <= end + 1e-9
        enough = seconds >= min_overlap * window_s - 1e-9 or inside
        if enough and (best is None or seconds > best_seconds):
            best, best_seconds = moment.label, seconds
    if best is not None:
        return best, best_seconds / window_s
    coverage = class_coverage(events, start_s, window_s)
    return (None, max(coverage.values())) if coverage else (NORMAL_CLASS, 0.0)


def _merged(events: Iterable[EventInterval]) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    for event in sorted(events, key=lambda e: (e.start_s, e.end_s)):
        if spans and event.start_s <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], event.end_s))
        else:
            spans.append((event.start_s, event.end_s))
    return spans


def hard_negative_windows(
    path: str | Path,
    videos: Sequence[UntrimmedVideo],
    window_s: float,
    top: float = 0.1,
) -> list[tuple[int, float]]:
    """``(video, start)`` of the hardest normal windows in a window-scores file (the
    ``window_scores.npz`` of ``rsanet eval-events`` run on the training recordings): of its
    windows in ``videos`` (matched by resolved path) that no event touches, the ``top``
    fraction with the highest score of any event class, each re-centred to ``window_s``.
    A network calibrated for a few false alarms per hour fails on such rare normal windows,
    which uniformly drawn negatives seldom show it. ValueError, naming the file, when it
    cannot be read or shares no recording with ``videos``."""
    if not 0 < top <= 1:
        raise ValueError(f"hard_negative_top must be in (0, 1], got {top!r}")
    try:
        with np.load(path, allow_pickle=False) as stored:
            names = [str(name) for name in stored["videos"]]
            classes = [str(name) for name in stored["classes"]]
            video, starts, ends = stored["video"], stored["starts"], stored["ends"]
            scores = stored["scores"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{path}: not a window-scores file ({type(error).__name__}: {error}); write one "
            "with `rsanet eval-events CHECKPOINT --annotations TRAINING_DATA --out DIR` "
            "(DIR/window_scores.npz)"
        ) from None
    ours = {os.path.realpath(v.path): number for number, v in enumerate(videos)}
    mapped = np.array([ours.get(os.path.realpath(name), -1) for name in names], dtype=np.int64)
    rows = np.flatnonzero(mapped[video] >= 0) if len(video) else np.array([], dtype=np.int64)
    if not len(rows):
        raise ValueError(
            f"{path}: none of its {len(names)} recordings is among the {len(videos)} training "
            "recordings (matched by resolved path): score the training annotations themselves"
        )
    event_columns = [i for i, name in enumerate(classes) if name.casefold() != NORMAL_CLASS]
    hardness = scores[rows][:, event_columns].max(axis=1)
    candidates = []
    for row, score in zip(rows, hardness, strict=True):
        number = int(mapped[video[row]])
        start = max(0.0, (float(starts[row]) + float(ends[row]) - window_s) / 2)
        if not class_coverage(videos[number].events, start, window_s):
            candidates.append((float(score), number, start))
    candidates.sort(key=lambda c: -c[0])
    keep = candidates[: max(1, math.ceil(top * len(candidates)))] if candidates else []
    return [(number, start) for _, number, start in keep]


def _check_window_options(
    window_s: float,
    min_overlap: float,
    positive_fraction: float,
    windows_per_epoch: int,
    positive_sampling: str = "event",
    bag_size: int = 1,
    positive_spans: str = "events",
    hard_negative_fraction: float = 0.0,
) -> None:
    if not 0 <= hard_negative_fraction <= 1:
        raise ValueError(
            f"hard_negative_fraction must be in [0, 1], got {hard_negative_fraction!r}"
        )
    if positive_spans not in POSITIVE_SPANS:
        raise ValueError(
            f"positive_spans must be one of {', '.join(POSITIVE_SPANS)}, got {positive_spans!r}"
        )
    if positive_sampling not in POSITIVE_SAMPLING:
        raise ValueError(
            f"positive_sampling must be one of {', '.join(POSITIVE_SAMPLING)}, "
            f"got {positive_sampling!r}"
        )
    if not (isinstance(window_s, (int, float)) and math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    if not 0 < min_overlap <= 1:
        raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap!r}")
    if not 0 <= positive_fraction <= 1:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction!r}")
    if not isinstance(windows_per_epoch, int) or windows_per_epoch < 1:
        raise ValueError(f"windows_per_epoch must be a positive integer, got {windows_per_epoch!r}")
    if not isinstance(bag_size, int) or bag_size < 1:
        raise ValueError(f"bag_size must be a positive integer, got {bag_size!r}")


class WindowSampler:
    """Plans the windows of recordings whose lengths are ``durations`` (seconds).

    ``classes``: the class names, :data:`NORMAL_CLASS` first. Positive candidates are the
    events that can cover ``min_overlap`` of a window (an event shorter than ``min_overlap *
    window_s`` cannot: it is counted in ``unusable_events``); negatives start anywhere a
    window touches no event. Recordings shorter than a window give none.

    ``positive_sampling``: ``"event"`` draws each positive from an event chosen uniformly
    (common classes get more windows); ``"class"`` first draws a class uniformly among those
    with usable events, then one of its events, so rare classes are seen as often as common
    ones.

    ``bag_size``: windows per training sample. With more than one, each sample is a *bag*
    (multiple-instance learning): a positive bag is ``bag_size`` windows of one event, their
    starts spread over the event (one in each of ``bag_size`` equal parts of the range of
    starts); a negative bag is ``bag_size`` normal windows drawn independently. An event's
    interval often holds more than its class shows (the walk before a bag is put down), and
    a bag lets the training pick the window that shows it (:mod:`rsanet.engine.bags`).

    ``positive_spans="actions"``: the positives are the events' key moments
    (:func:`key_moments`) rather than their whole intervals, and windows are labelled by
    :func:`key_moment_label`: a window must cover ``min_overlap`` of itself or all of a
    key moment; the rest of the event time gives no window; normal windows are drawn as
    before, away from the whole events. For annotations that mark what happens inside an
    event (AI Hub's actions), so that the training sees the moment that defines the class.

    ``hard_negatives``: ``(video, start)`` of normal windows to train on more often
    (:func:`hard_negative_windows`); ``hard_negative_fraction`` of each epoch's normal
    samples are drawn uniformly from them (those an event touches are left out), the rest
    as above. Without them, an epoch is drawn exactly as before.
    """

    def __init__(
        self,
        videos: Sequence[UntrimmedVideo],
        durations: Sequence[float],
        classes: Sequence[str],
        *,
        window_s: float,
        min_overlap: float = 0.5,
        positive_fraction: float = 0.5,
        windows_per_epoch: int = 1000,
        seed: int = 0,
        positive_sampling: str = "event",
        bag_size: int = 1,
        positive_spans: str = "events",
        hard_negatives: Sequence[tuple[int, float]] = (),
        hard_negative_fraction: float = 0.0,
    ) -> None:
        _check_window_options(
            window_s,
            min_overlap,
            positive_fraction,
            windows_per_epoch,
            positive_sampling,
            bag_size,
            positive_spans,
            hard_negative_fraction,
        )
        if len(videos) != len(durations):
            raise ValueError("one duration per video is needed")
        self.videos, self.durations = list(videos), [float(d) for d in durations]
        self.classes = list(classes)
        self.index = {name: i for i, name in enumerate(self.classes)}
        self.window_s, self.min_overlap = float(window_s), float(min_overlap)
        self.positive_fraction, self.windows_per_epoch = positive_fraction, windows_per_epoch
        self.seed, self.positive_sampling, self.bag_size = seed, positive_sampling, bag_size
        self.positive_spans = positive_spans
        w, m = self.window_s, self.min_overlap
        #: (video, lowest start, highest start) of each usable event / event-free stretch
        self.positives: list[tuple[int, float, float]] = []
        self.negatives: list[tuple[int, float, float]] = []
        self.unusable_events = 0
        #: with positive_spans="actions": the events whose key moment is shorter than the
        #: event (the others have no action inside them, or one as long as they are)
        self.shortened_events = 0
        #: with positive_spans="actions": each recording's key moments (else its events)
        self.spans: list[tuple[EventInterval, ...]] = []
        #: per class with usable events, the indices of its entries in ``positives``
        self.positives_by_class: dict[str, list[int]] = {}
        for number, (video, duration) in enumerate(zip(self.videos, self.durations, strict=True)):
            last_start = duration - w
            moments = positive_spans == "actions"
            spans = key_moments(video) if moments else video.events
            self.spans.append(spans)
            if moments:
                self.shortened_events += sum(
                    k != e for k, e in zip(spans, video.events, strict=True)
                )
            for event in spans:
                # a window must cover `needed` seconds of it: starts in [low, high]
                needed = min(m * w, event.duration_s) if moments else m * w
                low = max(0.0, event.start_s - ((w - needed) if moments else (1 - m) * w))
                high = min(last_start, event.end_s - needed)
                if event.duration_s >= needed - 1e-9 and low <= high + 1e-9:
                    self.positives_by_class.setdefault(event.label, []).append(len(self.positives))
                    self.positives.append((number, low, max(low, high)))
                else:
                    self.unusable_events += 1
            reach = 0.0
            for first, last in [*_merged(video.events), (duration + w, duration + w)]:
                if min(first, duration) - reach >= w:
                    self.negatives.append((number, reach, min(first, duration) - w))
                reach = max(reach, last)
        self.hard_negative_fraction = float(hard_negative_fraction) if hard_negatives else 0.0
        #: (video, start) of the hard normal windows inside their recordings
        self.hard_negatives = [
            (int(video), float(start))
            for video, start in hard_negatives
            if 0 <= video < len(self.videos)
            and start + w <= self.durations[video] + 1e-9
            and not class_coverage(self.videos[video].events, start, w)
        ]
        lengths = np.array([high - low for _, low, high in self.negatives], dtype=np.float64)
        self._negative_weights = (
            lengths / lengths.sum()
            if lengths.sum() > 0
            else np.full(len(lengths), 1 / max(1, len(lengths)))
        )

    @property
    def num_positives(self) -> int:
        """Positive samples (windows, or bags) per epoch: ``round(windows_per_epoch *
        positive_fraction)``."""
        return round(self.windows_per_epoch * self.positive_fraction)

    def check(self) -> None:
        """A ValueError saying what to change when the epoch cannot be drawn."""
        if self.num_positives and not self.positives:
            raise ValueError(
                f"no event can be a positive window: none covers min_overlap="
                f"{self.min_overlap:g} of a {self.window_s:g} s window inside its recording "
                f"(of {self.unusable_events} events in {len(self.videos)} recordings); lower "
                "window_s or min_overlap, or add recordings with events"
            )
        if self.hard_negative_fraction and not self.hard_negatives:
            raise ValueError(
                "none of the hard negatives is a normal window inside its recording: score "
                "the same training recordings with the same annotations"
            )
        if self.windows_per_epoch - self.num_positives and not self.negatives:
            raise ValueError(
                f"no {self.window_s:g} s stretch of any recording is free of events, so there "
                "are no normal windows: lower window_s, add recordings without events, or set "
                "positive_fraction to 1"
            )

    def _label(self, video: int, start: float) -> tuple[int, float] | None:
        if self.positive_spans == "actions":
            name, overlap = key_moment_label(
                self.spans[video], self.videos[video].events, start, self.window_s, self.min_overlap
            )
        else:
            name, overlap = window_label(
                self.videos[video].events, start, self.window_s, self.min_overlap
            )
        return None if name is None else (self.index[name], overlap)

    def epoch(self, epoch: int) -> list[Window]:
        """The windows of training epoch ``epoch``: ``windows_per_epoch`` samples of
        ``bag_size`` consecutive windows each, in shuffled order; a pure function of
        ``(seed, epoch)``."""
        self.check()
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, int(epoch), 0x57494E])
        k = self.bag_size
        bags = []
        by_class = list(self.positives_by_class.values())
        for _ in range(self.num_positives):
            if self.positive_sampling == "class":
                members = by_class[int(rng.integers(len(by_class)))]
                pick = members[int(rng.integers(len(members)))]
            else:
                pick = int(rng.integers(len(self.positives)))
            video, low, high = self.positives[pick]
            bag = []
            for part in range(k):  # one start in each of k equal parts of [low, high]
                start = float(low + (part + rng.random()) / k * (high - low))
                label = self._label(video, start)
                if label is None:  # cannot happen: the event alone covers min_overlap
                    raise AssertionError(f"window at {start} s of video {video} has no label")
                bag.append(Window(video, start, *label))
            bags.append(bag)
        normal = self.windows_per_epoch - self.num_positives
        hard = round(normal * self.hard_negative_fraction)
        for number in range(normal):
            bag = []
            for _ in range(k):
                if number < hard:
                    video, start = self.hard_negatives[int(rng.integers(len(self.hard_negatives)))]
                    bag.append(Window(video, start, 0, 0.0))
                    continue
                pick = int(rng.choice(len(self.negatives), p=self._negative_weights))
                video, low, high = self.negatives[pick]
                bag.append(Window(video, float(low + rng.random() * (high - low)), 0, 0.0))
            bags.append(bag)
        return [window for i in rng.permutation(len(bags)) for window in bags[i]]

    def grid(self, stride_s: float | None = None) -> list[Window]:
        """Windows ``stride_s`` (default ``window_s``) apart from 0 s over every recording,
        in order; windows between normal and positive are left out."""
        stride = self.window_s if stride_s is None else float(stride_s)
        if not stride > 0:
            raise ValueError(f"stride_s must be > 0, got {stride_s!r}")
        windows = []
        for video, duration in enumerate(self.durations):
            count = math.floor((duration - self.window_s) / stride + 1e-9) + 1
            for k in range(max(0, count)):
                label = self._label(video, k * stride)
                if label is not None:
                    windows.append(Window(video, k * stride, *label))
        return windows

    def __repr__(self) -> str:
        return (
            f"WindowSampler(window_s={self.window_s:g}, min_overlap={self.min_overlap:g}, "
            f"positive_fraction={self.positive_fraction:g}, "
            f"windows_per_epoch={self.windows_per_epoch}, "
            f"positive_sampling={self.positive_sampling!r}, bag_size={self.bag_size}, "
            f"positive_spans={self.positive_spans!r}, "
            f"hard_negative_fraction={self.hard_negative_fraction:g}, "
            f"{len(self.videos)} recordings)"
        )


def recording_length(video: UntrimmedVideo) -> tuple[float, float | None]:
    """``(duration_s, fps)`` of a recording: as its annotations declare them, else from the
    container header (nothing decoded); a folder of frames needs the annotations' ``fps``.
    Raises :class:`BadSampleError` when it cannot be known."""
    fps = video.fps
    if video.duration_s:
        return float(video.duration_s), fps
    if video.frames and fps:
        return video.frames / fps, fps
    if os.path.isdir(video.path):
        if not fps:
            raise BadSampleError(video.path, "a folder of frames needs its fps in the annotations")
        source = open_video(video.path)
        return source.num_frames() / fps, fps
    duration, probed = probe_video(video.path)
    return duration, fps or probed


def check_context(num_frames: int, context_frames: int, context_s: float) -> None:
    """Raise ValueError unless ``context_frames`` leaves window frames in a clip of
    ``num_frames`` and ``context_s`` is a positive span."""
    if isinstance(context_frames, bool) or not isinstance(context_frames, int):
        raise ValueError(f"context_frames must be an integer >= 0, got {context_frames!r}")
    if not 0 <= context_frames < num_frames:
        raise ValueError(
            f"context_frames must be in [0, num_frames) (num_frames={num_frames} counts the "
            f"context frames too), got {context_frames}"
        )
    if not (isinstance(context_s, int | float) and math.isfinite(context_s) and context_s > 0):
        raise ValueError(f"context_s must be a positive number of seconds, got {context_s!r}")


def context_times(start_s: float, count: int, span_s: float) -> np.ndarray:
    """Seconds of the ``count`` context frames of a window starting at ``start_s``: the
    centres of ``count`` equal segments of the ``span_s`` seconds before it, none before
    the recording's start (a centre before 0 takes the first frame, as a stream that has
    not yet seen ``span_s`` seconds takes its first)."""
    step = span_s / count
    return np.maximum(start_s - span_s + (np.arange(count) + 0.5) * step, 0.0)


def _read_window(source, times: np.ndarray, fps: float | None) -> np.ndarray:
    """Frames at ``times`` (seconds): by time with PyAV, else frame ``floor(t * fps)``."""
    if hasattr(source, "read_seconds"):
        return source.read_seconds(times)
    if not fps:
        raise BadSampleError(source.path, "frame rate unknown: give fps in the annotations")
    count = source.num_frames()
    indices = np.clip(np.floor(times * fps).astype(np.int64), 0, count - 1)
    return source.read(indices)


class UntrimmedWindows(ReplacesBadSamples, Dataset):
    """Windows of untrimmed recordings as ``(clip, label)``: clip (3, T, H, W) float32
    (or (crops, 3, T, H, W)), label an int, ``classes[0] == "normal"``.

    ``train=True``: the windows of :meth:`WindowSampler.epoch` for the epoch last given to
    :meth:`set_epoch` (0 at first), ``len`` is ``windows_per_epoch``; with ``bag_size`` K > 1
    each item is a bag, clip (K, 3, T, H, W) with one crop for all K windows, labelled with
    its windows' most common label. ``train=False``: the grid of windows ``stride_s`` apart
    (one window per item). Recordings whose length cannot be known are left out
    and listed in ``annotation_errors``; a window whose recording cannot be decoded is
    reported in ``bad_samples`` and replaced by window
    :func:`~rsanet.data.errors.replacement_index` of the same epoch (policy ``skip``) or
    raised (``raise``). ``hard_negatives`` (training only): a window-scores file whose
    hardest normal windows (``hard_negative_top`` of them) make up
    ``hard_negative_fraction`` of the normal samples (:func:`hard_negative_windows`).
    ``context_frames`` K > 0: the first K of a clip's ``num_frames`` frames show the
    ``context_s`` seconds before the window (:func:`context_times`), the scene's recent past
    for a network that reads it (``ResNetTSN(context_frames=K)``); the rest are the
    window's.
    """

    item_name = "window"
    check_hint = "rsanet data check ANNOTATIONS --format FORMAT"

    def __init__(
        self,
        annotations: UntrimmedAnnotations,
        *,
        num_frames: int = 8,
        window_s: float = 4.0,
        min_overlap: float = 0.5,
        positive_fraction: float = 0.5,
        windows_per_epoch: int = 1000,
        train: bool = True,
        stride_s: float | None = None,
        seed: int = 0,
        transform: Callable | None = None,
        backend: str = "pyav",
        decode_threads: int = 1,
        bad_sample_policy: str = "skip",
        max_attempts: int = 10,
        positive_sampling: str = "event",
        bag_size: int = 1,
        positive_spans: str = "events",
        hard_negatives: str | Path | None = None,
        hard_negative_fraction: float = 0.5,
        hard_negative_top: float = 0.1,
        context_frames: int = 0,
        context_s: float = 8.0,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        check_context(num_frames, context_frames, context_s)
        if any(c.casefold() == NORMAL_CLASS for c in annotations.classes):
            raise ValueError(
                f"the annotations have a class named {NORMAL_CLASS!r}, the label of windows "
                "without events: rename it (class map or labels file), or leave such "
                "recordings without events"
            )
        self.classes = [NORMAL_CLASS, *annotations.classes]
        self.num_frames, self.train, self.seed = num_frames, bool(train), seed
        self.context_frames, self.context_s = context_frames, float(context_s)
        self.stride_s = stride_s
        self.transform = transform if transform is not None else Compose([Normalize()])
        self.backend, self.decode_threads = backend, decode_threads
        self.policy = check_policy(bad_sample_policy)
        self.max_attempts = max_attempts
        self.bad_samples = BadSampleLog()
        self.annotation_errors = list(annotations.bad)
        self.videos: list[UntrimmedVideo] = []
        durations, self.fps = [], []
        for video in annotations.videos:
            try:
                duration, fps = recording_length(video)
            except BadSampleError as error:
                self.annotation_errors.append(error.bad)
                self.bad_samples.report(error.bad, "recording left out")
                continue
            except _DATA_ERRORS as error:
                bad = BadSample(video.path, f"unreadable: {type(error).__name__}: {error}")
                self.annotation_errors.append(bad)
                self.bad_samples.report(bad, "recording left out")
                continue
            self.videos.append(video)
            durations.append(duration)
            self.fps.append(fps)
        if not self.videos:
            raise ValueError(
                "no usable recordings: "
                + (str(self.annotation_errors[0]) if self.annotation_errors else "none given")
            )
        self.sampler = WindowSampler(
            self.videos,
            durations,
            self.classes,
            window_s=window_s,
            min_overlap=min_overlap,
            positive_fraction=positive_fraction,
            windows_per_epoch=windows_per_epoch,
            seed=seed,
            positive_sampling=positive_sampling,
            bag_size=bag_size if train else 1,
            positive_spans=positive_spans,
            hard_negatives=(
                hard_negative_windows(hard_negatives, self.videos, window_s, hard_negative_top)
                if hard_negatives is not None and train
                else ()
            ),
            hard_negative_fraction=hard_negative_fraction if train else 0.0,
        )
        self.bag_size = self.sampler.bag_size
        self.durations = self.sampler.durations
        self.epoch = 0
        if self.train:
            self.windows = self.sampler.epoch(0)
        else:
            self.windows = self.sampler.grid(stride_s)
            if not self.windows:
                raise ValueError(
                    f"no validation windows: every recording is shorter than window_s="
                    f"{window_s:g} s or every window is between normal and an event"
                )
        #: the session split this set comes from (:func:`split_by_session`), if any: its
        #: report and its readable summary
        self.split_report: dict | None = None
        self.split_summary: str | None = None

    def set_epoch(self, epoch: int) -> None:
        """Draw the training windows of ``epoch`` (validation grids do not change)."""
        if self.train and epoch != self.epoch:
            self.epoch = int(epoch)
            self.windows = self.sampler.epoch(self.epoch)

    def __len__(self) -> int:
        return len(self.windows) // self.bag_size

    def frame_times(self, window: Window) -> np.ndarray:
        """Seconds of the ``num_frames`` frames of ``window``: the ``context_frames`` of
        :func:`context_times`, then the centres of equal segments of the window."""
        own = self.num_frames - self.context_frames
        step = self.sampler.window_s / own
        inside = window.start_s + (np.arange(own) + 0.5) * step
        if not self.context_frames:
            return inside
        past = context_times(window.start_s, self.context_frames, self.context_s)
        return np.concatenate([past, inside])

    def load_frames(self, index: int) -> tuple[np.ndarray, int]:
        """Frames (K, T, H, W, 3) uint8 of item ``index`` (K = ``bag_size`` windows) and its
        label; raises :class:`BadSampleError` when a recording cannot be read."""
        bag = self.windows[index * self.bag_size : (index + 1) * self.bag_size]
        frames = np.stack([self._read(window) for window in bag])
        label = Counter(window.label for window in bag).most_common(1)[0][0]
        return frames, label

    def _read(self, window: Window) -> np.ndarray:
        video = self.videos[window.video]
        try:
            source = open_video(video.path, backend=self.backend, threads=self.decode_threads)
            try:
                return _read_window(source, self.frame_times(window), self.fps[window.video])
            finally:
                source.close()
        except BadSampleError:
            raise
        except _DATA_ERRORS as error:
            raise BadSampleError(
                video.path, f"unreadable: {type(error).__name__}: {error}"
            ) from None

    def counts(self) -> dict[str, int]:
        """Windows per class name in the current plan."""
        found = Counter(self.classes[w.label] for w in self.windows)
        return {name: found[name] for name in self.classes if found[name]}

    def summary(self) -> str:
        """One line: recordings, windows per class, events too short to be positives."""
        counts = ", ".join(f"{name} {n}" for name, n in self.counts().items())
        kind = f"epoch {self.epoch}" if self.train else "grid"
        if self.sampler.positive_spans == "actions":
            events = sum(len(video.events) for video in self.videos)
            kind += (
                f", positives at key moments, shorter than their event for "
                f"{self.sampler.shortened_events} of {events} events"
            )
        if self.sampler.hard_negative_fraction:
            kind += (
                f", {self.sampler.hard_negative_fraction:.0%} of normal samples from "
                f"{len(self.sampler.hard_negatives)} hard negatives"
            )
        bags = f" in {len(self)} bags of {self.bag_size}" if self.bag_size > 1 else ""
        return (
            f"{len(self.videos)} recordings, {len(self.windows)} windows{bags} of "
            f"{self.sampler.window_s:g} s ({kind}): {counts}; "
            f"{self.sampler.unusable_events} events too short for min_overlap="
            f"{self.sampler.min_overlap:g}; {len(self.annotation_errors)} bad annotations"
        )

    def __repr__(self) -> str:
        return (
            f"UntrimmedWindows({len(self)} windows, {len(self.classes)} classes, {self.sampler!r})"
        )


# -- the split -----------------------------------------------------------------------------


def session_key(video: UntrimmedVideo) -> str:
    """The session of a recording: AI Hub's ``metadata["session"]``, else the video's file
    name without its extension."""
    session = video.metadata.get("session") if video.metadata else None
    return str(session) if session else Path(video.path).stem


@dataclass
class SessionSplit:
    """Training and validation recordings, no session on both sides; ``report`` says what
    went where (JSON-able)."""

    train: UntrimmedAnnotations
    val: UntrimmedAnnotations
    report: dict = field(default_factory=dict)

    def summary(self) -> str:
        """The report as a small table: sessions, recordings, then events per class."""
        r = self.report
        lines = [
            f"split by session (val_fraction={r['val_fraction']:g}, seed={r['seed']}):",
            f"  {'':<16}{'train':>8}{'val':>8}",
            f"  {'sessions':<16}{r['sessions']['train']:>8}{r['sessions']['val']:>8}",
            f"  {'recordings':<16}{r['videos']['train']:>8}{r['videos']['val']:>8}",
        ]
        for name in r["classes"]:
            train, val = (r["events"][side].get(name, 0) for side in ("train", "val"))
            label = f"{name} events" if name != NORMAL_CLASS else "normal recordings"
            lines.append(f"  {label:<16}{train:>8}{val:>8}")
        if r["missing_in_val"]:
            lines.append(f"  no validation events of: {', '.join(r['missing_in_val'])}")
        return "\n".join(lines)


def _split_counts(videos: Sequence[UntrimmedVideo]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for video in videos:
        counts.update(e.label for e in video.events)
        if not video.events:
            counts[NORMAL_CLASS] += 1
    return dict(counts)


def split_by_session(
    annotations: UntrimmedAnnotations, val_fraction: float = 0.2, seed: int = 0
) -> SessionSplit:
    """Recordings split into training and validation with every recording of a session
    (:func:`session_key`) on the same side.

    Sessions are shuffled by ``seed``; first, while validation holds fewer than
    ``val_fraction`` of the recordings, a session is moved there for each class (rarest
    first) that has at least two sessions and none in validation yet; then sessions in
    shuffled order until ``val_fraction`` of the recordings are there. Both sides keep the
    full class list."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    sessions: dict[str, list[UntrimmedVideo]] = {}
    for video in annotations.videos:
        sessions.setdefault(session_key(video), []).append(video)
    if len(sessions) < 2:
        raise ValueError(
            f"{len(sessions)} session(s): a split by session needs at least two (give "
            "separate training and validation annotations instead)"
        )
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x53504C])
    names = sorted(sessions)
    order = [names[i] for i in rng.permutation(len(names))]
    target = val_fraction * len(annotations.videos)
    val: list[str] = []
    size = 0

    def labels_of(name: str) -> set[str]:
        return {label for v in sessions[name] for label in (v.labels or (NORMAL_CLASS,))}

    per_class = Counter(label for name in order for label in labels_of(name))
    for label in sorted(per_class, key=lambda c: (per_class[c], c)):
        if size >= target or per_class[label] < 2:
            continue
        if any(label in labels_of(name) for name in val):
            continue
        pick = next(name for name in order if label in labels_of(name) and name not in val)
        val.append(pick)
        size += len(sessions[pick])
    for name in order:
        if size >= target or len(val) == len(order) - 1:
            break
        if name not in val:
            val.append(name)
            size += len(sessions[name])
    chosen = set(val)
    train_videos = [v for v in annotations.videos if session_key(v) not in chosen]
    val_videos = [v for v in annotations.videos if session_key(v) in chosen]

    def part(videos: list[UntrimmedVideo], bad: list[BadSample]) -> UntrimmedAnnotations:
        return replace(annotations, videos=videos, bad=bad, duplicates=list(annotations.duplicates))

    events = {"train": _split_counts(train_videos), "val": _split_counts(val_videos)}
    classes = [*annotations.classes, NORMAL_CLASS]
    report = {
        "val_fraction": val_fraction,
        "seed": seed,
        "classes": [c for c in classes if events["train"].get(c) or events["val"].get(c)],
        "sessions": {"train": len(sessions) - len(chosen), "val": len(chosen)},
        "videos": {"train": len(train_videos), "val": len(val_videos)},
        "events": events,
        "missing_in_val": [
            c for c in annotations.classes if events["train"].get(c) and not events["val"].get(c)
        ],
        "val_sessions": sorted(chosen),
        "train_sessions": sorted(set(sessions) - chosen),
    }
    return SessionSplit(part(train_videos, list(annotations.bad)), part(val_videos, []), report)


# -- building from plain values ------------------------------------------------------------

#: options of :func:`build_untrimmed_dataset` given to :func:`read_untrimmed`
UNTRIMMED_READER_OPTIONS = {"labels", "class_map", "fps", "deduplicate", "allow_outside_root"}
#: options of :func:`build_untrimmed_dataset` about decoding and augmentation
UNTRIMMED_LOADING_OPTIONS = {
    "backend",
    "decode_threads",
    "max_attempts",
    "flip_pairs",
    "flip_prob",
    "scales",
    "resize",
}


def _union_classes(*parts: UntrimmedAnnotations) -> list[str]:
    return list(dict.fromkeys(c for part in parts for c in part.classes))


def build_untrimmed_dataset(
    format: str,
    annotations: str | Path | None = None,
    root: str | Path | None = None,
    *,
    split: str = "train",
    val_annotations: str | Path | None = None,
    num_frames: int = 8,
    size: int = 224,
    train: bool | None = None,
    flip_mode: str = "none",
    bad_sample_policy: str = "skip",
    seed: int = 0,
    num_crops: int = 1,
    window_s: float = 4.0,
    min_overlap: float = 0.5,
    positive_fraction: float = 0.5,
    windows_per_epoch: int = 1000,
    val_stride_s: float | None = None,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    full_frame: bool = False,
    positive_sampling: str = "event",
    bag_size: int = 1,
    positive_spans: str = "events",
    hard_negatives: str | Path | None = None,
    hard_negative_fraction: float = 0.5,
    hard_negative_top: float = 0.1,
    context_frames: int = 0,
    context_s: float = 8.0,
    quiet: bool = False,
    **options,
) -> UntrimmedWindows:
    """The ``split`` ("train" or "val") windows of untrimmed recordings in one of
    :data:`~rsanet.data.untrimmed.UNTRIMMED_FORMATS`.

    With ``val_annotations``, ``annotations`` holds the training recordings and
    ``val_annotations`` the validation ones (classes: the union, training's first);
    without it, the recordings of ``annotations`` (AI Hub: the data folder, or ``root``)
    are split by :func:`split_by_session` (``val_fraction``, ``split_seed``), and the
    dataset's ``split_report`` holds the report. ``train`` (default ``split == "train"``)
    draws ``windows_per_epoch`` random windows per epoch with multi-scale crops and flips;
    otherwise the grid ``val_stride_s`` apart (default ``window_s``) with a centre crop
    (or ``num_crops=3``). ``full_frame``: the whole frame squeezed to size x size instead
    (fixed cameras: an event may happen anywhere in view); ``positive_sampling`` and
    ``bag_size`` (training only), ``positive_spans`` (training and validation): see
    :class:`WindowSampler`; ``hard_negatives`` and its ``hard_negative_fraction`` and
    ``hard_negative_top`` (training only), ``context_frames`` and ``context_s`` (frames of
    the seconds before each window): see :class:`UntrimmedWindows`.

    ``options``: reader options ``labels``, ``class_map``, ``fps``, ``deduplicate``,
    ``allow_outside_root``; loading options ``backend``, ``decode_threads``,
    ``max_attempts``, ``flip_prob``, ``flip_pairs``, ``scales``, ``resize``.
    """
    if format not in UNTRIMMED_FORMATS:
        raise ValueError(f"unknown format {format!r}; one of {', '.join(UNTRIMMED_FORMATS)}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if flip_mode not in FLIP_MODES:
        raise ValueError(f"flip_mode must be one of {', '.join(FLIP_MODES)}, got {flip_mode!r}")
    accepted = UNTRIMMED_READER_OPTIONS | UNTRIMMED_LOADING_OPTIONS
    unknown = set(options) - accepted
    if unknown:
        raise TypeError(
            f"{format}: unknown options {sorted(unknown)}; accepted: {sorted(accepted)}"
        )
    check_policy(bad_sample_policy)
    _check_window_options(
        window_s,
        min_overlap,
        positive_fraction,
        windows_per_epoch,
        positive_sampling,
        bag_size,
        positive_spans,
        hard_negative_fraction,
    )
    train = split == "train" if train is None else bool(train)
    reader = {k: v for k, v in options.items() if k in UNTRIMMED_READER_OPTIONS}

    def read(path: str | Path | None, **extra) -> UntrimmedAnnotations:
        return read_untrimmed(
            format, path, root, policy=bad_sample_policy, quiet=quiet, **reader, **extra
        )

    report = None
    if val_annotations is not None:
        train_part = read(annotations)
        val_part = read(val_annotations, quiet=True) if split == "train" else read(val_annotations)
        classes = _union_classes(train_part, val_part)
        chosen = train_part if split == "train" else val_part
        chosen = replace(chosen, classes=classes)
    else:
        everything = read(annotations)
        parts = split_by_session(everything, val_fraction, split_seed)
        chosen, report = (parts.train if split == "train" else parts.val), parts.report
    pairs = resolve_flip_pairs(
        [NORMAL_CLASS, *chosen.classes], tuple(tuple(p) for p in options.get("flip_pairs", ()))
    )
    transform = build_transforms(
        train=train,
        size=size,
        flip_mode=flip_mode,
        flip_pairs=pairs,
        flip_prob=float(options.get("flip_prob", 0.5)),
        num_crops=num_crops,
        scales=options.get("scales", MULTI_SCALE_CROP_SCALES),
        resize=options.get("resize"),
        full_frame=full_frame,
    )
    dataset = UntrimmedWindows(
        chosen,
        num_frames=num_frames,
        window_s=window_s,
        min_overlap=min_overlap,
        positive_fraction=positive_fraction,
        windows_per_epoch=windows_per_epoch,
        train=train,
        stride_s=val_stride_s,
        seed=seed,
        transform=transform,
        backend=options.get("backend", "pyav"),
        decode_threads=int(options.get("decode_threads", 1)),
        bad_sample_policy=bad_sample_policy,
        max_attempts=int(options.get("max_attempts", 10)),
        positive_sampling=positive_sampling,
        bag_size=bag_size,
        positive_spans=positive_spans,
        hard_negatives=hard_negatives,
        hard_negative_fraction=hard_negative_fraction,
        hard_negative_top=hard_negative_top,
        context_frames=context_frames,
        context_s=context_s,
    )
    dataset.split_report = report
    dataset.split_summary = None if report is None else parts.summary()
    return dataset


__all__ = [
    "NORMAL_CLASS",
    "SessionSplit",
    "UntrimmedWindows",
    "Window",
    "WindowSampler",
    "build_untrimmed_dataset",
    "class_coverage",
    "context_times",
    "hard_negative_windows",
    "key_moment_label",
    "key_moments",
    "recording_length",
    "session_key",
    "split_by_session",
    "window_label",
]
