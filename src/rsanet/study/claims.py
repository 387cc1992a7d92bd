"""The study's numbers and verdicts, computed from its records alone.

Every claim is a test over seeds (:mod:`rsanet.study.stats`) and can come out either way:
"holds" only at p < 0.05, "not significant" otherwise, and "not stated" when a network it
would be made against did not learn. Negative controls (untrained networks, TSN on the
direction of time) go through the same tests and are expected to come out "does not hold".
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rsanet.study.config import value_name
from rsanet.study.paper import ABLATIONS, FORM_NAMES, TABLE_4A
from rsanet.study.stats import (
    ALPHA,
    Interval,
    Test,
    above_chance,
    above_zero,
    kendall,
    mean_ci,
    verdict,
    welch,
)

METRICS = ("top1", "pair_accuracy", "reversed_top1", "swap_rate", "same_rate")
FORMS = ("basic", "relational", "basic+relational")
#: classes per pair of opposites: an order-blind network's top-1 within a pair is at most
#: 1 / 2 of its pair accuracy
PAIR_SIZE = 2


@dataclass
class Group:
    """The runs of one variant (or ablation point, or control) over seeds."""

    name: str
    label: str
    group: str
    records: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)
    order_blind: bool = False

    @property
    def seeds(self) -> list[int]:
        return [r["seed"] for r in self.records]

    @property
    def n(self) -> int:
        return len(self.records)

    def values(self, metric: str) -> list[float]:
        return [float(r["metrics"][metric]) for r in self.records]

    def ci(self, metric: str = "top1") -> Interval:
        return mean_ci(self.values(metric))

    def mean(self, metric: str = "top1") -> float:
        return statistics.fmean(self.values(metric))

    @property
    def mparams(self) -> float:
        return self.records[0]["metrics"]["mparams"]

    @property
    def gflops(self) -> float:
        return self.records[0]["metrics"]["gflops"]

    @property
    def wall_s(self) -> float:
        return statistics.fmean(float(r.get("train_wall_s") or 0.0) for r in self.records)

    @property
    def schedule(self) -> dict[str, Any]:
        return self.records[0].get("schedule", {})

    # -- learning ---------------------------------------------------------------------

    def learned_tests(self, num_classes: int) -> list[Test]:
        """Per seed: pair accuracy above chance (1 / number of pairs), binomial."""
        chance = PAIR_SIZE / num_classes
        return [
            above_chance(r["metrics"]["pair_correct"], r["metrics"]["num_val"], chance)
            for r in self.records
        ]

    def learned(self, num_classes: int) -> bool:
        """Every seed's pair accuracy is above chance."""
        return bool(self.records) and all(t.significant for t in self.learned_tests(num_classes))

    def direction_tests(self) -> list[Test]:
        """Per seed: among clips put in the right pair, the right class more often than
        half the time (an order-blind network cannot), binomial."""
        return [
            above_chance(r["metrics"]["top1_correct"], r["metrics"]["pair_correct"], 0.5)
            for r in self.records
        ]

    def tells_direction(self) -> bool:
        return bool(self.records) and all(t.significant for t in self.direction_tests())

    def pair_values(self, pair: int) -> list[float]:
        return [float(r["metrics"]["pair_top1"][pair]) for r in self.records]

    def direction_values(self, what: str) -> list[float]:
        """Direction index per seed: ``features`` or ``kernel:<kind>``."""
        out = []
        for r in self.records:
            direction = r["metrics"].get("direction") or {}
            if what == "features":
                value = direction.get("features")
            else:
                value = (direction.get("kernel") or {}).get(what.split(":", 1)[1])
            if value is not None:
                out.append(float(value))
        return out


def _group(name: str, records: list[dict[str, Any]]) -> Group:
    first = records[0]
    return Group(
        name=name,
        label=first.get("label") or name,
        group=first.get("group", "baseline"),
        records=sorted(records, key=lambda r: r["seed"]),
        options=first.get("options", {}),
        order_blind=bool(first.get("order_blind")),
    )


def groups(results: dict[str, Any], part: str = "comparison") -> dict[str, Group]:
    """Variant -> its runs of ``part`` ("comparison" or "untrained"), in the study's order."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for record in results["runs"].values():
        if record["part"] == part:
            by_variant.setdefault(record["variant"], []).append(record)
    order = results.get("variants") or sorted(by_variant)
    return {v: _group(v, by_variant[v]) for v in order if v in by_variant}


def num_classes(results: dict[str, Any]) -> int:
    """Classes of the study's data (from the per-pair counts of any record but a pair
    probe's, which sees one pair)."""
    for record in results["runs"].values():
        if record["part"] != "pair_probe":
            return PAIR_SIZE * len(record["metrics"]["pair_top1"])
    return 14


def probe_groups(results: dict[str, Any]) -> dict[int, Group]:
    """Pair number -> the runs that trained one network on that pair alone."""
    by_pair: dict[int, list[dict[str, Any]]] = {}
    for record in results["runs"].values():
        if record["part"] == "pair_probe":
            by_pair.setdefault(int(record["value"]), []).append(record)
    return {pair: _group(str(pair), by_pair[pair]) for pair in sorted(by_pair)}


def missing_runs(results: dict[str, Any]) -> list[str]:
    return [key for key in results.get("planned", []) if key not in results["runs"]]


# -- claims -------------------------------------------------------------------------------


@dataclass
class Claim:
    """One statement with its evidence; ``outcome`` is "holds", "not significant",
    "does not hold" (a negative control that behaved) or "not stated"."""

    text: str
    outcome: str
    evidence: str = ""
    control: bool = False

    def line(self) -> str:
        tail = f" ({self.evidence})" if self.evidence else ""
        marker = "negative control, expected not to hold: " if self.control else ""
        return f"{marker}{self.text}: **{self.outcome}**{tail}."


def _not_learned(g: Group, classes: int) -> str:
    failed = [
        f"seed {r['seed']} {r['metrics']['pair_accuracy']:.1f} %"
        for r, t in zip(g.records, g.learned_tests(classes), strict=True)
        if not t.significant
    ]
    return (
        f"{g.label} did not learn ({', '.join(failed)} pair accuracy, not above the "
        f"{100 * PAIR_SIZE / classes:.1f} % of chance at p < {ALPHA})"
    )


def compare(
    better: Group, worse: Group, classes: int, metric: str = "top1", *, what: str = ""
) -> Claim:
    """``better`` has a higher mean ``metric`` than ``worse`` (one-sided Welch); not stated
    when either network did not learn."""
    text = what or f"{better.label} outperforms {worse.label} ({metric})"
    for g in (better, worse):
        if not g.learned(classes):
            return Claim(text, "not stated", _not_learned(g, classes))
    test = welch(better.values(metric), worse.values(metric))
    evidence = (
        f"{better.ci(metric)} vs {worse.ci(metric)} %, {better.n} and {worse.n} seeds, {test}"
    )
    return Claim(text, verdict(test), evidence)


def transform_claims(
    summaries: dict[str, Group], reference: str | None, classes: int
) -> list[Claim]:
    """RSA against every other transform of the comparison (top-1)."""
    if not reference or reference not in summaries:
        return []
    rsa = summaries[reference]
    return [
        compare(rsa, g, classes, what=f"RSA ({rsa.label}) outperforms {g.label} in top-1")
        for g in summaries.values()
        if g.group != "rsa"
    ]


def learning_claims(
    summaries: dict[str, Group], untrained: dict[str, Group], classes: int
) -> list[Claim]:
    """Whether each network learned, and the untrained controls did not."""
    claims = []
    for g in summaries.values():
        learned = g.learned(classes)
        claims.append(
            Claim(
                f"{g.label} learned (pair accuracy above chance in every seed)",
                "holds" if learned else "not significant",
                "" if learned else _not_learned(g, classes),
            )
        )
    for g in untrained.values():
        learned = g.learned(classes)
        claims.append(
            Claim(
                f"untrained {g.label} learned",
                "holds" if learned else "does not hold",
                f"pair accuracy {g.ci('pair_accuracy')} %",
                control=True,
            )
        )
    return claims


def ceiling_notes(summaries: dict[str, Group]) -> list[str]:
    """For each network blind to frame order: its top-1 as a share of its pair accuracy
    (at most 50 %: it can find the pair, then only guess) and its pair accuracy against
    the best network's. A measurement, not a claim."""
    notes = []
    best = max(summaries.values(), key=lambda s: s.mean("pair_accuracy"), default=None)
    for g in summaries.values():
        if not g.order_blind or best is None:
            continue
        ratios = [
            100 * r["metrics"]["top1"] / r["metrics"]["pair_accuracy"]
            for r in g.records
            if r["metrics"]["pair_accuracy"] > 0
        ]
        notes.append(
            f"{g.label} is blind to frame order: its top-1 is {mean_ci(ratios)} % of its pair "
            f"accuracy (at most 50 % for it), and its pair accuracy is "
            f"{g.ci('pair_accuracy')} % against {best.ci('pair_accuracy')} % for {best.label}."
        )
    return notes


def probe_claims(probes: dict[int, Group]) -> list[Claim]:
    """Each probed pair can be learned: the network trained on it alone beats the 50 % of a
    network blind to frame order (one-sided exact binomial test of its correct validation
    clips against 50 %, over the clips of all seeds: a network that gets every clip right
    on every seed has no spread over seeds to run a t-test on)."""
    from rsanet.data import SYNTHMOTION_CLASSES

    claims = []
    for pair, g in probes.items():
        correct = sum(int(r["metrics"]["top1_correct"]) for r in g.records)
        clips = sum(int(r["metrics"]["num_val"]) for r in g.records)
        test = above_chance(correct, clips, 0.5)
        claims.append(
            Claim(
                f"{SYNTHMOTION_CLASSES[2 * pair]} / {SYNTHMOTION_CLASSES[2 * pair + 1]} can be "
                f"learned ({g.label} trained on this pair alone beats 50 %)",
                verdict(test),
                f"top-1 {g.ci()} %, {g.n} seeds, {correct} of {clips} clips, {test}",
            )
        )
    return claims


def pair_table(
    summaries: dict[str, Group], names: Sequence[str], probes: dict[int, Group] | None = None
) -> list[dict[str, Any]]:
    """Per pair of opposite classes: each named network's top-1 on the pair's clips, the
    best network, and whether it learned the direction (95 % CI above 50 %: more than any
    network blind to frame order can reach on a pair); ``learnable`` also when the network
    trained on that pair alone (``probes``) did (:func:`probe_claims`)."""
    if not summaries:
        return []
    probes = probes or {}
    probed = dict(zip(probes, probe_claims(probes), strict=True))
    pairs = len(next(iter(summaries.values())).records[0]["metrics"]["pair_top1"])
    rows = []
    for pair in range(pairs):
        cells = {n: mean_ci(summaries[n].pair_values(pair)) for n in names if n in summaries}
        best_name = max(summaries, key=lambda n: statistics.fmean(summaries[n].pair_values(pair)))
        best = mean_ci(summaries[best_name].pair_values(pair))
        learned_here = best.n >= 2 and best.low > 50.0
        alone = probed.get(pair)
        rows.append(
            {
                "pair": pair,
                "cells": cells,
                "best": best_name,
                "best_ci": best,
                "learned": learned_here,
                "probe": probes.get(pair),
                "learnable": learned_here or (alone is not None and alone.outcome == "holds"),
            }
        )
    return rows


# -- Table 4a -----------------------------------------------------------------------------


def rsa_form(options: dict[str, Any]) -> tuple[str, str] | None:
    rsa = (options.get("transform_options") or {}).get("rsa")
    if rsa is None:
        return None
    return rsa.get("kernel", "basic+relational"), rsa.get("context", "basic+relational")


def form_name(form: tuple[str, str]) -> str:
    return f"kernel {FORM_NAMES[form[0]]}, context {FORM_NAMES[form[1]]}"


def combination_claims(summaries: dict[str, Group], classes: int) -> list[Claim]:
    """Table 4a: each combined form against each single form (Welch), and the ordering of
    the nine forms against the paper's (Kendall's tau)."""
    ours = {
        form: g
        for g in summaries.values()
        if g.group == "rsa" and (form := rsa_form(g.options)) in TABLE_4A
    }
    if len(ours) < 2:
        return []
    claims = []
    forms = [f for f in TABLE_4A if f in ours]
    rank = kendall([TABLE_4A[f] for f in forms], [ours[f].mean() for f in forms])
    if rank is not None:
        claims.append(
            Claim(
                f"the {len(forms)} kernel/context combinations rank as in the paper",
                "holds" if rank.significant and rank.statistic > 0 else "not significant",
                f"{rank} (two-sided)",
            )
        )
    for axis, what in ((0, "kernel"), (1, "context")):
        for single in ("basic", "relational"):
            for third in FORMS:
                both = ("basic+relational", third) if axis == 0 else (third, "basic+relational")
                one = (single, third) if axis == 0 else (third, single)
                if both not in ours or one not in ours or both == one:
                    continue
                where = (
                    f"context {FORM_NAMES[third]}" if axis == 0 else f"kernel {FORM_NAMES[third]}"
                )
                paper = "as in the paper" if TABLE_4A[both] > TABLE_4A[one] else "not in the paper"
                claim = compare(
                    ours[both],
                    ours[one],
                    classes,
                    what=f"the basic+relational {what} beats the {single} {what} alone at "
                    f"{where} ({paper})",
                )
                claims.append(claim)
    for kernel in FORMS:
        rel, basic = (kernel, "relational"), (kernel, "basic")
        if rel in ours and basic in ours:
            claims.append(
                compare(
                    ours[rel],
                    ours[basic],
                    classes,
                    what=f"the relational context beats the basic context at kernel "
                    f"{FORM_NAMES[kernel]} (as in the paper)",
                )
            )
    return claims


# -- ablations ----------------------------------------------------------------------------


@dataclass
class AblationPoint:
    value: str
    group: Group
    is_default: bool = False
    paper_top1: float | None = None


def ablation_points(results: dict[str, Any], name: str) -> list[AblationPoint]:
    """The points of ablation ``name``: its values, then the variant's own setting (from
    the variant's comparison runs with the ablation's seeds)."""
    spec = results.get("ablations", {}).get(name, {})
    paper = ABLATIONS.get(spec.get("paper_table") or "", {})
    by_value: dict[str, list[dict[str, Any]]] = {}
    seeds: set[int] = set()
    for record in results["runs"].values():
        if record["part"] == name:
            by_value.setdefault(value_name(record["value"]), []).append(record)
            seeds.add(record["seed"])
    label = spec.get("label") or name

    def point(value: str, records: list[dict[str, Any]], is_default: bool) -> AblationPoint:
        group = _group(f"{name}={value}", records)
        group.label = f"{label} {value}"
        return AblationPoint(value, group, is_default, paper.get(value))

    points = [point(v, rs, False) for v, rs in by_value.items()]
    base = [
        r
        for r in results["runs"].values()
        if r["part"] == "comparison" and r["variant"] == spec.get("variant") and r["seed"] in seeds
    ]
    if base:
        points.append(point(spec.get("default_label") or "default", base, True))
    order = [value_name(v) for v in spec.get("values", [])]
    points.sort(key=lambda p: order.index(p.value) if p.value in order else len(order))
    return points


def ablation_claims(label: str, points: list[AblationPoint], classes: int) -> list[Claim]:
    """The paper's best value against every other value (Welch), and the ordering when
    there are enough points for a rank correlation."""
    claims = []
    known = [p for p in points if p.paper_top1 is not None]
    if len(known) >= 2:
        paper_best = max(known, key=lambda p: p.paper_top1)
        for p in points:
            if p is paper_best:
                continue
            claims.append(
                compare(
                    paper_best.group,
                    p.group,
                    classes,
                    what=f"{label}: the paper's best, {paper_best.value}, beats {p.value}",
                )
            )
        rank = kendall([p.paper_top1 for p in known], [p.group.mean() for p in known])
        if rank is not None:
            claims.append(
                Claim(
                    f"{label}: the {len(known)} values rank as in the paper",
                    "holds" if rank.significant and rank.statistic > 0 else "not significant",
                    f"{rank} (two-sided)",
                )
            )
    return claims


# -- reversal -----------------------------------------------------------------------------

#: the direction indices the report shows: (key, column title)
DIRECTION_MEASURES = (
    ("features", "last stage's features"),
    ("kernel:relational", "relational kernels"),
    ("kernel:basic", "basic kernels"),
)


def depends_on_direction(
    g: Group, what: str = "features", *, label: str, control: bool = False
) -> Claim:
    """The direction index ``what`` of ``g`` is above zero (one-sided one-sample t over
    seeds; a network blind to frame order scores exactly zero). A negative ``control``
    that comes out not significant "does not hold", as it should."""
    values = g.direction_values(what)
    test = above_zero(values)
    outcome = verdict(test)
    if control and not test.significant:
        outcome = "does not hold"
    return Claim(
        f"the {dict(DIRECTION_MEASURES)[what]} of {label} depend on the direction of time",
        outcome,
        f"index {mean_ci(values).format(3) if values else 'n/a'} over {len(values)} seeds, {test}",
        control=control,
    )


def reversal_claims(
    summaries: dict[str, Group], untrained: dict[str, Group], reference: str | None
) -> list[Claim]:
    """The reversal analysis: the trained RSA network's features depend on the direction of
    time; the untrained network's and TSN's must not (negative controls)."""
    claims = []
    if reference in summaries:
        claims.append(depends_on_direction(summaries[reference], label=summaries[reference].label))
    for g in untrained.values():
        claims.append(depends_on_direction(g, label=f"untrained {g.label}", control=True))
    for g in summaries.values():
        if g.order_blind:
            claims.append(depends_on_direction(g, label=g.label, control=True))
    if reference in summaries and reference in untrained:
        trained, initial = summaries[reference], untrained[reference]
        for kind in ("relational", "basic"):
            what = f"kernel:{kind}"
            a, b = trained.direction_values(what), initial.direction_values(what)
            if a and b:
                test = welch(a, b)
                claims.append(
                    Claim(
                        f"training makes the {kind} kernels of {trained.label} more "
                        "direction-dependent than at initialisation",
                        verdict(test),
                        f"index {mean_ci(a).format(3)} trained vs {mean_ci(b).format(3)} "
                        f"untrained, {test}",
                    )
                )
    return claims


# -- every claim, once ----------------------------------------------------------------------


def ablations_in_table_order(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The ablations (name, spec) in the order of the paper's tables (4b, 4c, 4d)."""
    ablations = results.get("ablations", {})
    return sorted(ablations.items(), key=lambda item: (item[1].get("paper_table") or "", item[0]))


@dataclass
class Verdicts:
    """Every claim of a study, by the section of the page that states it; computed once
    so that a section and the page's closing tally cannot disagree."""

    learning: list[Claim]
    transforms: list[Claim]
    combinations: list[Claim]
    #: ablation name -> its claims, in the paper's table order
    ablations: dict[str, list[Claim]]
    reversal: list[Claim]
    #: each pair trained alone can be learned
    probes: list[Claim] = field(default_factory=list)

    def every(self) -> list[Claim]:
        ablations = [claim for claims in self.ablations.values() for claim in claims]
        return (
            self.learning
            + self.probes
            + self.transforms
            + self.combinations
            + ablations
            + self.reversal
        )


def verdicts(results: dict[str, Any]) -> Verdicts:
    """Every claim the records allow (see the functions above for each kind)."""
    summaries, untrained = groups(results), groups(results, "untrained")
    classes = num_classes(results)
    reference = results.get("reference_variant")
    return Verdicts(
        learning=learning_claims(summaries, untrained, classes),
        transforms=transform_claims(summaries, reference, classes),
        combinations=combination_claims(summaries, classes),
        ablations={
            name: ablation_claims(
                spec.get("label") or name, ablation_points(results, name), classes
            )
            for name, spec in ablations_in_table_order(results)
        },
        reversal=reversal_claims(summaries, untrained, reference),
        probes=probe_claims(probe_groups(results)),
    )
