"""The 16-frame TSM recipe over training seeds, trained on whole events and on key
moments: the test hour's event numbers of each run, their mean with a 95 % confidence
interval (Student's t), and whether key moments detect more events (Welch's t-test).

    python docs/results/synthcctv/recipe/seeds.py > docs/results/synthcctv/recipe/seeds.md

Reads the committed reports ``RUN/test_calib4h_events_recall.json`` of the runs below
(each trained with ``train.seed=N``, calibrated on the 4.4 calibration hours with
``--budget-split recall``; commands in ``docs/events.md``). The seeds size the noise of one
run: a difference between two recipes smaller than the intervals says nothing.

The comparison splits the classes in two. Key moments change the training windows only
of the classes whose annotated actions are shorter than the event (the walks around a
bag set down, the body lying after a fall); for the others the key moment is (nearly)
the whole event and their windows are drawn as before. Those are the negative control: a
gain there would be noise or a side effect, not what key moments were made for, and the
test must find none.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from rsanet.study.stats import mean_ci, verdict, welch

HERE = Path(__file__).resolve().parent
#: recipe -> run folder -> training seed
RECIPES = {
    "whole events": {
        "person18_tsm_f16": 0,
        "person18_tsm_f16_seed1": 1,
        "person18_tsm_f16_seed2": 2,
        "person18_tsm_f16_seed3": 3,
    },
    "key moments": {
        "person18_tsm_f16_km": 0,
        "person18_tsm_f16_km_seed1": 1,
        "person18_tsm_f16_km_seed2": 2,
        "person18_tsm_f16_km_seed3": 3,
    },
}
REPORT = "test_calib4h_events_recall.json"
#: the calibration report: every recording's alerts under the default rules (threshold 0.5)
CALIBRATION = "calib4h_events_recall.json"
#: classes whose key moment is shorter than the event (SynthCCTV's choreography: the
#: strikes and the fall of an assault, the bag going down or up, the fall of a fainting)
CUT_CLASSES = ("assault", "theft", "dumping", "fainting")
#: classes whose key moment is (nearly) the whole event: the control
WHOLE_CLASSES = ("fight", "vandalism", "loitering", "intrusion", "kidnapping", "drunkenness")


@cache
def load(path: Path) -> dict:
    """A committed report, read once."""
    return json.loads(path.read_text())


def default_rule_alarms(calibration: dict) -> dict[str, float]:
    """The false alarms of the default rules (threshold 0.5) on the calibration hours, in
    two kinds: those outside every event (extended by the tolerance), which ring for
    nothing, per hour of event-free time; and those during an event of another class (a
    fight alert during an assault), counted. The thresholds picked for 2 per hour must
    silence both."""
    tolerance = calibration["settings"]["tolerance_s"]
    free = other = 0
    for video in calibration["videos"]:
        for alert in video["alerts"]:
            if alert["outcome"] != "false_alarm":
                continue
            during = any(
                e["start_s"] - tolerance <= alert["time"] <= e["end_s"] + tolerance
                for e in video["events"]
            )
            other, free = other + during, free + (not during)
    return {
        "alarms at 0.5 in event-free time / h": free
        / calibration["event"]["overall"]["event_free_hours"],
        "alarms at 0.5 during another class's event": other,
    }


def per_class(calibration: dict) -> dict[str, tuple[int, int]]:
    """Each class's (detected, events) on the calibration hours by the rules picked there
    (2 false alarms per hour): in-sample, so optimistic, but the same for every run, and on
    301 events rather than 72."""
    swept, classes = calibration["sweep"]["classes"], calibration["event"]["classes"]
    return {
        c: (round(swept[c]["recall"] * classes[c]["events"]), classes[c]["events"])
        for c in (*CUT_CLASSES, *WHOLE_CLASSES)
    }


def calibrated(calibration: dict) -> dict[str, int]:
    """Events detected on the calibration hours by the rules picked there: all, then the
    cut and the whole classes (:func:`per_class`)."""
    counts = per_class(calibration)
    return {
        "calibration: detected (of 301)": calibration["sweep"]["overall"]["detected"],
        "calibration: detected, cut classes": sum(counts[c][0] for c in CUT_CLASSES),
        "calibration: detected, whole classes": sum(counts[c][0] for c in WHOLE_CLASSES),
    }


def row(run: Path) -> dict[str, float | None]:
    """The numbers of one run: its last validation, its test-hour report and its
    calibration report."""
    report = load(run / REPORT)
    calibration = load(run / CALIBRATION)
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = [e for e in epochs if e.get("event") == "epoch" and "val_mean_class" in e][-1]
    overall, classes = report["event"]["overall"], report["event"]["classes"]
    return {
        "val mean-class %": last["val_mean_class"],
        "detected (of 72)": overall["detected"],
        "recall %": 100 * overall["recall"],
        "false alarms / h": overall["fa_per_hour"],
        "latency median s": overall["latency_median_s"],
        "frame AUC": report["frame"]["overall"]["auc"],
        "detected, cut classes": sum(classes[c]["detected"] for c in CUT_CLASSES),
        "detected, whole classes": sum(classes[c]["detected"] for c in WHOLE_CLASSES),
        **calibrated(calibration),
        **default_rule_alarms(calibration),
    }


def cell(column: str, value: float | None) -> str:
    if value is None:
        return "-"
    decimals = 3 if column == "frame AUC" else 0 if "detected" in column else 1
    decimals = 2 if column.endswith("/ h") and column.startswith("alarms") else decimals
    decimals = 0 if column.endswith("event") else decimals
    return f"{value:.{decimals}f}"


def table(name: str, runs: dict[str, int], rows: dict[str, dict]) -> None:
    columns = list(next(iter(rows.values())))
    print(f"## Trained on {name}\n")
    print("| run | seed | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for run, values in rows.items():
        cells = " | ".join(cell(c, values[c]) for c in columns)
        print(f"| `{run}` | {runs[run]} | {cells} |")
    intervals = {c: mean_ci([v[c] for v in rows.values() if v[c] is not None]) for c in columns}
    cells = " | ".join(intervals[c].format(3 if c == "frame AUC" else 1) for c in columns)
    print(f"| mean ± 95 % CI | {len(rows)} runs | {cells} |\n")


def main() -> None:
    results = {
        name: {run: row(HERE / run) for run in runs if (HERE / run / REPORT).is_file()}
        for name, runs in RECIPES.items()
    }
    print("# The 16-frame TSM recipe over training seeds\n")
    print(f"Made by `python {Path(__file__).relative_to(HERE.parents[3])}` from each run's")
    print(f"`{REPORT}` (the test hour, 72 events), `{CALIBRATION}` (the 4.4")
    print("calibration hours, 301 events) and `metrics.jsonl`; the commands are in")
    print("`docs/events.md`. Validation mean-class is not comparable between the two recipes:")
    print("key moments label the validation windows differently. Cut classes")
    print(f"({', '.join(CUT_CLASSES)}) have a key moment shorter than the event; whole classes")
    print(f"({', '.join(WHOLE_CLASSES)}) do not, and are the control.\n")
    for name, rows in results.items():
        if rows:
            table(name, RECIPES[name], rows)
    print("## Per class on the calibration hours (detected by each seed's rules)\n")
    print("| class | events | " + " | ".join(n for n, rows in results.items() if rows) + " |")
    print("|---|---|" + "---|" * sum(1 for rows in results.values() if rows))
    counts = {
        name: [per_class(load(HERE / run / CALIBRATION)) for run in rows]
        for name, rows in results.items()
        if rows
    }
    for c in (*CUT_CLASSES, *WHOLE_CLASSES):
        events = next(iter(counts.values()))[0][c][1]
        cells = " | ".join(", ".join(str(r[c][0]) for r in runs) for runs in counts.values())
        print(f"| {c} | {events} | {cells} |")
    print()
    moments, events = results["key moments"].values(), results["whole events"].values()
    if len(moments) < 2 or len(events) < 2:
        return
    print("## Key moments against whole events (one-sided Welch's t-tests)\n")
    print("| claim | whole events | key moments | test | verdict |")
    print("|---|---|---|---|---|")
    for column, label, fewer in (
        ("detected, cut classes", "more test events of the cut classes detected", False),
        ("detected, whole classes", "more of the whole classes (the control)", False),
        ("detected (of 72)", "more test events detected", False),
        ("calibration: detected, cut classes", "the same on the calibration hours", False),
        ("calibration: detected, whole classes", "the control there", False),
        ("calibration: detected (of 301)", "more calibration events detected", False),
        ("alarms at 0.5 in event-free time / h", "fewer alarms in event-free time", True),
    ):
        a, b = [r[column] for r in moments], [r[column] for r in events]
        test = welch(b, a) if fewer else welch(a, b)
        print(
            f"| {label} | {mean_ci(b).format(1)} | {mean_ci(a).format(1)} | {test} | "
            f"{verdict(test)} |"
        )


if __name__ == "__main__":
    main()
