"""How far alert thresholds can take a network's scores: every rule picked on the held-out
hour itself, at several false-alarm budgets.

    python docs/results/synthcctv/ceiling.py compute      # ceiling/results.json, ~20 min
    python docs/results/synthcctv/ceiling.py page > docs/results/synthcctv/ceiling/ceiling.md
    python docs/results/synthcctv/ceiling.py compute "tsm_tiny budget, change"  # one source

Everywhere else the thresholds are picked on calibration recordings and replayed on the
held-out hour. Here they are picked on the held-out hour (``EventEvaluation.sweep``,
``--budget-split recall``, plain rules, tolerance 2 s): in-sample, the most events any
choice of thresholds could detect there within each budget. What these rules miss, no
calibration can give: it is the network's scores that would have to change. The sources
are the committed test-hour scores of :data:`SOURCES`, at a 1 s stride with smoothing 3
(the rescorer's output at its own 0.5 s without smoothing: a rescorer changes the scores,
so its ceiling is not bounded by its network's).

``compute`` sweeps every source, seed and budget (minutes: the larger budgets give the
allotment of false alarms many more thresholds to weigh) and writes the counts as
``ceiling/results.json``; ``page`` makes the page from that file alone. ``compute`` with
the beginnings of source names sweeps only those sources and keeps the others' counts from
the file (the sweep is deterministic: the whole ``compute`` writes the same counts).

The same sweep also runs on one rule for an event of any class (:func:`any_event`), at
the budgets nearest the targets: were the networks only naming events wrongly, that rule
would find them.

The control runs the same sweep on each source's windows in a random order within each
recording: the same scores at the wrong times, with thresholds just as free to fit them.
Each source's gain over its control (events at 2 false alarms per hour, paired over the
seeds, one-sided t) must hold; were it not to, in-sample picking alone would explain the
counts. The page also tests each change of :data:`PAIRS` against the same seeds without it,
at every budget: at the same false-alarm budget, does the change find more events?
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from rsanet.inference import event_metrics as em
from rsanet.inference.event_eval import NORMAL_NAMES, EventEvaluation
from rsanet.study.stats import above_zero, mean_ci, verdict

HERE = Path(__file__).parent
RESULTS = HERE / "ceiling" / "results.json"
_spec = importlib.util.spec_from_file_location("rules_compare", HERE / "rules" / "compare.py")
rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rules)

#: false alarms per hour the rules may raise on the held-out hour's event-free time
BUDGETS = (2.0, 10.0, 50.0, 200.0)
#: budgets of the any-event sweep, the two the targets are nearest: one rule, on the score
#: that something is happening, may raise at most this many false alarms per hour
ANY_EVENT_BUDGETS = (2.0, 10.0)
#: the one class of the any-event sweep
ANY_EVENT = "any event"
#: the recall the targets ask for
TARGET_RECALL = 0.9
#: how a source's stored scores are swept: as stored at a 1 s stride with smoothing 3,
#: viewed so from scores stored every 0.5 s without smoothing, or as stored every 0.5 s
#: without smoothing (the rescorer's output, which its rules read so)
AS_STORED, VIEWED_AT_1S, AS_STORED_05S = "as stored", "viewed at 1 s", "as stored, 0.5 s"
#: name -> (folders of the seeds' test.npz, how they are swept)
SOURCES = {
    "recipe (16 frames, 9 epochs, 240 scenes)": (
        [f"rules/seed{seed}" for seed in range(4)],
        AS_STORED,
    ),
    "tsm_tiny budget (20 epochs, 960 scenes)": (
        [f"budget/bf16e20seed{seed}" for seed in range(3)],
        VIEWED_AT_1S,
    ),
    "rescorer over the budget network": (
        [f"rescorer/seed{seed}" for seed in range(3)],
        AS_STORED_05S,
    ),
    "rsanet_tiny 5x3x3 (14 epochs, 960 scenes)": (
        [f"networks/rsanet_k3e14seed{seed}" for seed in range(2)],
        AS_STORED,
    ),
    "rsanet_tiny 5x3x3 within the 19.5 min budget (960 scenes)": (
        [f"networks/rsanet_k3budgetseed{seed}" for seed in range(3)],
        AS_STORED,
    ),
    "rsanet_tiny 5x3x3 budget, change from the 8 s before (960 scenes)": (
        [f"networks/rsanet_k3bgseed{seed}" for seed in range(3)],
        AS_STORED,
    ),
    "tsm_tiny long (36 epochs, 960 scenes; 2.7x the budget)": (
        [f"scale/x4e36seed{seed}" for seed in range(3)],
        AS_STORED,
    ),
    "rsanet_tiny 5x3x3 long (36 epochs, 960 scenes; 2.2-2.7x the budget)": (
        [f"networks/rsanet_k3e36seed{seed}" for seed in range(2)],
        AS_STORED,
    ),
    "tsm_tiny budget, change from the 8 s before (20 epochs, 960 scenes)": (
        [f"background/b8seed{seed}" for seed in range(2)],
        VIEWED_AT_1S,
    ),
}

#: (source, baseline): the same seeds trained with and without one change; the page tests
#: each pair's gain at every budget, paired over the seeds both have
PAIRS = [
    (
        "rsanet_tiny 5x3x3 budget, change from the 8 s before (960 scenes)",
        "rsanet_tiny 5x3x3 within the 19.5 min budget (960 scenes)",
    ),
    (
        "tsm_tiny budget, change from the 8 s before (20 epochs, 960 scenes)",
        "tsm_tiny budget (20 epochs, 960 scenes)",
    ),
]


def shuffled(runs: list, seed: int) -> list:
    """Each recording's windows in a random order (the control)."""
    return rules.gated(runs, [], seed, shuffle=True)


def any_event(classes: list[str], runs: list) -> list:
    """The runs as a detector of events of any class would see them: one score per window,
    1 minus the normal classes' (what the softmax gives all events together), and every
    event of that one class. An alert then counts for whatever event it falls in: what a
    network misses here, it does not see at all, rather than naming it wrongly."""
    normal = [i for i, name in enumerate(classes) if name in NORMAL_NAMES]
    out = []
    for run in runs:
        happening = 1.0 - run.score_matrix[:, normal].sum(axis=1)
        out.append(
            replace(
                run,
                scores=[np.array([1.0 - p, p]) for p in happening],
                events=tuple(replace(event, label=ANY_EVENT) for event in run.events),
            )
        )
    return out


def _swept(classes: list[str], runs: list, budget: float, stride_s: float, smoothing: int) -> dict:
    """The rules picked on ``runs`` for ``budget`` false alarms per hour (the sweep's report)."""
    evaluation = EventEvaluation(
        SimpleNamespace(classes=classes, smoothing=smoothing),
        window=rules.WINDOW_S,
        stride=stride_s,
    )
    return evaluation.sweep(runs, budget, tolerance=rules.TOLERANCE_S, split="recall")


def _counts(sweep: dict, per_class: dict) -> dict:
    """What the results file keeps of a sweep: its overall counts, with ``per_class``."""
    overall = sweep["overall"]
    return {
        "detected": overall["detected"],
        "events": overall["events"],
        "fa_per_hour": overall["fa_per_hour"],
        "per_class": per_class,
    }


def ceiling(classes: list[str], runs: list, budget: float, stride_s: float, smoothing: int) -> dict:
    """Events detected on ``runs`` by rules picked on them for ``budget`` false alarms per
    hour: the overall count, the false alarms per hour reached and each class's count."""
    sweep = _swept(classes, runs, budget, stride_s, smoothing)
    events = {}
    for run in runs:
        for event in run.events:
            events[event.label] = events.get(event.label, 0) + 1
    return _counts(
        sweep,
        {
            label: round((sweep["classes"].get(label, {}).get("recall") or 0.0) * count)
            for label, count in events.items()
        },
    )


def any_event_ceiling(
    classes: list[str], runs: list, budget: float, stride_s: float, smoothing: int
) -> dict:
    """:func:`ceiling` of one rule for an event of any class (:func:`any_event`); its
    ``per_class`` counts the events of each class that this one rule detects."""
    one = any_event(classes, runs)
    sweep = _swept(["normal", ANY_EVENT], one, budget, stride_s, smoothing)
    rule = sweep["rules"]["rules"][ANY_EVENT]
    timing = (rule["threshold"], rule["min_duration"], rule["cooldown"])
    per_class = {}
    for label in dict.fromkeys(e.label for run in runs for e in run.events):
        # the same alerts, matched against this class's events alone
        series = [
            em.ScoreSeries(
                as_one.ends,
                as_one.score_matrix[:, 1],
                tuple(
                    e
                    for e, own in zip(as_one.events, run.events, strict=True)
                    if own.label == label
                ),
                as_one.duration_s,
            )
            for as_one, run in zip(one, runs, strict=True)
        ]
        found = em.evaluate_rules(
            {ANY_EVENT: series}, {ANY_EVENT: timing}, tolerance=rules.TOLERANCE_S
        )
        per_class[label] = found[1].detected
    return _counts(sweep, per_class)


def seed_results(
    folder: str, number: int, how: str, budgets=BUDGETS, any_event_budgets=ANY_EVENT_BUDGETS
) -> dict:
    """One seed's ceilings at every budget (keys: the budget as text), of its scores and of
    its scores shuffled in time (``number``: the seed's place, which seeds the shuffle), with
    per-class rules and with one any-event rule (:func:`any_event`)."""
    classes, test = rules.load(HERE / folder / "test.npz")
    view = (0.5, 1) if how == AS_STORED_05S else (rules.STRIDE_S, rules.SMOOTHING)
    if how == VIEWED_AT_1S:
        test = rules.resampled(test, *view)
    control = shuffled(test, 500 + number)
    return {
        "classes": classes,
        "network": {f"{b:g}": ceiling(classes, test, b, *view) for b in budgets},
        "shuffled": {f"{b:g}": ceiling(classes, control, b, *view) for b in budgets},
        "any_event": {
            f"{b:g}": any_event_ceiling(classes, test, b, *view) for b in any_event_budgets
        },
        "any_event_shuffled": {
            f"{b:g}": any_event_ceiling(classes, control, b, *view) for b in any_event_budgets
        },
    }


def compute(only: list[str] | None = None, kept: dict | None = None) -> dict:
    """Every source's seeds (see :data:`SOURCES`), in that order; with ``only``, just the
    sources whose names start with one of those texts, the others taken from ``kept``."""
    if only and not any(name.startswith(tuple(only)) for name in SOURCES):
        raise SystemExit(f"no source's name starts with {' or '.join(map(repr, only))}")
    results = {}
    for name, (folders, how) in SOURCES.items():
        if only and not name.startswith(tuple(only)):
            if name not in (kept or {}):
                raise SystemExit(f"{RESULTS} has no counts of {name!r}: run compute alone")
            results[name] = kept[name]
        else:
            results[name] = [seed_results(f, number, how) for number, f in enumerate(folders)]
    return results


def page(results: dict) -> str:
    lines = [
        "# How far thresholds can go: rules picked on the held-out hour itself",
        "",
        "Made by `python docs/results/synthcctv/ceiling.py compute` (then `page`) from the "
        "committed test-hour scores (1 s stride, smoothing 3; the rescorer's at 0.5 s without "
        "smoothing). Each rule set is picked on "
        "the held-out hour itself (`--budget-split recall`, plain rules, tolerance 2 s), so "
        "each count is as many events as per-class thresholds can detect there within the "
        "budget: no calibration set can give more. The targets "
        f"ask for {TARGET_RECALL * 100:g} % recall at 2 false alarms per hour.",
        "",
        "Events detected of 72, per seed (false alarms per hour reached, mean over seeds):",
        "",
        "| source | "
        + " | ".join(f"at most {b:g} false alarms / h" for b in BUDGETS)
        + f" | reaches {TARGET_RECALL * 100:g} % within {BUDGETS[-1]:g} / h |",
        "|---|" + "---|" * (len(BUDGETS) + 1),
    ]
    per_class_rows, claims = [], []
    low, high = f"{BUDGETS[0]:g}", f"{BUDGETS[-1]:g}"
    for name, seeds in results.items():
        classes = seeds[0]["classes"]
        for kind in ("network", "shuffled"):
            label = name if kind == "network" else f"control: {name.split(' (')[0]}, shuffled"
            cells = []
            for b in (f"{b:g}" for b in BUDGETS):
                counts = ", ".join(str(s[kind][b]["detected"]) for s in seeds)
                rates = [s[kind][b]["fa_per_hour"] or 0.0 for s in seeds]
                cells.append(f"{counts} ({np.mean(rates):.1f})")
            events = seeds[0][kind][low]["events"]
            top = [s[kind][high]["detected"] for s in seeds]
            reaches = "yes" if min(top) >= TARGET_RECALL * events else "no"
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {reaches} |")
        labels = [c for c in classes if c in seeds[0]["network"][low]["per_class"]]
        for b in (low, high):
            cells = [", ".join(str(s["network"][b]["per_class"][c]) for s in seeds) for c in labels]
            per_class_rows.append((labels, f"| {name}, {b} / h | " + " | ".join(cells) + " |"))
        gains = [s["network"][low]["detected"] - s["shuffled"][low]["detected"] for s in seeds]
        test = above_zero(gains)
        claims.append(
            f"- {name}: {mean_ci(gains)} more events than its shuffled control at "
            f"{BUDGETS[0]:g} false alarms per hour ({test}: {verdict(test)})."
        )
    labels = per_class_rows[0][0]
    lines += [
        "",
        "Events detected per class (seeds in order), at the smallest and the largest budget:",
        "",
        "| source and budget | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
        *(row for _, row in per_class_rows),
        "",
        "Each network's scores against the same scores shuffled in time within each recording "
        "(paired over its seeds, one-sided t; the control must fall short):",
        "",
        *claims,
        "",
        "Each change against the same seeds without it (paired, one-sided t):",
        "",
        *pair_claims(results),
        *any_event_section(results),
        "",
    ]
    return "\n".join(lines)


def any_event_section(results: dict) -> list[str]:
    """The table and control claims of the any-event sweep: how many events thresholds on
    "something is happening" find, a wrong class forgiven, beside the per-class rules."""
    low = f"{ANY_EVENT_BUDGETS[0]:g}"
    lines = [
        "",
        "One rule for an event of any class, on the score that something is happening (1 minus "
        "the normal class's score), its alerts counted for whatever event they fall in: an "
        "alert that names the wrong class is forgiven. Events detected of 72, per seed, with "
        "the thresholds picked on the held-out hour as above:",
        "",
        "| source | "
        + " | ".join(f"any event, at most {b:g} / h" for b in ANY_EVENT_BUDGETS)
        + f" | per-class rules, at most {low} / h | control: any event shuffled, at most {low} / h"
        + f" | any event reaches {TARGET_RECALL * 100:g} % within {low} / h |",
        "|---|" + "---|" * (len(ANY_EVENT_BUDGETS) + 3),
    ]
    claims = []
    for name, seeds in results.items():
        cells = [
            ", ".join(str(s["any_event"][f"{b:g}"]["detected"]) for s in seeds)
            for b in ANY_EVENT_BUDGETS
        ]
        found = [s["any_event"][low]["detected"] for s in seeds]
        control = [s["any_event_shuffled"][low]["detected"] for s in seeds]
        named = ", ".join(str(s["network"][low]["detected"]) for s in seeds)
        events = seeds[0]["any_event"][low]["events"]
        reaches = "yes" if min(found) >= TARGET_RECALL * events else "no"
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {named} | "
            + ", ".join(map(str, control))
            + f" | {reaches} |"
        )
        gains = [a - b for a, b in zip(found, control, strict=True)]
        test = above_zero(gains)
        claims.append(
            f"- {name}, any event: {mean_ci(gains)} more events than its shuffled control at "
            f"{low} false alarms per hour ({test}: {verdict(test)})."
        )
    labels = list(next(iter(results.values()))[0]["any_event"][low]["per_class"])
    lines += [
        "",
        f"The events of each class that the any-event rule detects within {low} false alarms "
        "per hour (seeds in order):",
        "",
        "| source | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for name, seeds in results.items():
        cells = [", ".join(str(s["any_event"][low]["per_class"][c]) for s in seeds) for c in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, "", "The any-event rule against the same scores shuffled in time:", "", *claims]


def pair_claims(results: dict) -> list[str]:
    """A line per budget of each of :data:`PAIRS`: the events gained over the baseline on
    the seeds both sources have."""
    lines = []
    for name, baseline in PAIRS:
        seeds = list(zip(results[name], results[baseline], strict=False))
        for b in (f"{b:g}" for b in BUDGETS):
            gains = [
                ours["network"][b]["detected"] - theirs["network"][b]["detected"]
                for ours, theirs in seeds
            ]
            test = above_zero(gains)
            lines.append(
                f"- {name} against {baseline.split(' (')[0]}, at most {b} false alarms per "
                f"hour: {mean_ci(gains)} more events on {len(seeds)} seeds ({test}: "
                f"{verdict(test)})."
            )
    return lines


def main(argv: list[str]) -> None:
    if argv[:1] == ["compute"]:
        from rsanet.atomic import atomic_write_text

        only = argv[1:]
        kept = json.loads(RESULTS.read_text()) if only else None
        RESULTS.parent.mkdir(exist_ok=True)
        atomic_write_text(RESULTS, json.dumps(compute(only, kept), indent=1) + "\n")
    elif argv == ["page"]:
        print(page(json.loads(RESULTS.read_text())), end="")
    else:
        sys.exit(__doc__.split("\n\n")[1])


if __name__ == "__main__":
    main(sys.argv[1:])
