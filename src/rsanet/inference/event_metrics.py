"""Event-level and frame-level metrics of alerts over long recordings (pure functions: numpy
only, no model), and the threshold sweep that turns a validation split into a rules file.

Definitions (``docs/events.md`` has them with examples):

* **Matching.** An alert of class ``c`` at time ``t`` can match an event of class ``c``
  when ``start - tolerance <= t <= end + tolerance``. Alerts are taken in time order; each
  takes the still-unmatched event of its class whose extended interval contains it and
  that ends first (ties: the earlier start, then annotation order). Taking the event that
  ends first makes this greedy matching a maximum one: no other assignment matches more
  events. Each event is matched at most once and each alert at most once.
* An alert left unmatched inside the extended interval of an event of its class that an
  earlier alert already matched is a **duplicate** (the rule fired again during the same
  event, after its cooldown): it is reported, but it is neither a hit nor a false alarm.
  Every other unmatched alert is a **false alarm**.
* **Recall** = matched events / events; **precision** = matched alerts / (matched alerts +
  false alarms); **F1** their harmonic mean. ``None`` where a denominator is 0.
* **Event-free time** of a video = its duration minus the union of the event intervals
  extended by the tolerance on each side (clipped to the video). For a class: the events
  of that class; for ``overall``: the events of every class. **False alarms per hour** =
  false alarms / event-free hours (``None`` when there is no event-free time). A false
  alarm inside the extended interval of an event of another class names a real incident
  wrongly (``false_alarms_in_events``); **false alarms per hour in event-free time**
  (``quiet_fa_per_hour``) leaves those out of the count.
* **Detection latency** of a matched event = alert time - event start (negative when the
  alert came within the tolerance before the start); median and 90th percentile (linear
  interpolation between order statistics, as ``numpy.percentile``).
* **Frame-level ROC-AUC and AP** (the UCF-Crime convention): every decoded frame is
  labelled 1 inside an event interval ``[start, end]`` and 0 elsewhere, and takes the mean
  score of the windows ``[start, end)`` covering it (the nearest later window, else the
  last one, when none does); frames of all videos are pooled. Per class: one-vs-rest on
  that class's score; ``overall``: any event against the maximum score over the evaluated
  (non-normal) classes. AUC counts tied scores as half (Mann-Whitney); AP is the step sum
  ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (tied scores enter together).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

#: tolerance on times (seconds) when comparing window ends with durations, as the alert rules do
TIME_EPS = 1e-9


class EventLike(Protocol):
    label: str
    start_s: float
    end_s: float


class AlertLike(Protocol):
    label: str
    time: float


# -- matching --------------------------------------------------------------------------


@dataclass
class Matching:
    """How the alerts of one video met its events (indices into the lists given):
    ``pairs`` (event, alert) matched, ``false_alarms`` and ``duplicates`` (alerts),
    ``missed`` (events)."""

    pairs: list[tuple[int, int]] = field(default_factory=list)
    false_alarms: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)


def _near(event: EventLike, time: float, tolerance: float) -> bool:
    """Whether ``time`` falls in ``event``'s interval extended by ``tolerance`` each side."""
    return event.start_s - tolerance - TIME_EPS <= time <= event.end_s + tolerance + TIME_EPS


def match_alerts(
    events: Sequence[EventLike], alerts: Sequence[AlertLike], tolerance: float
) -> Matching:
    """Match the alerts of one video with its events (see the module docstring)."""
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance must be a finite number of seconds >= 0, got {tolerance!r}")
    if not alerts:  # the common case of a threshold sweep
        return Matching(missed=list(range(len(events))))
    matched_event: dict[int, int] = {}
    out = Matching()
    for a in sorted(range(len(alerts)), key=lambda i: (alerts[i].time, i)):
        alert = alerts[a]
        inside = [
            e
            for e, event in enumerate(events)
            if event.label == alert.label and _near(event, alert.time, tolerance)
        ]
        free = [e for e in inside if e not in matched_event]
        if free:
            e = min(free, key=lambda i: (events[i].end_s, events[i].start_s, i))
            matched_event[e] = a
            out.pairs.append((e, a))
        elif inside:
            out.duplicates.append(a)
        else:
            out.false_alarms.append(a)
    out.pairs.sort()
    out.false_alarms.sort()
    out.duplicates.sort()
    out.missed = [e for e in range(len(events)) if e not in matched_event]
    return out


def union_seconds(intervals: Iterable[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of ``intervals`` clipped to ``[lo, hi]``."""
    spans = sorted((max(a, lo), min(b, hi)) for a, b in intervals)
    total, end = 0.0, lo
    for a, b in spans:
        if b <= a:
            continue
        if a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def event_free_seconds(
    events: Sequence[EventLike], duration_s: float, tolerance: float, label: str | None = None
) -> float:
    """Duration minus the union of the (tolerance-extended) intervals of the events of
    ``label`` (all events when None)."""
    spans = [
        (e.start_s - tolerance, e.end_s + tolerance)
        for e in events
        if label is None or e.label == label
    ]
    return max(0.0, duration_s - union_seconds(spans, 0.0, duration_s))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile with linear interpolation (``numpy.percentile``'s default),
    None for no values."""
    if not len(values):
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


@dataclass
class EventCounts:
    """Counts of one class (or ``overall``) over a set of videos."""

    events: int = 0
    detected: int = 0
    alerts: int = 0
    matched_alerts: int = 0
    false_alarms: int = 0
    #: false alarms raised during an event of another class (within its tolerance): a
    #: real incident given the wrong name, not an alarm on quiet video
    false_alarms_in_events: int = 0
    duplicates: int = 0
    event_free_s: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return _ratio(self.detected, self.events)

    @property
    def precision(self) -> float | None:
        return _ratio(self.matched_alerts, self.matched_alerts + self.false_alarms)

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def fa_per_hour(self) -> float | None:
        return _ratio(self.false_alarms, self.event_free_s / 3600.0)

    @property
    def quiet_fa_per_hour(self) -> float | None:
        """False alarms raised in event-free time per hour of it: :attr:`fa_per_hour`
        without the wrong names given to other classes' events."""
        return _ratio(self.false_alarms - self.false_alarms_in_events, self.event_free_s / 3600.0)

    @property
    def latency_median(self) -> float | None:
        return percentile(self.latencies, 50)

    @property
    def latency_p90(self) -> float | None:
        return percentile(self.latencies, 90)

    def add(self, other: EventCounts) -> None:
        """Add the counts of ``other`` (not its event-free time: overall has its own)."""
        self.events += other.events
        self.detected += other.detected
        self.alerts += other.alerts
        self.matched_alerts += other.matched_alerts
        self.false_alarms += other.false_alarms
        self.false_alarms_in_events += other.false_alarms_in_events
        self.duplicates += other.duplicates
        self.latencies += other.latencies

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "detected": self.detected,
            "missed": self.events - self.detected,
            "alerts": self.alerts,
            "false_alarms": self.false_alarms,
            "false_alarms_in_events": self.false_alarms_in_events,
            "duplicates": self.duplicates,
            "recall": self.recall,
            "precision": self.precision,
            "f1": self.f1,
            "event_free_hours": self.event_free_s / 3600.0,
            "fa_per_hour": self.fa_per_hour,
            "quiet_fa_per_hour": self.quiet_fa_per_hour,
            "latency_median_s": self.latency_median,
            "latency_p90_s": self.latency_p90,
        }


@dataclass
class VideoEvents:
    """What the event metrics need of one video: its events, its alerts, its duration."""

    events: Sequence[EventLike]
    alerts: Sequence[AlertLike]
    duration_s: float


def event_counts(
    videos: Sequence[VideoEvents], classes: Sequence[str], tolerance: float
) -> tuple[dict[str, EventCounts], EventCounts]:
    """Per-class counts of ``classes`` and the overall counts (sums over those classes;
    the overall event-free time is that of all events). Events and alerts of other classes
    are left out."""
    per_class = {label: EventCounts() for label in classes}
    overall = EventCounts()
    for video in videos:
        events = [e for e in video.events if e.label in per_class]
        alerts = [a for a in video.alerts if a.label in per_class]
        whole = max(0.0, video.duration_s)  # the event-free time of a class without events
        if not events and not alerts:  # most videos of a threshold sweep: time only
            for counts in per_class.values():
                counts.event_free_s += whole
            overall.event_free_s += whole
            continue
        matching = match_alerts(events, alerts, tolerance)
        event_labels = Counter(e.label for e in events)
        alert_labels = Counter(a.label for a in alerts)
        for label, counts in per_class.items():
            counts.events += event_labels[label]
            counts.alerts += alert_labels[label]
            counts.event_free_s += (
                event_free_seconds(events, video.duration_s, tolerance, label)
                if label in event_labels
                else whole
            )
        for e, a in matching.pairs:
            counts = per_class[events[e].label]
            counts.detected += 1
            counts.matched_alerts += 1
            counts.latencies.append(alerts[a].time - events[e].start_s)
        for a in matching.false_alarms:
            alert = alerts[a]
            counts = per_class[alert.label]
            counts.false_alarms += 1
            counts.false_alarms_in_events += any(_near(e, alert.time, tolerance) for e in events)
        for a in matching.duplicates:
            per_class[alerts[a].label].duplicates += 1
        overall.event_free_s += event_free_seconds(events, video.duration_s, tolerance)
    for counts in per_class.values():
        overall.add(counts)
    return per_class, overall


# -- frame level -----------------------------------------------------------------------


def frame_scores(
    frame_times: Sequence[float],
    starts: Sequence[float],
    ends: Sequence[float],
    scores: np.ndarray,
) -> np.ndarray:
    """Scores (F, K) of frames at ``frame_times``: the mean of the scores (W, K) of the
    windows ``[start, end)`` covering each frame; a frame no window covers takes the next
    window to end after it, or the last window. Windows must come in order of their ends
    with non-decreasing starts (as sliding windows do)."""
    times = np.asarray(frame_times, dtype=np.float64)
    starts, ends = np.asarray(starts, np.float64), np.asarray(ends, np.float64)
    scores = np.asarray(scores, dtype=np.float64).reshape(len(ends), -1)
    if not len(ends):
        raise ValueError("no windows: frame scores need at least one")
    if np.any(np.diff(ends) < 0) or np.any(np.diff(starts) < 0):
        raise ValueError("windows must be ordered by start and end")
    eps = 1e-6
    first = np.searchsorted(ends - eps, times, side="right")  # first window ending after t
    past = np.searchsorted(starts - eps, times, side="right")  # windows starting at or before t
    uncovered = past <= first
    first[uncovered] = np.minimum(first[uncovered], len(ends) - 1)
    past[uncovered] = first[uncovered] + 1
    # one mean per distinct range of windows (not a difference of cumulative sums, which
    # would break ties between frames that see the same windows)
    pairs, inverse = np.unique(np.stack([first, past], axis=1), axis=0, return_inverse=True)
    means = np.stack([scores[a:b].mean(axis=0) for a, b in pairs]) if len(pairs) else scores[:0]
    return means[np.asarray(inverse).ravel()]


def frame_truth(
    frame_times: Sequence[float], events: Sequence[EventLike], label: str | None = None
) -> np.ndarray:
    """1 for frames inside ``[start, end]`` of an event (of ``label``; any when None)."""
    times = np.asarray(frame_times, dtype=np.float64)
    truth = np.zeros(len(times), dtype=bool)
    for event in events:
        if label is None or event.label == label:
            truth |= (times >= event.start_s - TIME_EPS) & (times <= event.end_s + TIME_EPS)
    return truth


def _checked(labels: Sequence[Any], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{len(y)} labels but {len(s)} scores")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y, s


def roc_auc(labels: Sequence[Any], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve: the probability that a positive scores above a negative,
    ties counting half (Mann-Whitney U / (P N)); None without positives or negatives."""
    y, s = _checked(labels, scores)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # average rank (1-based) of each distinct value: tied scores share it
    ends = np.cumsum(counts)
    average = ends - (counts - 1) / 2.0
    ranks = average[inverse]
    u = ranks[y].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def precision_recall_curve(
    labels: Sequence[Any], scores: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) at each distinct score, highest threshold first
    (a frame counts as positive when its score is >= the threshold)."""
    y, s = _checked(labels, scores)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct value
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    total = max(int(y.sum()), 1)
    return tp / (tp + fp), tp / total, s[last]


def average_precision(labels: Sequence[Any], scores: Sequence[float]) -> float | None:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds (no
    interpolation); None without positives."""
    y, _ = _checked(labels, scores)
    if not y.any():
        return None
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# -- threshold sweep -------------------------------------------------------------------


def simulate_alerts(
    times: Sequence[float],
    scores: Sequence[float],
    threshold: float,
    min_duration: float = 0.0,
    cooldown: float = 60.0,
) -> list[float]:
    """The times at which one alert rule fires over a video's windows (ends ``times``,
    smoothed scores ``scores`` of the rule's class), as
    :class:`rsanet.inference.AlertEngine` fires: the score at or above ``threshold`` in
    consecutive windows whose ends span ``min_duration``, and not within ``cooldown`` of the
    last alert."""
    times = np.asarray(times, dtype=np.float64)
    above = np.flatnonzero(np.asarray(scores, dtype=np.float64) >= threshold)
    fired: list[float] = []
    since, previous, last = 0.0, -2, None
    for i in above:
        t = float(times[i])
        if i != previous + 1:
            since = t
        previous = i
        if t - since < min_duration - TIME_EPS:
            continue
        if last is not None and t - last < cooldown - TIME_EPS:
            continue
        last = t
        fired.append(t)
    return fired


def top_class_scores(scores: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """Window scores (W, K) as ``top_class`` rules see them: in each window, the scores of
    ``columns`` (the classes that have a rule) that are below the highest of them become 0,
    so a rule of such a class never fires there (other columns are kept)."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    if len(scores) and len(columns):
        ruled = scores[:, columns]
        scores[:, columns] = np.where(ruled >= ruled.max(axis=1, keepdims=True), ruled, 0.0)
    return scores


@dataclass
class ScoreSeries:
    """One video's windows as the sweep needs them: window ``ends`` (seconds), the smoothed
    ``scores`` (W,) of one class, the events, and the duration."""

    ends: Sequence[float]
    scores: Sequence[float]
    events: Sequence[EventLike]
    duration_s: float
    #: the highest score (a threshold above it fires nothing: the sweep skips the video)
    peak: float = field(init=False)

    def __post_init__(self) -> None:
        self.ends = np.asarray(self.ends, dtype=np.float64)
        self.scores = np.asarray(self.scores, dtype=np.float64)
        self.peak = float(self.scores.max()) if len(self.scores) else -math.inf


@dataclass(frozen=True)
class _Alert:
    label: str
    time: float


@dataclass
class SweepResult:
    """The threshold chosen for ``label`` and its false alarms per hour (of the event-free
    time the sweep counted); ``achieved`` is False when no threshold in [0, 1] meets the
    target (``threshold`` is then the one with the fewest false alarms per hour) or when
    there is no event-free time to measure false alarms on (``threshold`` None). In the
    budget split for recall, ``target_fa_per_hour`` is the rate the class was given and
    ``achieved`` whether all the classes together stay within the budget. ``min_duration``
    is the rule's, with which the threshold was picked."""

    label: str
    threshold: float | None
    fa_per_hour: float | None
    recall: float | None
    false_alarms: int
    alerts: int
    candidates: int
    achieved: bool
    target_fa_per_hour: float
    min_duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def candidate_thresholds(scores: np.ndarray, max_candidates: int = 2000) -> np.ndarray:
    """The thresholds worth trying, ascending: every distinct score (where a rule's
    decisions change), at most ``max_candidates`` of them (evenly spaced in rank), and the
    smallest number above the highest score (no alert at all) when it is <= 1."""
    values = np.unique(np.asarray(scores, dtype=np.float64))
    if len(values) > max_candidates:
        picks = np.linspace(0, len(values) - 1, max_candidates).round().astype(np.int64)
        values = values[np.unique(picks)]
    if len(values):
        above = np.nextafter(values[-1], np.inf)
        if above <= 1.0:
            values = np.r_[values, above]
    return values


def _series_candidates(series: Sequence[ScoreSeries], max_candidates: int) -> np.ndarray:
    """:func:`candidate_thresholds` of the scores of all of ``series`` pooled."""
    pooled = np.concatenate([np.asarray(one.scores, np.float64) for one in series] or [[]])
    return candidate_thresholds(pooled, max_candidates)


def evaluate_threshold(
    label: str,
    series: Sequence[ScoreSeries],
    threshold: float,
    *,
    min_duration: float,
    cooldown: float,
    tolerance: float,
    event_free_labels: Collection[str] = (),
) -> EventCounts:
    """The event counts of ``label`` when its rule uses ``threshold``; the event-free time
    leaves out the events of ``label`` and of ``event_free_labels`` (so that rates of
    several classes measured on the same time add up to their overall rate)."""
    videos = [
        VideoEvents(
            [e for e in one.events if e.label == label],
            [
                _Alert(label, t)
                for t in (
                    simulate_alerts(one.ends, one.scores, threshold, min_duration, cooldown)
                    if one.peak >= threshold
                    else ()
                )
            ],
            one.duration_s,
        )
        for one in series
    ]
    counts = event_counts(videos, [label], tolerance)[0][label]
    if set(event_free_labels) - {label}:
        counts.event_free_s = shared_event_free_seconds(
            series, {label, *event_free_labels}, tolerance
        )
    return counts


def shared_event_free_seconds(
    series: Sequence[ScoreSeries], labels: Collection[str], tolerance: float
) -> float:
    """Seconds of ``series`` free of the (tolerance-extended) events of every class in
    ``labels``: the time on which rules of those classes sharing one budget are counted."""
    return sum(
        event_free_seconds([e for e in one.events if e.label in labels], one.duration_s, tolerance)
        for one in series
    )


def sweep_threshold(
    label: str,
    series: Sequence[ScoreSeries],
    *,
    target_fa_per_hour: float,
    min_duration: float = 0.0,
    cooldown: float = 60.0,
    tolerance: float = 0.0,
    max_candidates: int = 2000,
    event_free_labels: Collection[str] = (),
) -> SweepResult:
    """The lowest threshold for ``label`` whose false alarms per hour of event-free time
    (over all of ``series``) are at most ``target_fa_per_hour``, with the rule's
    ``min_duration`` and ``cooldown``. The event-free time is that of ``label``'s events,
    and of ``event_free_labels``' too when given: a sweep of several rules that share one
    budget passes all their classes, so that the per-class rates add up to the overall
    rate. False alarms need not fall as the threshold rises (a cooldown started earlier
    can hide one), so the candidates are tried in ascending order and the first that meets
    the target wins."""
    if not (target_fa_per_hour >= 0 and math.isfinite(target_fa_per_hour)):
        raise ValueError(f"the target must be a finite number >= 0, got {target_fa_per_hour!r}")
    candidates = _series_candidates(series, max_candidates)
    shared = None  # the event-free time does not change with the threshold: once
    if set(event_free_labels) - {label}:
        shared = shared_event_free_seconds(series, {label, *event_free_labels}, tolerance)
    best: tuple[float, float, EventCounts] | None = None
    for threshold in candidates:
        counts = evaluate_threshold(
            label,
            series,
            float(threshold),
            min_duration=min_duration,
            cooldown=cooldown,
            tolerance=tolerance,
        )
        if shared is not None:
            counts.event_free_s = shared
        rate = counts.fa_per_hour
        if rate is None:
            return SweepResult(
                label,
                None,
                None,
                counts.recall,
                0,
                0,
                len(candidates),
                False,
                target_fa_per_hour,
                min_duration,
            )
        if best is None or rate < best[1]:
            best = (float(threshold), rate, counts)
        if rate <= target_fa_per_hour + 1e-12:
            return SweepResult(
                label,
                float(threshold),
                rate,
                counts.recall,
                counts.false_alarms,
                counts.alerts,
                len(candidates),
                True,
                target_fa_per_hour,
                min_duration,
            )
    if best is None:  # no windows at all
        return SweepResult(
            label, None, None, None, 0, 0, 0, False, target_fa_per_hour, min_duration
        )
    threshold, rate, counts = best
    return SweepResult(
        label,
        threshold,
        rate,
        counts.recall,
        counts.false_alarms,
        counts.alerts,
        len(candidates),
        False,
        target_fa_per_hour,
        min_duration,
    )


@dataclass(frozen=True)
class CurvePoint:
    """One threshold (with one minimum duration) of a class's rule on the calibration
    videos: its event counts."""

    threshold: float
    counts: EventCounts
    min_duration: float = 0.0

    @property
    def false_alarms(self) -> int:
        return self.counts.false_alarms

    @property
    def detected(self) -> int:
        return self.counts.detected


def threshold_curve(
    label: str,
    series: Sequence[ScoreSeries],
    *,
    max_false_alarms: int,
    min_duration: float = 0.0,
    cooldown: float = 60.0,
    tolerance: float = 0.0,
    max_candidates: int = 2000,
) -> list[CurvePoint]:
    """The counts of ``label``'s rule at its candidate thresholds, from the highest down
    (fewest alerts first), until the first one with more than ``max_false_alarms`` false
    alarms (included: it shows where the curve was cut)."""
    points = []
    for threshold in _series_candidates(series, max_candidates)[::-1]:
        counts = evaluate_threshold(
            label,
            series,
            float(threshold),
            min_duration=min_duration,
            cooldown=cooldown,
            tolerance=tolerance,
        )
        points.append(CurvePoint(float(threshold), counts, min_duration))
        if counts.false_alarms > max_false_alarms:
            break
    return points


def _fewest_false_alarms(curve: Sequence[CurvePoint]) -> CurvePoint:
    """The point with the fewest false alarms (of those, the shortest minimum duration,
    then the highest threshold)."""
    return min(curve, key=lambda p: (p.false_alarms, p.min_duration, -p.threshold))


def allot_false_alarms(
    curves: Mapping[str, Sequence[CurvePoint]], budget: int
) -> dict[str, CurvePoint]:
    """One point of each class's curve, detecting the most events in all with at most
    ``budget`` false alarms in all (exact: a knapsack over whole false alarms; ties go to
    fewer false alarms, then to shorter minimum durations, then to higher thresholds). A
    curve may hold points of several minimum durations: one of them is picked. The curves
    are independent because an alert can only match an event of its own class, so the
    classes' false alarms add up to those of the rules together. A class none of whose
    points fits the budget left to it takes its point with the fewest false alarms, which
    then exceeds the budget."""
    chosen: dict[str, CurvePoint] = {}
    fitting: dict[str, list[CurvePoint]] = {}
    for label, curve in curves.items():
        within = [p for p in curve if p.false_alarms <= budget]
        if within:
            fitting[label] = within
        else:  # cannot fit at all
            chosen[label] = _fewest_false_alarms(curve)
    left = max(0, budget - sum(p.false_alarms for p in chosen.values()))
    # table[b]: the best (events detected, -false alarms, choices) with b false alarms at
    # most, None where the classes so far cannot keep within b
    Entry = tuple[int, int, dict[str, CurvePoint]]
    table: list[Entry | None] = [(0, 0, {})] * (left + 1)
    for label, points in fitting.items():
        updated: list[Entry | None] = []
        for b in range(left + 1):
            options = [
                (table[b - p.false_alarms], p)
                for p in points
                if p.false_alarms <= b and table[b - p.false_alarms] is not None
            ]
            if not options:
                updated.append(None)
                continue
            (detected, negative_fa, picks), point = max(
                options,
                key=lambda o: (
                    o[0][0] + o[1].detected,
                    o[0][1] - o[1].false_alarms,
                    -o[1].min_duration,
                    o[1].threshold,
                ),
            )
            updated.append(
                (
                    detected + point.detected,
                    negative_fa - point.false_alarms,
                    {**picks, label: point},
                )
            )
        table = updated
    if table[left] is None:  # even the fewest false alarms of each exceed the budget
        fewest = {label: _fewest_false_alarms(points) for label, points in fitting.items()}
        return {**fewest, **chosen}
    return {**table[left][2], **chosen}


def evaluate_rules(
    series: Mapping[str, Sequence[ScoreSeries]],
    rules: Mapping[str, tuple[float, float, float]],
    *,
    tolerance: float,
) -> tuple[dict[str, EventCounts], EventCounts]:
    """The event counts of several rules firing together, ``{label: (threshold,
    min_duration, cooldown)}``, each replayed over its class's ``series`` (the same videos
    in the same order for every class): per class and overall, as :func:`event_counts`
    gives them (the overall false alarms per hour are those of the whole rules file)."""
    labels = list(rules)
    if not labels:
        return {}, EventCounts()
    videos = []
    for number, one in enumerate(series[labels[0]]):
        alerts = [
            _Alert(label, t)
            for label in labels
            for t in simulate_alerts(
                series[label][number].ends, series[label][number].scores, *rules[label]
            )
        ]
        videos.append(VideoEvents(one.events, alerts, one.duration_s))
    return event_counts(videos, labels, tolerance)


def rules_document(
    thresholds: dict[str, tuple[float, float, float]],
    top_class: Collection[str] = (),
) -> dict[str, Any]:
    """The rules file (the format ``rsanet predict --rules`` reads) of ``{label:
    (threshold, min_duration, cooldown)}``; the rules of ``top_class`` labels say
    ``top_class: true``."""
    rules: dict[str, Any] = {}
    for label, (threshold, min_duration, cooldown) in thresholds.items():
        rules[label] = {
            "threshold": float(threshold),
            "min_duration": float(min_duration),
            "cooldown": float(cooldown),
        }
        if label in top_class:
            rules[label]["top_class"] = True
    return {"rules": rules}
