"""The 16-frame TSM recipe (``person18_tsm_f16``) over training seeds: the test hour's
event numbers of each run, and their mean with a 95 % confidence interval (Student's t).

    python docs/results/synthcctv/recipe/seeds.py > docs/results/synthcctv/recipe/seeds.md

Reads the committed reports ``RUN/test_calib4h_events_recall.json`` of the runs below
(each trained with ``train.seed=N``, calibrated on the 4.4 calibration hours with
``--budget-split recall``; commands in ``docs/events.md``). It sizes the noise of one run:
a difference between two recipes that is smaller than the interval says nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from rsanet.study.stats import mean_ci

HERE = Path(__file__).resolve().parent
#: run folder -> training seed
RUNS = {
    "person18_tsm_f16": 0,
    "person18_tsm_f16_seed1": 1,
    "person18_tsm_f16_seed2": 2,
    "person18_tsm_f16_seed3": 3,
}
REPORT = "test_calib4h_events_recall.json"


def row(run: Path) -> dict[str, float | None]:
    """The numbers of one run: its last validation and its test-hour report."""
    report = json.loads((run / REPORT).read_text())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = [e for e in epochs if e.get("event") == "epoch" and "val_mean_class" in e][-1]
    overall = report["event"]["overall"]
    return {
        "val mean-class %": last["val_mean_class"],
        "detected (of 72)": overall["detected"],
        "recall %": 100 * overall["recall"],
        "false alarms / h": overall["fa_per_hour"],
        "latency median s": overall["latency_median_s"],
        "frame AUC": report["frame"]["overall"]["auc"],
    }


def cell(column: str, value: float | None) -> str:
    if value is None:
        return "-"
    decimals = {"detected (of 72)": 0, "frame AUC": 3}.get(column, 1)
    return f"{value:.{decimals}f}"


def main() -> None:
    rows = {run: row(HERE / run) for run in RUNS if (HERE / run / REPORT).is_file()}
    columns = list(next(iter(rows.values())))
    print("# The 16-frame TSM recipe over training seeds (test hour, 72 events)\n")
    print(f"Made by `python {Path(__file__).relative_to(HERE.parents[3])}` from each run's")
    print(f"`{REPORT}` and `metrics.jsonl` (the commands: `docs/events.md`).\n")
    print("| run | seed | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for run, values in rows.items():
        cells = " | ".join(cell(c, values[c]) for c in columns)
        print(f"| `{run}` | {RUNS[run]} | {cells} |")
    intervals = {c: mean_ci([v[c] for v in rows.values() if v[c] is not None]) for c in columns}
    cells = " | ".join(intervals[c].format(3 if c == "frame AUC" else 1) for c in columns)
    print(f"| mean ± 95 % CI | {len(rows)} runs | {cells} |")


if __name__ == "__main__":
    main()
