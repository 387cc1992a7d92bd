"""A rescorer over a network's window scores, against the network's own rules: held-out
events detected, false alarms per hour and latency, over seeds, with a negative control
fitted on windows shuffled in time. Two networks (:data:`NETWORKS`): the 20-epoch
``tsm_tiny`` of the budget run (scores every 0.5 s, no smoothing) and ``rsanet_tiny``
(5x3x3, 14 epochs; scores every 1 s, smoothing 3); and ``tsm_tiny_x5``, the first with five
cross-fits (``fit-rescorer --repeats 5``: each calibration recording's out-of-fold score
the average of five heads that did not see it, the rescorer all 25 heads), and
``rsanet_tiny_x5``, the same for the second; ``rsanet_tiny_context_x5``, five cross-fits
over ``rsanet_tiny`` within its time budget given the change from the 8 s before each
window (scores every 1 s, smoothing 3).

Two steps, so that the page is made from committed records:

    python compare.py fit NETWORK SEED            # about a minute a seed (x5: ten)
    python compare.py report NETWORK SEED ... > PAGE

``fit`` reads the network's committed window scores of that seed (``calib.npz`` and
``test.npz`` of its folder), fits :func:`rsanet.inference.rescorer.fit_rescorer` on the
4.4 calibration hours as ``rsanet fit-rescorer`` does (5 folds by session, GRU 48, 40
epochs, seed 0) and writes, under the network's records folder, its out-of-fold scores
of the calibration hours (``calib.npz``) and the averaged heads' scores of the held-out
hour (``test.npz``); then the same for the control (``control_calib.npz``,
``control_test.npz``): each recording's windows shuffled in time, their labels with them,
so that the order a rescorer reads means nothing.

``report`` calibrates each row's rules for at most 2 false alarms per hour (``--budget-split
recall``) on the calibration hours (out-of-fold for the rescorers) and replays them with the
alert engine on the held-out hour, as ``rules/compare.py`` does. ``report --json`` prints
the raw numbers.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
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

#: a rule set's name -> its rules on the page
RULE_NAMES = {"plain": "plain", "min_durations": "min durations"}


@dataclass(frozen=True)
class Network:
    """A network the page rescores: its title, the folder of its committed scores, how they
    were made, where the rescorers' scores go, and extra views of its own scores (stride,
    smoothing) to show beside it."""

    title: str
    scores: str
    stream: StreamSettings
    records: str
    views: tuple[tuple[float, int], ...] = ()
    repeats: int = 1
    #: the records folder of the same rescorer fitted with one cross-fit, shown beside it
    single: str | None = None

    def folder(self, seed: str) -> Path:
        return HERE.parent / self.scores.format(seed=seed)

    def records_folder(self, seed: str) -> Path:
        return HERE / self.records.format(seed=seed)

    def rows(self) -> list[tuple[str, str, float, int, str]]:
        """(name, source, stride, smoothing, rule set) of each row of the page."""
        own = (self.stream.stride_s, self.stream.smoothing)
        rows = []
        for stride, smoothing in (*self.views, own):
            sets = ("plain",) if (stride, smoothing) == own and self.views else RULE_NAMES
            view = view_name(stride, smoothing)
            rows += [
                (f"network, {view}, {RULE_NAMES[r]}", "network", stride, smoothing, r) for r in sets
            ]
        sources = (("rescorer", RESCORER), ("control", CONTROL))
        if self.single:
            sources = (("single", SINGLE), *sources)
        for source, name in sources:
            rows += [
                (f"{name}, {RULE_NAMES[r]}", source, *own, r) for r in ("plain", "min_durations")
            ]
        return rows


def view_name(stride: float, smoothing: int) -> str:
    return f"{stride:g} s / " + (f"smoothing {smoothing}" if smoothing > 1 else "no smoothing")


RESCORER = "rescorer"
CONTROL = "control: rescorer of shuffled windows"
#: the rows the claims compare (the network's row: the first of the page)
RESCORER_PLAIN, RESCORER_MIN = f"{RESCORER}, plain", f"{RESCORER}, min durations"
SINGLE = "rescorer of one cross-fit"
SINGLE_PLAIN, SINGLE_MIN = f"{SINGLE}, plain", f"{SINGLE}, min durations"
CONTROL_PLAIN = f"{CONTROL}, plain"
NETWORKS = {
    "tsm_tiny": Network(
        "the 20-epoch `tsm_tiny` of the budget run",
        "budget/bf16e20seed{seed}",
        StreamSettings(window_s=2.0, stride_s=0.5, smoothing=1),
        "seed{seed}",
        views=((1.0, 3),),
    ),
    "tsm_tiny_x5": Network(
        "the 20-epoch `tsm_tiny` of the budget run, five cross-fits",
        "budget/bf16e20seed{seed}",
        StreamSettings(window_s=2.0, stride_s=0.5, smoothing=1),
        "seed{seed}_x5",
        views=((1.0, 3),),
        repeats=5,
        single="seed{seed}",
    ),
    "rsanet_tiny": Network(
        "`rsanet_tiny` 5x3x3, 14 epochs in bf16",
        "networks/rsanet_k3e14seed{seed}",
        StreamSettings(window_s=2.0, stride_s=1.0, smoothing=3),
        "rsanet_tiny_seed{seed}",
    ),
    "rsanet_tiny_x5": Network(
        "`rsanet_tiny` 5x3x3, 14 epochs in bf16, five cross-fits",
        "networks/rsanet_k3e14seed{seed}",
        StreamSettings(window_s=2.0, stride_s=1.0, smoothing=3),
        "rsanet_tiny_seed{seed}_x5",
        repeats=5,
        single="rsanet_tiny_seed{seed}",
    ),
    "rsanet_tiny_context_x5": Network(
        "`rsanet_tiny` within its time budget given the change from the 8 s before, five "
        "cross-fits",
        "networks/rsanet_k3bgseed{seed}",
        StreamSettings(window_s=2.0, stride_s=1.0, smoothing=3),
        "rsanet_tiny_context_seed{seed}_x5",
        repeats=5,
    ),
}


def shuffled(matrix: np.ndarray, number: int, offset: int = 0) -> np.ndarray:
    """The control's order of a recording's windows."""
    return np.random.default_rng(offset + number).permutation(len(matrix))


def fit(network: Network, seed: str) -> None:
    """Fit the rescorer and the control on one seed's calibration scores; write their
    scores of both sets to the network's records folder."""
    import torch

    torch.set_num_threads(1)  # the same numbers on any number of cores
    classes, calibration = rules.load(network.folder(seed) / "calib.npz")
    _, test = rules.load(network.folder(seed) / "test.npz")
    out = network.records_folder(seed)
    out.mkdir(exist_ok=True)
    stream = network.stream

    def write(name: str, runs) -> None:
        (out / name).write_bytes(window_scores_npz(runs, classes, stream))

    options = {"window_s": stream.window_s, "stride_s": stream.stride_s}
    options.update(smoothing=stream.smoothing, repeats=network.repeats)
    rescorer, out_of_fold = fit_rescorer(calibration, classes, **options)
    write("calib.npz", out_of_fold)
    write("test.npz", rescored_runs(rescorer, test))
    control, out_of_fold = fit_rescorer(calibration, classes, **options, order=shuffled)
    write("control_calib.npz", out_of_fold)
    write(
        "control_test.npz",
        [
            with_scores(
                run, control.rescore(run.score_matrix[shuffled(run.score_matrix, n, 10**4)])
            )
            for n, run in enumerate(test)
        ],
    )


def seed_results(network: Network, seed: str) -> dict[str, dict]:
    """Every row's counts for one seed."""
    scores, records = network.folder(seed), network.records_folder(seed)
    files = {
        "network": (scores / "calib.npz", scores / "test.npz"),
        "rescorer": (records / "calib.npz", records / "test.npz"),
        "control": (records / "control_calib.npz", records / "control_test.npz"),
    }
    if network.single:
        single = HERE / network.single.format(seed=seed)
        files["single"] = (single / "calib.npz", single / "test.npz")
    loaded = {name: (rules.load(a), rules.load(b)[1]) for name, (a, b) in files.items()}
    own = (network.stream.stride_s, network.stream.smoothing)
    results = {}
    for name, source, stride, smoothing, rule_set in network.rows():
        (classes, calibration), test = loaded[source]
        if (stride, smoothing) != own:  # a coarser view of the same network's scores
            calibration = rules.resampled(calibration, stride, smoothing)
            test = rules.resampled(test, stride, smoothing)
        result = rules.rule_set(classes, calibration, test, rule_set, stride, smoothing)
        results[name] = {key: value for key, value in result.items() if key != "rules"}
    return results


def page(key: str, results: dict[str, dict]) -> str:
    network, seeds = NETWORKS[key], list(results)
    rows = network.rows()
    network_row = rows[0][0]
    first = results[seeds[0]][network_row]
    scores, records = network.scores.format(seed="N"), network.records.format(seed="N")
    lines = [
        f"# A rescorer over the window scores of {network.title}, {len(seeds)} seeds",
        "",
        f"Generated by `python docs/results/synthcctv/rescorer/compare.py report {key} "
        f"{' '.join(seeds)}` from the committed window scores (the network's, `{scores}/`, "
        f"and the rescorers' of `rescorer/{records}/`, made by `compare.py fit {key} N`). "
        "Every row's rules are calibrated for 2 false alarms per hour (budget split by "
        "recall) on the 4.4 calibration hours, on out-of-fold scores for the rescorers, and "
        "replayed on the held-out hour. Seeds in order.",
        "",
        f"| rules | calibration: detected of {first['calibration_events']} "
        f"| test: detected of {first['test_events']} | test FA / h "
        "| test FA / h in event-free time | test latency median (s) |",
        "|---|---|---|---|---|---|",
    ]

    def cells(column: list[dict], key: str, digits: int) -> str:
        values = [c[key] for c in column]
        return ", ".join("-" if v is None else f"{v:.{digits}f}" for v in values)

    for name, *_ in rows:
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
            gains(RESCORER_PLAIN, network_row, "test_fa_per_hour", -1.0),
        ),
        (
            "the rescorer's rules with min durations raise fewer than the network's",
            gains(RESCORER_MIN, network_row, "test_fa_per_hour", -1.0),
        ),
        (
            "the rescorer's plain rules stay under the target of 2 false alarms per hour",
            [2.0 - results[s][RESCORER_PLAIN]["test_fa_per_hour"] for s in seeds],
        ),
        (
            "the rescorer's plain rules detect more test events than the network's",
            gains(RESCORER_PLAIN, network_row, "test_detected"),
        ),
        (
            "the rescorer's rules with min durations detect more than the network's",
            gains(RESCORER_MIN, network_row, "test_detected"),
        ),
        (
            "the rescorer's plain rules detect more test events than the control's",
            gains(RESCORER_PLAIN, CONTROL_PLAIN, "test_detected"),
        ),
        (
            "control: the shuffled rescorer's plain rules detect more test events than the "
            "network's",
            gains(CONTROL_PLAIN, network_row, "test_detected"),
        ),
    ]
    if network.single:
        claims += [
            (
                "five cross-fits' plain rules detect more test events than one cross-fit's",
                gains(RESCORER_PLAIN, SINGLE_PLAIN, "test_detected"),
            ),
            (
                "five cross-fits' rules with min durations detect more than one cross-fit's",
                gains(RESCORER_MIN, SINGLE_MIN, "test_detected"),
            ),
            (
                "five cross-fits' rules with min durations stay under 2 false alarms per hour",
                [2.0 - results[s][RESCORER_MIN]["test_fa_per_hour"] for s in seeds],
            ),
        ]
    lines += [
        "",
        "Claims over the seeds: mean ± 95 % CI of the paired differences, one-sided "
        "one-sample t (the sign test where every seed differs by the same amount). The "
        f"network's rules are its plain rules at {view_name(*rows[0][2:4])}.",
        "",
        "| claim | difference | |",
        "|---|---|---|",
    ]
    for claim, values in claims:
        test = above_zero(values)
        lines.append(f"| {claim} | {mean_ci(values).format(2)} | {test}: {verdict(test)} |")
    lines += ["", "Test events detected per class (seeds in order):", ""]
    lines += rules.per_class_table(results, [name for name, *_ in rows], "rules")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "fit" and argv[1] in NETWORKS:
        fit(NETWORKS[argv[1]], argv[2])
        return
    if len(argv) < 3 or argv[0] != "report" or argv[1] not in NETWORKS:
        sys.exit(__doc__)
    as_json = "--json" in argv
    key, seeds = argv[1], [a for a in argv[2:] if a != "--json"]
    results = {seed: seed_results(NETWORKS[key], seed) for seed in seeds}
    print(json.dumps(results, indent=1) if as_json else page(key, results), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
