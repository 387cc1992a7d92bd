"""A rescorer over the 20-epoch networks' window scores, against the networks' own rules:
held-out events detected, false alarms per hour and latency, over seeds, with a negative
control fitted on windows shuffled in time.

Two steps, so that the page is made from committed records:

    python compare.py fit SEED            # about a minute a seed: seedN/*.npz
    python compare.py report 0 1 2 > compare.md

``fit`` reads the committed window scores of the 20-epoch budget run of that seed
(``../budget/bf16e20seedN/{calib,test}.npz``: 2 s windows every 0.5 s, no smoothing),
fits :func:`rsanet.inference.rescorer.fit_rescorer` on the 4.4 calibration hours as
``rsanet fit-rescorer`` does (5 folds by session, GRU 48, 40 epochs, seed 0) and writes,
under ``seedN/``, its out-of-fold scores of the calibration hours (``calib.npz``) and the
averaged heads' scores of the held-out hour (``test.npz``); then the same for the control
(``control_calib.npz``, ``control_test.npz``): each recording's windows shuffled in time,
their labels with them, so that the order a rescorer reads means nothing.

``report`` calibrates each row's rules for at most 2 false alarms per hour (``--budget-split
recall``) on the calibration hours (out-of-fold for the rescorers) and replays them with the
alert engine on the held-out hour, as ``rules/compare.py`` does. ``report --json`` prints
the raw numbers.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from rsanet.inference.event_eval import StreamSettings, window_scores_npz
from rsanet.inference.rescorer import fit_rescorer, rescored_runs, with_scores
from rsanet.study.stats import above_zero, mean_ci, verdict

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location(
    "rules_compare", HERE.parent / "rules" / "compare.py"
)
rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rules)

SCORES = HERE.parent / "budget" / "bf16e20seed{seed}"
STREAM = StreamSettings(window_s=2.0, stride_s=0.5, smoothing=1)
#: the rows of the page: (name, score files, stride, smoothing, rule set)
ROWS = [
    ("network, 1 s / smoothing 3, plain", "network", 1.0, 3, "plain"),
    ("network, 1 s / smoothing 3, min durations", "network", 1.0, 3, "min_durations"),
    ("network, 0.5 s / no smoothing, plain", "network", 0.5, 1, "plain"),
    ("rescorer, plain", "rescorer", 0.5, 1, "plain"),
    ("rescorer, min durations", "rescorer", 0.5, 1, "min_durations"),
    ("control: rescorer of shuffled windows, plain", "control", 0.5, 1, "plain"),
    ("control: rescorer of shuffled windows, min durations", "control", 0.5, 1, "min_durations"),
]
NETWORK, RESCORER, RESCORER_MIN, CONTROL = ROWS[0][0], ROWS[3][0], ROWS[4][0], ROWS[5][0]


def shuffled(matrix: np.ndarray, number: int, offset: int = 0) -> np.ndarray:
    """The control's order of a recording's windows."""
    return np.random.default_rng(offset + number).permutation(len(matrix))


def fit(seed: str) -> None:
    """Fit the rescorer and the control on one seed's calibration scores; write their
    scores of both sets under ``seedN/``."""
    import torch

    torch.set_num_threads(1)  # the same numbers on any number of cores
    classes, calibration = rules.load(Path(str(SCORES).format(seed=seed)) / "calib.npz")
    _, test = rules.load(Path(str(SCORES).format(seed=seed)) / "test.npz")
    out = HERE / f"seed{seed}"
    out.mkdir(exist_ok=True)
    options = {"window_s": 2.0, "stride_s": 0.5, "smoothing": 1}
    rescorer, out_of_fold = fit_rescorer(calibration, classes, **options)
    (out / "calib.npz").write_bytes(window_scores_npz(out_of_fold, classes, STREAM))
    held_out = rescored_runs(rescorer, test)
    (out / "test.npz").write_bytes(window_scores_npz(held_out, classes, STREAM))
    control, out_of_fold = fit_rescorer(calibration, classes, **options, order=shuffled)
    (out / "control_calib.npz").write_bytes(window_scores_npz(out_of_fold, classes, STREAM))
    held_out = [
        with_scores(run, control.rescore(run.score_matrix[shuffled(run.score_matrix, n, 10**4)]))
        for n, run in enumerate(test)
    ]
    (out / "control_test.npz").write_bytes(window_scores_npz(held_out, classes, STREAM))


def seed_results(seed: str) -> dict[str, dict]:
    """Every row's counts for one seed."""
    network = Path(str(SCORES).format(seed=seed))
    files = {
        "network": (network / "calib.npz", network / "test.npz"),
        "rescorer": (HERE / f"seed{seed}" / "calib.npz", HERE / f"seed{seed}" / "test.npz"),
        "control": (
            HERE / f"seed{seed}" / "control_calib.npz",
            HERE / f"seed{seed}" / "control_test.npz",
        ),
    }
    loaded = {name: (rules.load(a), rules.load(b)[1]) for name, (a, b) in files.items()}
    results = {}
    for name, source, stride, smoothing, rule_set in ROWS:
        (classes, calibration), test = loaded[source]
        if (stride, smoothing) != (0.5, 1):  # a coarser view of the same network's scores
            calibration = rules.resampled(calibration, stride, smoothing)
            test = rules.resampled(test, stride, smoothing)
        result = rules.rule_set(classes, calibration, test, rule_set, stride, smoothing)
        results[name] = {key: value for key, value in result.items() if key != "rules"}
    return results


def page(results: dict[str, dict]) -> str:
    seeds = list(results)
    first = results[seeds[0]][NETWORK]
    lines = [
        f"# A rescorer over the window scores, {len(seeds)} seeds",
        "",
        "Generated by `python docs/results/synthcctv/rescorer/compare.py report "
        f"{' '.join(seeds)}` from the committed window scores (the 20-epoch budget run's, "
        "`budget/bf16e20seedN/`, and the rescorers' of `rescorer/seedN/`, made by "
        "`compare.py fit N`). Every row's rules are calibrated for 2 false alarms per hour "
        "(budget split by recall) on the 4.4 calibration hours, on out-of-fold scores for "
        "the rescorers, and replayed on the held-out hour. Seeds in order.",
        "",
        f"| rules | calibration: detected of {first['calibration_events']} "
        f"| test: detected of {first['test_events']} | test FA / h "
        "| test FA / h in event-free time | test latency median (s) |",
        "|---|---|---|---|---|---|",
    ]

    def cells(column: list[dict], key: str, digits: int) -> str:
        values = [c[key] for c in column]
        return ", ".join("-" if v is None else f"{v:.{digits}f}" for v in values)

    for name, *_ in ROWS:
        column = [results[s][name] for s in seeds]
        lines.append(
            f"| {name} | {cells(column, 'calibration_detected', 0)} "
            f"| {cells(column, 'test_detected', 0)} | {cells(column, 'test_fa_per_hour', 2)} "
            f"| {cells(column, 'test_quiet_fa_per_hour', 2)} "
            f"| {cells(column, 'test_latency_median_s', 2)} |"
        )

    def gains(name: str, base: str, key: str, sign: float = 1.0) -> list[float]:
        return [sign * (results[s][name][key] - results[s][base][key]) for s in seeds]

    claims = [
        (
            "the rescorer's plain rules raise fewer test false alarms per hour than the network's",
            gains(RESCORER, NETWORK, "test_fa_per_hour", -1.0),
        ),
        (
            "the rescorer's rules with min durations raise fewer than the network's",
            gains(RESCORER_MIN, NETWORK, "test_fa_per_hour", -1.0),
        ),
        (
            "the rescorer's plain rules stay under the target of 2 false alarms per hour",
            [2.0 - results[s][RESCORER]["test_fa_per_hour"] for s in seeds],
        ),
        (
            "the rescorer's plain rules detect more test events than the network's",
            gains(RESCORER, NETWORK, "test_detected"),
        ),
        (
            "the rescorer's rules with min durations detect more than the network's",
            gains(RESCORER_MIN, NETWORK, "test_detected"),
        ),
        (
            "the rescorer's plain rules detect more test events than the control's",
            gains(RESCORER, CONTROL, "test_detected"),
        ),
        (
            "control: the shuffled rescorer's plain rules detect more test events than the "
            "network's",
            gains(CONTROL, NETWORK, "test_detected"),
        ),
    ]
    lines += [
        "",
        "Claims over the seeds: mean ± 95 % CI of the paired differences, one-sided "
        "one-sample t (the sign test where every seed differs by the same amount). The "
        "network's rules are its plain rules at 1 s windows and smoothing 3.",
        "",
        "| claim | difference | |",
        "|---|---|---|",
    ]
    for claim, values in claims:
        test = above_zero(values)
        lines.append(f"| {claim} | {mean_ci(values).format(2)} | {test}: {verdict(test)} |")
    lines += ["", "Test events detected per class (seeds in order):", ""]
    lines += rules.per_class_table(results, [name for name, *_ in ROWS], "rules")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    if argv[:1] == ["fit"] and len(argv) == 2:
        fit(argv[1])
        return
    if argv[:1] != ["report"] or len(argv) < 2:
        sys.exit(__doc__)
    as_json = "--json" in argv
    seeds = [a for a in argv[1:] if a != "--json"]
    results = {seed: seed_results(seed) for seed in seeds}
    print(json.dumps(results, indent=1) if as_json else page(results), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
