"""Event-level evaluation of the alerting pipeline over long, annotated recordings.

Each recording is decoded once, as fast as it decodes (never paced to real time), and goes
through what ``rsanet predict --window-seconds W --rules RULES`` runs on it: the predictor's
sliding windows and score smoothing (:meth:`Predictor.analyse`) and a fresh
:class:`AlertEngine` per video. The alerts and the smoothed window scores are then scored
against the annotated events (:mod:`rsanet.inference.event_metrics`); a recording that
cannot be read is a failure in the report, and the others go on.

>>> from rsanet.data import read_untrimmed
>>> from rsanet.inference import Predictor
>>> from rsanet.inference.event_eval import EventEvaluation
>>> data = read_untrimmed("intervals", "test.csv", "videos/")          # doctest: +SKIP
>>> evaluation = EventEvaluation(Predictor.from_checkpoint("m.pt"), window=2.0, stride=1.0)
>>> report = evaluation.run(data.videos, tolerance=2.0)               # doctest: +SKIP
>>> report["event"]["overall"]["recall"]                              # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsanet.inference import event_metrics as em
from rsanet.inference.alerts import DEFAULTS, AlertEngine, AlertEvent, AlertRule
from rsanet.inference.predictor import NonFiniteScoresError, Predictor
from rsanet.inference.sources import SourceError, SourceSpec, decode_frames

#: class names taken for "normal" (no event) unless told otherwise: never evaluated
NORMAL_NAMES = ("normal", "background", "none", "no_event")
#: why the threshold sweep writes no rule for a class
NO_EVENT = "no event of this class in these recordings"
#: how the threshold sweep splits its false-alarm budget over the rules (see ``sweep``)
SPLITS = ("even", "recall")


@dataclass
class VideoRun:
    """One recording after the run: its events, the windows' [start, end) and smoothed
    scores (W, K), the frame times, the alerts, the decoded duration, the wall time and
    the decoding passes (1: each recording is decoded once); ``error`` when it failed."""

    path: str
    events: tuple
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    duration_s: float = 0.0
    wall_s: float = 0.0
    decode_passes: int = 0
    error: str | None = None

    @property
    def score_matrix(self) -> np.ndarray:
        return np.asarray(self.scores, dtype=np.float64).reshape(len(self.scores), -1)


def default_rules(classes: Sequence[str]) -> list[AlertRule]:
    """A rule with :data:`rsanet.inference.alerts.DEFAULTS` for each class."""
    return [AlertRule(label, **DEFAULTS) for label in classes]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class EventEvaluation:
    """Runs the predictor, smoothing and alert rules over recordings and scores them.

    Args:
        predictor: the model, its clip sampling and smoothing (``predictor.smoothing``).
        window, stride: seconds, as ``rsanet predict --window-seconds/--stride-seconds``.
        rules: alert rules (default: :func:`default_rules` of the evaluated classes).
        normal: class names that are no event (default: those in :data:`NORMAL_NAMES`).
        decode: ``decode(spec, short_side=...)`` -> frames (:func:`decode_frames`).
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        window: float,
        stride: float,
        rules: Sequence[AlertRule] | None = None,
        normal: Iterable[str] | None = None,
        decode: Callable[..., Iterable] = decode_frames,
    ) -> None:
        self.predictor = predictor
        self.window, self.stride = float(window), float(stride)
        names = set(NORMAL_NAMES) if normal is None else set(normal)
        self.classes = [
            c for c in predictor.classes if (c.casefold() if normal is None else c) not in names
        ]
        if not self.classes:
            raise ValueError("every class of the model is a normal class: nothing to evaluate")
        self.rules = list(rules) if rules is not None else default_rules(self.classes)
        AlertEngine(self.rules, predictor.classes)  # checks the rules' class names
        self.decode = decode

    # -- running ---------------------------------------------------------------------------

    def run_video(self, path: str, events: Sequence[Any] = ()) -> VideoRun:
        """Decode ``path`` once and run windows, smoothing and rules over it; a recording
        that cannot be read or scored comes back with ``error`` set."""
        run = VideoRun(str(path), tuple(events))
        started = time.perf_counter()
        engine = AlertEngine(self.rules, self.predictor.classes)
        last_end = [0.0]

        def on_frame(frame, _latest) -> None:
            run.frame_times.append(frame.time)
            last_end[0] = frame.time + (frame.duration or 0.0)

        analysis = None
        try:
            run.decode_passes += 1
            frames = self.decode(
                SourceSpec("file", str(path)), short_side=self.predictor.short_side
            )
            analysis = self.predictor.analyse(
                frames, window=self.window, stride=self.stride, source=str(path), on_frame=on_frame
            )
            for result in analysis:
                run.starts.append(result.start)
                run.ends.append(result.end)
                run.scores.append(np.asarray(result.scores, dtype=np.float64))
                run.alerts += engine.update(result)
        except (SourceError, NonFiniteScoresError, ValueError, OSError) as error:
            run.error = _one_line(error)
        finally:
            if analysis is not None:
                analysis.close()
        if run.error is None and not run.ends:
            run.error = "no window could be made (no frame decoded)"
        run.duration_s = max(last_end[0], run.ends[-1] if run.ends else 0.0)
        run.wall_s = time.perf_counter() - started
        return run

    def run(
        self,
        videos: Sequence[Any],
        *,
        tolerance: float = 2.0,
        target_fa_per_hour: float | None = None,
        split: str = "even",
        min_durations: Sequence[float] | None = None,
        progress: Callable[[int, int, VideoRun], None] | None = None,
    ) -> tuple[dict[str, Any], list[VideoRun]]:
        """Run every recording (objects with ``path`` and ``events``, such as
        :class:`rsanet.data.UntrimmedVideo`) and build the report (see :meth:`report`)."""
        runs = []
        for number, video in enumerate(videos, start=1):
            runs.append(self.run_video(video.path, video.events))
            if progress is not None:
                progress(number, len(videos), runs[-1])
        report = self.report(
            runs,
            tolerance=tolerance,
            target_fa_per_hour=target_fa_per_hour,
            split=split,
            min_durations=min_durations,
        )
        return report, runs

    # -- scoring ---------------------------------------------------------------------------

    def report(
        self,
        runs: Sequence[VideoRun],
        *,
        tolerance: float,
        target_fa_per_hour: float | None = None,
        split: str = "even",
        min_durations: Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """The report (a JSON-able dict): settings, per-video lines, failures, event-level
        metrics of every counted class (:meth:`counted_classes`), frame-level AUC/AP of the
        evaluated classes, speed, and the threshold sweep (:meth:`sweep`) when
        ``target_fa_per_hour`` is given (its budget split by ``split``, the minimum
        durations picked from ``min_durations`` if given)."""
        good = [run for run in runs if run.error is None]
        index = {c: i for i, c in enumerate(self.predictor.classes)}
        # every evaluated class counts, ruled or not: an event of a class that has no rule is a
        # missed event, not one left out of the recall
        counted = self.counted_classes()
        unknown = sorted(
            {e.label for run in good for e in run.events if e.label not in index}
            - set(self.classes)
        )
        per_class, overall = em.event_counts(
            [em.VideoEvents(run.events, run.alerts, run.duration_s) for run in good],
            counted,
            tolerance,
        )
        video_lines = []
        for run in runs:
            line: dict[str, Any] = {"path": run.path, "error": run.error}
            if run.error is None:
                events = [e for e in run.events if e.label in counted]
                alerts = [a for a in run.alerts if a.label in counted]
                matching = em.match_alerts(events, alerts, tolerance)
                line.update(
                    duration_s=round(run.duration_s, 3),
                    frames=len(run.frame_times),
                    windows=len(run.ends),
                    events=[e.to_dict() if hasattr(e, "to_dict") else vars(e) for e in run.events],
                    alerts=[
                        {
                            "label": a.label,
                            "time": round(a.time, 3),
                            "score": round(a.score, 6),
                            "outcome": _outcome(i, matching),
                        }
                        for i, a in enumerate(alerts)
                    ],
                    detected=len(matching.pairs),
                    missed=len(matching.missed),
                    false_alarms=len(matching.false_alarms),
                    wall_s=round(run.wall_s, 3),
                    realtime_factor=_rate(run.duration_s, run.wall_s),
                    decode_passes=run.decode_passes,
                )
            video_lines.append(line)
        video_s = sum(run.duration_s for run in good)
        wall_s = sum(run.wall_s for run in runs)
        report: dict[str, Any] = {
            "settings": {
                "window_s": self.window,
                "stride_s": self.stride,
                "smoothing": self.predictor.smoothing,
                "num_frames": self.predictor.num_frames,
                "size": self.predictor.size,
                "tolerance_s": tolerance,
                "classes": list(self.classes),
                "rules": [rule.__dict__.copy() for rule in self.rules],
            },
            "videos": video_lines,
            "failures": [{"path": run.path, "error": run.error} for run in runs if run.error],
            "unknown_labels": unknown,
            "event": {
                "classes": {label: counts.to_dict() for label, counts in per_class.items()},
                "overall": overall.to_dict(),
            },
            "frame": self.frame_metrics(good),
            "speed": {
                "video_s": round(video_s, 3),
                "wall_s": round(wall_s, 3),
                "realtime_factor": _rate(video_s, wall_s),
                "decode_passes_per_video": (
                    sum(run.decode_passes for run in runs) / len(runs) if runs else None
                ),
            },
            "sweep": None,
        }
        if target_fa_per_hour is not None:
            report["sweep"] = self.sweep(
                good,
                target_fa_per_hour,
                tolerance=tolerance,
                split=split,
                min_durations=min_durations,
            )
        return report

    def frame_metrics(self, runs: Sequence[VideoRun]) -> dict[str, Any]:
        """Frame-level ROC-AUC and AP per evaluated class (one-vs-rest) and overall (any
        event against the maximum score over the evaluated classes), all videos pooled."""
        pooled = self.frame_arrays(runs)
        if pooled is None:
            return {"classes": {}, "overall": None, "frames": 0}
        scores, truth_any, truth = pooled
        classes = {}
        for label in self.classes:
            y, s = truth[label], scores[:, self.predictor.classes.index(label)]
            classes[label] = _frame_entry(y, s)
        overall = _frame_entry(truth_any, self.anomaly_score(scores))
        return {"classes": classes, "overall": overall, "frames": int(len(truth_any))}

    def anomaly_score(self, scores: np.ndarray) -> np.ndarray:
        """The overall anomaly score of frames (F, K): max over the evaluated classes."""
        columns = [self.predictor.classes.index(c) for c in self.classes]
        return scores[:, columns].max(axis=1)

    def frame_arrays(
        self, runs: Sequence[VideoRun]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]] | None:
        """Pooled frame scores (F, K), any-event truth (F,) and per-class truth."""
        parts = [
            (run, em.frame_scores(run.frame_times, run.starts, run.ends, run.score_matrix))
            for run in runs
            if run.frame_times and run.ends
        ]
        if not parts:
            return None
        scores = np.concatenate([s for _, s in parts])
        known = set(self.classes)
        truth_any = np.concatenate(
            [
                em.frame_truth(r.frame_times, [e for e in r.events if e.label in known])
                for r, _ in parts
            ]
        )
        truth = {
            label: np.concatenate(
                [em.frame_truth(r.frame_times, r.events, label) for r, _ in parts]
            )
            for label in self.classes
        }
        return scores, truth_any, truth

    def counted_classes(self) -> list[str]:
        """The classes whose events and alerts are scored: the evaluated classes (the model's,
        less normal), then those of rules outside them."""
        return list(dict.fromkeys([*self.classes, *(rule.label for rule in self.rules)]))

    def calibration_classes(self, recordings: Sequence[Any]) -> list[str]:
        """The rules' classes (in their order) with at least one event in ``recordings``
        (objects with ``events``): those the threshold sweep gives a rule. ValueError when
        there is none, as a sweep would then have nothing to calibrate."""
        labels = list(dict.fromkeys(rule.label for rule in self.rules))
        seen = {event.label for recording in recordings for event in recording.events}
        found = [label for label in labels if label in seen]
        if not found:
            raise ValueError(
                f"the calibration recordings hold no events (of {', '.join(labels)}): "
                "no alert threshold can be calibrated on them"
            )
        return found

    def sweep(
        self,
        runs: Sequence[VideoRun],
        target_fa_per_hour: float,
        *,
        tolerance: float,
        split: str = "even",
        min_durations: Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """Thresholds for at most ``target_fa_per_hour`` false alarms per hour of event-free
        time from all the rules together, and the rules document with them. Only the K
        classes with an event in ``runs`` get a rule (a class without one has no recall to
        calibrate on, and its threshold would only fire elsewhere); their false alarms are
        counted over the time free of all K classes' events, so that they add up to the
        overall rate. Each rule keeps its min_duration and cooldown. The budget is split:

        * ``even``: X / K for each rule, which gets the lowest threshold within its share;
        * ``recall``: the whole false alarms the budget allows on these recordings go where
          they detect the most events (:func:`~rsanet.inference.event_metrics.allot_false_alarms`).

        With ``min_durations``, each rule's minimum duration is picked from them too (a rule
        that must hold its score for a second or two can often use a lower threshold): the
        even split keeps, per class, the one whose threshold detects the most events (ties:
        the shortest); the recall split's knapsack chooses among all (threshold, minimum
        duration) points. Without it, each rule keeps its own.

        A ``top_class`` rule is replayed on its class's scores set to 0 wherever another
        calibrated class scores higher (:func:`~rsanet.inference.event_metrics.top_class_scores`),
        as the alert engine fires it with the written rules. ValueError when no class has an
        event."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        calibrated = self.calibration_classes(runs)
        rule_of = {rule.label: rule for rule in self.rules if rule.label in calibrated}
        column = {label: self.predictor.classes.index(label) for label in rule_of}
        top_class = [label for label, rule in rule_of.items() if rule.top_class]
        plain = [run.score_matrix for run in runs]
        # a top_class rule of the written file competes with the written rules' classes
        gated = [em.top_class_scores(m, list(column.values())) for m in plain] if top_class else []
        series_of = {
            label: [
                em.ScoreSeries(
                    run.ends,
                    (gated if label in top_class else plain)[number][:, column[label]],
                    run.events,
                    run.duration_s,
                )
                for number, run in enumerate(runs)
            ]
            for label in rule_of
        }
        share = target_fa_per_hour / len(calibrated)
        # the rule settings each class is swept with: one per minimum duration tried
        settings = {
            label: [
                {"min_duration": duration, "cooldown": rule.cooldown, "tolerance": tolerance}
                for duration in ([rule.min_duration] if min_durations is None else min_durations)
            ]
            for label, rule in rule_of.items()
        }
        if split == "even":
            results = {
                label: max(
                    (
                        em.sweep_threshold(
                            label,
                            series_of[label],
                            target_fa_per_hour=share,
                            event_free_labels=calibrated,
                            **setting,
                        )
                        for setting in settings[label]
                    ),
                    key=lambda r: (r.achieved, r.recall or 0.0, -r.min_duration),
                )
                for label in rule_of
            }
        else:
            results = self._allot(series_of, settings, target_fa_per_hour, tolerance, calibrated)
        thresholds = {
            label: (
                rule.threshold if results[label].threshold is None else results[label].threshold,
                results[label].min_duration,
                rule.cooldown,
            )
            for label, rule in rule_of.items()
        }
        overall = em.evaluate_rules(series_of, thresholds, tolerance=tolerance)[1].to_dict()
        rate = overall["fa_per_hour"]
        overall["achieved"] = rate is not None and rate <= target_fa_per_hour + 1e-9
        return {
            "target_fa_per_hour": target_fa_per_hour,
            "split": split,
            "min_durations": None if min_durations is None else list(min_durations),
            "per_class_fa_per_hour": share if split == "even" else None,
            "classes": {label: result.to_dict() for label, result in results.items()},
            "without_rule": {
                label: NO_EVENT
                for label in dict.fromkeys(rule.label for rule in self.rules)
                if label not in calibrated
            },
            "overall": overall,
            "rules": em.rules_document(thresholds, top_class),
        }

    @staticmethod
    def _allot(series_of, settings, target_fa_per_hour, tolerance, calibrated) -> dict:
        """The ``recall`` split of :meth:`sweep`: each class's threshold curves (one per
        rule setting in ``settings[label]``) down to the whole budget, then the knapsack over
        them. ``target_fa_per_hour`` of a class is the share it was given (its false alarms
        per hour)."""
        any_series = next(iter(series_of.values()))
        event_free_s = em.shared_event_free_seconds(any_series, calibrated, tolerance)
        hours = event_free_s / 3600.0
        budget = math.floor(target_fa_per_hour * hours + 1e-9)
        curves = {
            label: [
                point
                for setting in settings[label]
                for point in em.threshold_curve(
                    label, series_of[label], max_false_alarms=budget, **setting
                )
            ]
            for label in settings
        }
        picks = em.allot_false_alarms(curves, budget)
        within = sum(point.false_alarms for point in picks.values()) <= budget
        results = {}
        for label in settings:
            point = picks[label]
            counts = point.counts
            counts.event_free_s = event_free_s
            results[label] = em.SweepResult(
                label,
                point.threshold if hours else None,
                counts.fa_per_hour,
                counts.recall,
                counts.false_alarms,
                counts.alerts,
                len(curves[label]),
                within and hours > 0,
                counts.fa_per_hour if hours else target_fa_per_hour,
                point.min_duration,
            )
        return results


def _outcome(alert: int, matching: em.Matching) -> str:
    if any(a == alert for _, a in matching.pairs):
        return "hit"
    return "duplicate" if alert in matching.duplicates else "false_alarm"


def _rate(video_s: float, wall_s: float) -> float | None:
    return round(video_s / wall_s, 3) if wall_s > 0 else None


def _frame_entry(y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    return {
        "auc": em.roc_auc(y, s),
        "ap": em.average_precision(y, s),
        "positive_frames": int(y.sum()),
        "frames": int(len(y)),
    }


# -- writing ---------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{100 * value:.1f} %" if percent else f"{value:.{digits}f}"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: settings, a per-class table with the overall row, the sweep
    and the failures."""
    settings = report["settings"]
    lines = [
        "# Event-level evaluation",
        "",
        f"{len(report['videos']) - len(report['failures'])} of {len(report['videos'])} "
        f"recordings evaluated ({_duration(report['speed']['video_s'])} of video), "
        f"window {settings['window_s']:g} s, stride {settings['stride_s']:g} s, smoothing "
        f"{settings['smoothing']}, tolerance {settings['tolerance_s']:g} s; real-time factor "
        f"{_fmt(report['speed']['realtime_factor'], 1)}.",
        "",
        "| class | events | detected | recall | alerts | false alarms (during other events) "
        "| precision | F1 | FA / h | FA / h in event-free time | latency median (s) "
        "| latency p90 (s) | frame AUC | frame AP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    frame = report["frame"]
    rows = list(report["event"]["classes"].items()) + [("**overall**", report["event"]["overall"])]
    for label, c in rows:
        f = frame["overall"] if label == "**overall**" else frame["classes"].get(label)
        f = f or {}
        lines.append(
            f"| {label} | {c['events']} | {c['detected']} | {_fmt(c['recall'], percent=True)} "
            f"| {c['alerts']} | {c['false_alarms']} ({c['false_alarms_in_events']}) "
            f"| {_fmt(c['precision'], percent=True)} | {_fmt(c['f1'])} "
            f"| {_fmt(c['fa_per_hour'], 2)} | {_fmt(c['quiet_fa_per_hour'], 2)} "
            f"| {_fmt(c['latency_median_s'], 2)} | {_fmt(c['latency_p90_s'], 2)} "
            f"| {_fmt(f.get('auc'))} | {_fmt(f.get('ap'))} |"
        )
    sweep = report.get("sweep")
    if sweep:
        target, overall = sweep["target_fa_per_hour"], sweep["overall"]
        count = len(sweep["classes"])
        rules = (
            f"{count} rule{'s' if count != 1 else ''} "
            "(one per class with an event in these recordings)"
        )
        if sweep.get("split", "even") == "even":
            shared = (
                f"shared evenly by the {rules}: at most {sweep['per_class_fa_per_hour']:g} "
                "each, counted over the time free of all their events"
            )
        else:
            shared = (
                f"spent where it detects the most events: the {rules} get the whole false "
                "alarms it allows here, counted over the time free of all their events"
            )
        lines += [
            "",
            f"## Thresholds for at most {target:g} false alarms per hour, all rules together",
            "",
            f"The budget of {target:g} false alarms per hour of event-free time is {shared}. "
            "Together they give "
            f"{_fmt(overall['fa_per_hour'], 2)} false alarms per hour here "
            f"({overall['false_alarms']} in {_duration(overall['event_free_hours'] * 3600)} "
            f"of event-free time; {'met' if overall['achieved'] else 'not met'}).",
            "",
            "| class | threshold | min duration (s) | FA / h | recall | met |",
            "|---|---|---|---|---|---|",
        ]
        for label, result in sweep["classes"].items():
            lines.append(
                f"| {label} | {_fmt(result['threshold'], 4)} "
                f"| {_fmt(result.get('min_duration'), 1)} | {_fmt(result['fa_per_hour'], 2)} "
                f"| {_fmt(result['recall'], percent=True)} | "
                f"{'yes' if result['achieved'] else 'no'} |"
            )
        for label, reason in sweep["without_rule"].items():
            lines.append(f"| {label} | no rule: {reason} | | | | |")
    if report["failures"]:
        lines += ["", "## Failures", ""]
        lines += [f"- `{f['path']}`: {f['error']}" for f in report["failures"]]
    if report["unknown_labels"]:
        lines += [
            "",
            "Events of classes the model does not have (left out): "
            + ", ".join(report["unknown_labels"]),
        ]
    return "\n".join(lines) + "\n"


def _png(figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def class_colours(classes: Sequence[str]) -> dict[str, Any]:
    """A distinct colour per class: matplotlib's ten default colours, then (for more
    classes, where ten would repeat) tab20's ten dark hues followed by their light ones."""
    if len(classes) <= 10:
        return {label: f"C{i}" for i, label in enumerate(classes)}
    from matplotlib import colormaps

    palette = colormaps["tab20"]
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return {label: palette(order[i % 20]) for i, label in enumerate(classes)}


def timeline_png(run: VideoRun, evaluation: EventEvaluation, tolerance: float) -> bytes:
    """Score curves of the evaluated classes over the window ends, events shaded, alerts
    marked (a triangle on a hit, a cross on a false alarm, a dot on a duplicate)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.2), layout="constrained")
    ax = figure.subplots()
    colours = class_colours(evaluation.classes)
    scores = run.score_matrix
    for label in evaluation.classes:
        ax.plot(
            run.ends,
            scores[:, evaluation.predictor.classes.index(label)],
            color=colours[label],
            lw=1.2,
            label=label,
        )
    for event in run.events:
        ax.axvspan(event.start_s, event.end_s, color=colours.get(event.label, "grey"), alpha=0.18)
    counted = set(evaluation.counted_classes())
    events = [e for e in run.events if e.label in counted]
    alerts = [a for a in run.alerts if a.label in counted]
    matching = em.match_alerts(events, alerts, tolerance)
    markers = {"hit": "v", "false_alarm": "x", "duplicate": "."}
    for i, alert in enumerate(alerts):
        outcome = _outcome(i, matching)
        ax.plot(
            [alert.time],
            [1.04],
            marker=markers[outcome],
            color=colours.get(alert.label, "black"),
            ms=8,
            clip_on=False,
        )
        ax.axvline(alert.time, color=colours.get(alert.label, "black"), lw=0.6, ls=":")
    for rule in evaluation.rules:
        ax.axhline(rule.threshold, color=colours.get(rule.label, "black"), lw=0.6, ls="--")
    ax.set_xlim(0, max(run.duration_s, 1e-3))
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("time (s)")
    rescored = getattr(evaluation.predictor, "rescorer", None) is not None
    ax.set_ylabel("rescored probability" if rescored else "smoothed score")
    ax.set_title(Path(run.path).name, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", ncols=min(4, len(evaluation.classes)))
    return _png(figure)


def pr_curve_png(runs: Sequence[VideoRun], evaluation: EventEvaluation) -> bytes | None:
    """Frame-level precision-recall curves: overall (bold) and per class; None when no
    frame is positive."""
    from matplotlib.figure import Figure

    pooled = evaluation.frame_arrays(runs)
    if pooled is None or not pooled[1].any():
        return None
    scores, truth_any, truth = pooled
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.subplots()
    colours = class_colours(evaluation.classes)
    curves = [("overall (max)", truth_any, evaluation.anomaly_score(scores), 2.2)]
    for label in evaluation.classes:
        curves.append(
            (label, truth[label], scores[:, evaluation.predictor.classes.index(label)], 1.0)
        )
    for i, (name, y, s, width) in enumerate(curves):
        if not y.any():
            continue
        precision, recall, _ = em.precision_recall_curve(y, s)
        ap = em.average_precision(y, s)
        ax.step(
            np.r_[0.0, recall],
            np.r_[precision[0], precision],
            where="pre",  # precision P_n on (R_{n-1}, R_n]
            lw=width,
            color="black" if i == 0 else colours[name],
            label=f"{name} (AP {ap:.3f})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (frames)")
    ax.set_ylabel("precision (frames)")
    ax.legend(fontsize=7, loc="lower left")
    return _png(figure)


def window_scores_npz(
    runs: Sequence[VideoRun], classes: Sequence[str], settings: StreamSettings | None = None
) -> bytes:
    """The smoothed score of every window of ``runs`` as one compressed ``.npz``, so that
    they can be analysed again without running the network: ``classes`` (K,), ``videos``
    (V,) the recordings' paths, ``durations`` (V,), then one row per window: ``video`` (W,)
    its recording's index, ``starts`` and ``ends`` (W,) seconds, ``scores`` (W, K) float32;
    and one per event: ``event_video``, ``event_label``, ``event_span`` (E, 2) seconds. A
    recording that failed has no window. With ``settings``, also ``window_s``,
    ``stride_s`` and ``smoothing``: how the windows were scored."""
    rows = [(number, run) for number, run in enumerate(runs) if run.error is None]
    events = [(number, e) for number, run in enumerate(runs) for e in run.events]
    width = len(classes)
    buffer = io.BytesIO()
    stream = {} if settings is None else {k: np.array(v) for k, v in asdict(settings).items()}
    np.savez_compressed(
        buffer,
        **stream,
        classes=np.array(list(classes), dtype=str),
        videos=np.array([run.path for run in runs], dtype=str),
        durations=np.array([run.duration_s for run in runs], dtype=np.float64),
        video=np.array([n for n, run in rows for _ in run.ends], dtype=np.int32),
        starts=np.array([s for _, run in rows for s in run.starts], dtype=np.float64),
        ends=np.array([e for _, run in rows for e in run.ends], dtype=np.float64),
        scores=np.array([row for _, run in rows for row in run.scores], dtype=np.float32).reshape(
            -1, width
        ),
        event_video=np.array([n for n, _ in events], dtype=np.int32),
        event_label=np.array([e.label for _, e in events], dtype=str),
        event_span=np.array([(e.start_s, e.end_s) for _, e in events], np.float64).reshape(-1, 2),
    )
    return buffer.getvalue()


@dataclass(frozen=True)
class StreamSettings:
    """How a predictor scored its windows: ``window_s`` seconds every ``stride_s``,
    smoothed over the last ``smoothing``."""

    window_s: float
    stride_s: float
    smoothing: int


@dataclass
class WindowScores:
    """A ``window_scores.npz`` read back: the classes, one :class:`VideoRun` per
    recording (no alerts) and the settings, when the file records them."""

    classes: list[str]
    runs: list[VideoRun]
    settings: StreamSettings | None


def read_window_scores(path: str | Path) -> WindowScores:
    """The file :func:`window_scores_npz` wrote; ValueError naming the file and the
    missing array when it is not one."""
    from rsanet.data.events import EventInterval

    try:
        with np.load(path) as archive:  # each array read once (a lookup decompresses)
            data = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{path}: not a window_scores.npz of rsanet eval-events ({error})"
        ) from None
    needed = ("classes", "videos", "durations", "video", "starts", "ends", "scores")
    missing = [
        name for name in needed + ("event_video", "event_label", "event_span") if name not in data
    ]
    if missing:
        raise ValueError(
            f"{path}: not a window_scores.npz of rsanet eval-events (no {', '.join(missing)})"
        )
    runs = []
    for number, name in enumerate(data["videos"]):
        rows = data["video"] == number
        mine = data["event_video"] == number
        events = tuple(
            EventInterval(str(label), float(start), float(end))
            for label, (start, end) in zip(
                data["event_label"][mine], data["event_span"][mine], strict=True
            )
        )
        runs.append(
            VideoRun(
                str(name),
                events,
                starts=[float(v) for v in data["starts"][rows]],
                ends=[float(v) for v in data["ends"][rows]],
                scores=list(data["scores"][rows].astype(np.float64)),
                duration_s=float(data["durations"][number]),
            )
        )
    settings = None
    if all(key in data for key in ("window_s", "stride_s", "smoothing")):
        settings = StreamSettings(
            float(data["window_s"]), float(data["stride_s"]), int(data["smoothing"])
        )
    return WindowScores([str(c) for c in data["classes"]], runs, settings)


def _safe_stem(path: str) -> str:
    stem = Path(path).stem
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:80] or "video"


def write_outputs(
    report: dict[str, Any],
    runs: Sequence[VideoRun],
    evaluation: EventEvaluation,
    out: str | Path,
    *,
    figures: bool = True,
    rules_out: str | Path | None = None,
) -> dict[str, str]:
    """Write ``events.json``, ``events.md``, ``window_scores.npz``
    (:func:`window_scores_npz`), the figures (``timelines/NNN_<name>.png`` and
    ``pr_curve.png``) and, after a sweep, the rules file, each atomically; the paths are
    also recorded in ``report["files"]``."""
    import yaml

    from rsanet.atomic import atomic_write, atomic_write_text

    out = Path(out)
    files: dict[str, str] = {}
    if figures:
        tolerance = report["settings"]["tolerance_s"]
        for number, run in enumerate(runs):
            line = report["videos"][number]
            if run.error is not None:
                continue
            path = out / "timelines" / f"{number:03d}_{_safe_stem(run.path)}.png"
            data = timeline_png(run, evaluation, tolerance)
            atomic_write(path, lambda handle, data=data: handle.write(data))
            line["figure"] = str(path)
        data = pr_curve_png([r for r in runs if r.error is None], evaluation)
        if data is not None:
            files["pr_curve"] = str(
                atomic_write(out / "pr_curve.png", lambda handle: handle.write(data))
            )
    if report.get("sweep"):
        target = Path(rules_out) if rules_out else out / "rules.yaml"
        document = report["sweep"]["rules"]
        if target.suffix.lower() == ".json":
            text = json.dumps(document, indent=2) + "\n"
        else:
            text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        files["rules"] = str(atomic_write_text(target, text))
    settings = StreamSettings(evaluation.window, evaluation.stride, evaluation.predictor.smoothing)
    data = window_scores_npz(runs, evaluation.predictor.classes, settings)
    files["window_scores"] = str(
        atomic_write(out / "window_scores.npz", lambda handle: handle.write(data))
    )
    files["json"] = str(out / "events.json")
    files["markdown"] = str(out / "events.md")
    report["files"] = files
    atomic_write_text(out / "events.md", markdown(report))
    atomic_write_text(out / "events.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    return files
