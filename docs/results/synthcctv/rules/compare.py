"""Alert rules compared on the same window scores: plain, ``top_class``, swept minimum
durations, and both, each calibrated for 2 false alarms per hour (``--budget-split
recall``) on the 4.4 calibration hours and replayed on the held-out hour, per seed.

Two steps, so that the comparison runs from committed records:

    python compare.py scores CHECKPOINT ANNOTATIONS OUT.npz [WINDOW_S [STRIDE_S [SMOOTHING]]]
    python compare.py report seed0 seed1 ... > compare.md     # every rule set, all seeds

``scores`` runs the network over every recording with ``rsanet eval-events``' code (2 s
windows, 1 s stride and smoothing 3 unless given) and stores each window's smoothed scores
with the recording's events. Scores written every 0.5 s without smoothing (``2 0.5 1``)
hold every coarser view: :func:`resampled` gives the windows of a 1 s stride, smoothed
over any number of them, without running the network again.
``report`` reads ``SEED/calib.npz`` and ``SEED/test.npz`` under this folder, calibrates
every rule set with :meth:`EventEvaluation.sweep` and replays the written rules with the
:class:`AlertEngine`, as ``rsanet predict --rules`` fires them. ``report --json`` prints
the raw numbers instead of the page.

Two negative controls must come out "does not hold":

* ``random class``: every window keeps the score of one class with a rule drawn at random
  (the others set to 0) instead of the top one. If ``top_class`` gained only because it
  silences most classes in most windows, this would gain too.
* ``shuffled``: each recording's windows in a random order, then minimum durations swept
  against the plain rules on the same shuffled scores. Persistence means nothing there, so
  minimum durations must not gain.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from rsanet.inference import AlertEngine, WindowResult
from rsanet.inference.alerts import parse_rules
from rsanet.inference.event_eval import EventEvaluation, VideoRun, read_window_scores
from rsanet.study.stats import above_zero, mean_ci, verdict

HERE = Path(__file__).parent
WINDOW_S, STRIDE_S, SMOOTHING, TOLERANCE_S, TARGET = 2.0, 1.0, 3, 2.0, 2.0
MIN_DURATIONS = [0.0, 1.0, 2.0, 3.0]
RULE_SETS = ("plain", "top_class", "min_durations", "both")


def scores(
    checkpoint: str,
    annotations: str,
    out: str,
    window_s: str = str(WINDOW_S),
    stride_s: str = str(STRIDE_S),
    smoothing: str = str(SMOOTHING),
) -> None:
    """Each recording's window ends, starts and smoothed scores, with its events and the
    window settings: the ``window_scores.npz`` that ``rsanet eval-events`` writes, with
    the recordings' paths under ``annotations`` (the file names no folder of the machine
    that made it)."""
    from rsanet.data import read_untrimmed
    from rsanet.inference import Predictor
    from rsanet.inference.event_eval import StreamSettings, window_scores_npz

    data = read_untrimmed("aihub-cctv", annotations, quiet=True)
    predictor = Predictor.from_checkpoint(checkpoint, smoothing=int(smoothing))
    evaluation = EventEvaluation(predictor, window=float(window_s), stride=float(stride_s))
    runs = []
    for video in data.videos:
        run = evaluation.run_video(video.path, video.events)
        if run.error is not None:
            sys.exit(f"{video.path}: {run.error}")
        runs.append(replace(run, path=str(Path(video.path).relative_to(annotations))))
    settings = StreamSettings(evaluation.window, evaluation.stride, predictor.smoothing)
    Path(out).write_bytes(window_scores_npz(runs, predictor.classes, settings))


def load(path: Path) -> tuple[list[str], list[VideoRun]]:
    """The classes and one :class:`VideoRun` per recording of a ``scores`` file
    (:func:`~rsanet.inference.event_eval.read_window_scores`)."""
    scores = read_window_scores(path)
    return scores.classes, scores.runs


def resampled(runs: list[VideoRun], stride_s: float, smoothing: int) -> list[VideoRun]:
    """Runs scored without smoothing, as ``scores`` with ``stride_s`` and ``smoothing``
    would have written them: the windows starting ``stride_s`` apart from the first (a
    multiple of the runs' own stride), each score the mean of the last ``smoothing`` of
    them, as :class:`~rsanet.inference.smoothing.ScoreSmoother` averages them."""
    out = []
    for run in runs:
        first = run.starts[0] if run.starts else 0.0
        keep = [i for i, start in enumerate(run.starts) if _multiple(start - first, stride_s)]
        raw = run.score_matrix[keep]
        smoothed = [raw[max(0, i - smoothing + 1) : i + 1].mean(axis=0) for i in range(len(raw))]
        out.append(
            replace(
                run,
                starts=[run.starts[i] for i in keep],
                ends=[run.ends[i] for i in keep],
                scores=[row.astype(np.float32).astype(np.float64) for row in smoothed],
                alerts=[],
            )
        )
    return out


def _multiple(seconds: float, step: float) -> bool:
    return abs(seconds / step - round(seconds / step)) < 1e-6


def gated(runs: list[VideoRun], columns: list[int], seed: int, shuffle: bool) -> list[VideoRun]:
    """The controls' scores: each window keeps one of ``columns`` drawn at random (or, with
    ``shuffle``, each recording's windows in a random order)."""
    rng = np.random.default_rng(seed)
    out = []
    for run in runs:
        matrix = run.score_matrix
        if shuffle:
            matrix = matrix[rng.permutation(len(matrix))]
        else:
            keep = rng.choice(columns, size=len(matrix))
            for column in columns:
                matrix[keep != column, column] = 0.0
        out.append(replace(run, scores=list(matrix), alerts=[]))
    return out


def replay(evaluation: EventEvaluation, runs: list[VideoRun]) -> dict:
    """The report of ``evaluation.rules`` fired by the alert engine over ``runs``."""
    for run in runs:
        engine = AlertEngine(evaluation.rules, evaluation.predictor.classes)
        windows = zip(run.starts, run.ends, run.scores, strict=True)
        run.alerts = [
            alert
            for i, (start, end, row) in enumerate(windows)
            for alert in engine.update(WindowResult("", i, start, end, [], row, row, 0.0, 0.0, 0))
        ]
    return evaluation.report(runs, tolerance=TOLERANCE_S)


def rule_set(
    classes, calibration, test, name: str, stride_s: float = STRIDE_S, smoothing: int = SMOOTHING
) -> dict:
    """Calibrate one rule set, replay it on the test hour: the counts the page shows
    (``stride_s`` and ``smoothing``: how the scores were made, for the report's settings)."""
    predictor = SimpleNamespace(classes=classes, smoothing=smoothing, num_frames=16, size=64)
    evaluation = EventEvaluation(predictor, window=WINDOW_S, stride=stride_s)
    if name in ("top_class", "both"):
        evaluation.rules = [replace(rule, top_class=True) for rule in evaluation.rules]
    durations = MIN_DURATIONS if name in ("min_durations", "both") else None
    sweep = evaluation.sweep(
        calibration, TARGET, tolerance=TOLERANCE_S, split="recall", min_durations=durations
    )
    evaluation.rules = parse_rules(sweep["rules"])
    test_report = replay(evaluation, [replace(run, alerts=[]) for run in test])
    overall = test_report["event"]["overall"]
    return {
        "calibration_detected": sweep["overall"]["detected"],
        "calibration_events": sweep["overall"]["events"],
        "calibration_false_alarms": sweep["overall"]["false_alarms"],
        "test_detected": overall["detected"],
        "test_events": overall["events"],
        "test_fa_per_hour": overall["fa_per_hour"],
        "test_false_alarms_in_events": overall["false_alarms_in_events"],
        "test_quiet_fa_per_hour": overall["quiet_fa_per_hour"],
        "test_latency_median_s": overall["latency_median_s"],
        "test_per_class": {
            label: counts["detected"]
            for label, counts in test_report["event"]["classes"].items()
            if counts["events"]
        },
        "rules": sweep["rules"]["rules"],
    }


def seed_results(folder: Path) -> dict:
    classes, calibration = load(folder / "calib.npz")
    _, test = load(folder / "test.npz")
    results = {name: rule_set(classes, calibration, test, name) for name in RULE_SETS}
    columns = [classes.index(c) for c in classes if c != "normal"]
    results["random class"] = rule_set(
        classes, gated(calibration, columns, 0, False), gated(test, columns, 1, False), "plain"
    )
    shuffled = gated(calibration, columns, 2, True), gated(test, columns, 3, True)
    results["shuffled"] = rule_set(classes, *shuffled, "plain")
    results["shuffled + min_durations"] = rule_set(classes, *shuffled, "min_durations")
    return results


def page(results: dict[str, dict]) -> str:
    seeds = list(results)
    names = list(results[seeds[0]])
    lines = [
        f"# Alert rules on the same scores, {len(seeds)} seeds",
        "",
        "Generated by `python docs/results/synthcctv/rules/compare.py report "
        f"{' '.join(seeds)}` from the committed window scores. Mean ± 95 % CI over seeds.",
        "",
        "| rules | calibration: detected of "
        f"{results[seeds[0]]['plain']['calibration_events']} | test: detected of "
        f"{results[seeds[0]]['plain']['test_events']} | test FA / h | test latency median (s) |",
        "|---|---|---|---|---|",
    ]

    def latency(column: list[dict]) -> str:
        values = [c["test_latency_median_s"] for c in column]
        return "-" if None in values else mean_ci(values).format(1)

    for name in names:
        column = [results[s][name] for s in seeds]
        lines.append(
            f"| {name} | {mean_ci([c['calibration_detected'] for c in column]).format(1)} "
            f"| {mean_ci([c['test_detected'] for c in column]).format(1)} "
            f"| {mean_ci([c['test_fa_per_hour'] for c in column]).format(2)} "
            f"| {latency(column)} |"
        )
    lines += [
        "",
        "Paired gains over the plain rules (the same seed's scores), one-sided one-sample t "
        "(the sign test where every seed gains the same). "
        "The calibration gains are in-sample: each rule set is the best the sweep finds on "
        "those same hours, and with minimum durations the plain rules are among its choices, "
        "so that gain cannot be negative (the shuffled control gains there too). The test "
        "hour decides.",
        "",
        "| claim | calibration gain | | test gain | |",
        "|---|---|---|---|---|",
    ]
    pairs = [(name, "plain") for name in names if name not in ("plain", "shuffled")]
    pairs[-1] = ("shuffled + min_durations", "shuffled")
    for name, base in pairs:
        cells = []
        for key in ("calibration_detected", "test_detected"):
            gains = [results[s][name][key] - results[s][base][key] for s in seeds]
            test = above_zero(gains)
            cells += [mean_ci(gains).format(1), f"{test}: {verdict(test)}"]
        lines.append(f"| {name} > {base} | {' | '.join(cells)} |")
    lines += ["", "Test events detected per class (seeds in order):", ""]
    lines += per_class_table(results, names, "rules")
    return "\n".join(lines) + "\n"


def per_class_table(results: dict[str, dict], names: list[str], heading: str) -> list[str]:
    """The lines of a table of test events detected per class: a row per rule set in
    ``names``, each cell the seeds' counts in order."""
    seeds = list(results)
    classes = list(results[seeds[0]][names[0]]["test_per_class"])
    lines = [f"| {heading} | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for name in names:
        per = [results[s][name]["test_per_class"] for s in seeds]
        lines.append(
            f"| {name} | " + " | ".join(", ".join(str(p[c]) for p in per) for c in classes) + " |"
        )
    return lines


def main(argv: list[str]) -> None:
    if argv[:1] == ["scores"]:
        scores(*argv[1:7])
        return
    if argv[:1] != ["report"]:
        sys.exit(__doc__)
    as_json = "--json" in argv
    seeds = [a for a in argv[1:] if a != "--json"]
    results = {seed: seed_results(HERE / seed) for seed in seeds}
    print(json.dumps(results, indent=1) if as_json else page(results), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
