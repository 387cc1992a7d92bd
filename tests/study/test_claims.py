"""The study's statistics and verdicts on records made up for the purpose: every claim can
come out either way, claims against networks that did not learn are refused, and the
negative controls come out as not holding."""

from __future__ import annotations

import math

import pytest

from rsanet.study import claims as c
from rsanet.study.stats import (
    above_chance,
    above_zero,
    kendall,
    mean_ci,
    welch,
)

NUM_VAL = 350


def record(
    variant: str,
    seed: int,
    top1: float,
    pair: float,
    *,
    part: str = "comparison",
    group: str = "baseline",
    features: float = 0.0,
    order_blind: bool = False,
    options: dict | None = None,
) -> dict:
    pair_correct = round(pair * NUM_VAL / 100)
    top1_correct = round(top1 * NUM_VAL / 100)
    return {
        "key": f"{variant}/seed{seed}",
        "variant": variant,
        "label": variant.upper(),
        "group": group,
        "part": part,
        "seed": seed,
        "order_blind": order_blind,
        "options": options or {},
        "metrics": {
            "top1": top1,
            "pair_accuracy": pair,
            "swap_rate": 0.0,
            "num_val": NUM_VAL,
            "pair_correct": pair_correct,
            "top1_correct": top1_correct,
            "pair_top1": [top1] * 7,
            "direction": {"features": features, "kernel": {}},
        },
    }


def results(*records: dict) -> dict:
    return {"runs": {r["key"] + r["part"]: r for r in records}, "variants": []}


def test_mean_ci_and_tests() -> None:
    interval = mean_ci([60.0, 64.0, 68.0])
    assert interval.mean == 64.0
    assert interval.half_width == pytest.approx(
        4.0 / math.sqrt(3) * 4.302653, rel=1e-5
    )  # t(.975, 2)
    assert str(mean_ci([5.0])) == "5.0" and math.isnan(mean_ci([5.0]).half_width)
    assert welch([60, 64, 68], [30, 31, 29]).p < 0.01
    assert welch([60, 64, 68], [58, 66, 62]).p > 0.05  # overlapping: not significant
    assert welch([30, 31, 29], [60, 64, 68]).p > 0.95  # one-sided
    # no spread on either side: the exact rank test, 1 / C(6, 3) for three seeds each
    assert welch([1, 1, 1], [0, 0, 0]).p == 0.05 and not welch([1, 1, 1], [0, 0, 0]).significant
    assert welch([1] * 4, [0] * 4).p == 1 / 70 and welch([0, 0], [0, 0]).p == 1.0
    assert welch([1.0], [0.0, 0.1]).p == 1.0  # too few seeds: no claim
    assert above_chance(60, 350, 1 / 7).p > 0.05  # 17 % against 14.3 %
    assert above_chance(100, 350, 1 / 7).p < 1e-6
    assert above_zero([0.0, 0.0, 0.0]).p == 1.0
    assert above_zero([0.2, 0.25, 0.3]).p < 0.05
    # the same gain on every seed: the sign test, not a t statistic of infinity
    assert above_zero([2, 2, 2]).p == 0.125 and above_zero([100.0] * 3).p == 0.125
    assert not above_zero([2, 2, 2]).significant and above_zero([1] * 5).significant
    assert above_zero([-2, -2, -2]).p == 1.0 and above_zero([0, 0, 0]).p == 1.0
    assert above_zero([1, 2, 3]).name == "one-sample t"  # spread: the t-test
    assert kendall([1, 2, 3], [1, 2, 3]) is None  # under 4 points: no rank correlation
    assert kendall([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]).statistic == pytest.approx(1.0)


def test_a_network_at_chance_has_not_learned_and_no_claim_is_made_against_it() -> None:
    data = results(
        *(record("rsa", s, 60 + s, 66 + s, group="rsa") for s in range(3)),
        *(record("tsn", s, 7.2, 14.9) for s in range(3)),
    )
    groups = c.groups(data)
    assert groups["rsa"].learned(14) and not groups["tsn"].learned(14)
    claims = c.transform_claims(groups, "rsa", 14)
    assert [x.outcome for x in claims] == ["not stated"]
    assert "did not learn" in claims[0].evidence


def test_comparisons_hold_only_when_significant() -> None:
    clear = results(
        *(record("rsa", s, 60 + 2 * s, 66 + s, group="rsa") for s in range(3)),
        *(record("conv", s, 40 + s, 46 + s) for s in range(3)),
    )
    (claim,) = c.transform_claims(c.groups(clear), "rsa", 14)
    assert claim.outcome == "holds" and "Welch's t" in claim.evidence
    close = results(
        *(record("rsa", s, [50, 70, 60][s], 66, group="rsa") for s in range(3)),
        *(record("conv", s, [55, 62, 58][s], 66) for s in range(3)),
    )
    (claim,) = c.transform_claims(c.groups(close), "rsa", 14)
    assert claim.outcome == "not significant"


def test_negative_controls() -> None:
    data = results(
        *(record("rsa", s, 60, 66, group="rsa", features=0.2 + 0.01 * s) for s in range(3)),
        *(record("tsn", s, 25, 50, order_blind=True) for s in range(3)),
        *(record("rsa", s, 7, 14, part="untrained", group="rsa") for s in range(3)),
    )
    summaries, untrained = c.groups(data), c.groups(data, "untrained")
    claims = c.reversal_claims(summaries, untrained, "rsa")
    outcomes = {(x.control, x.text.split(" of ", 1)[1]): x.outcome for x in claims}
    assert outcomes[(False, "RSA depend on the direction of time")] == "holds"
    assert outcomes[(True, "untrained RSA depend on the direction of time")] == "does not hold"
    assert outcomes[(True, "TSN depend on the direction of time")] == "does not hold"
    learning = c.learning_claims(summaries, untrained, 14)
    assert [x.outcome for x in learning if x.control] == ["does not hold"]
    # TSN at half its pair accuracy: the ceiling of a network blind to frame order
    (ceiling,) = c.ceiling_notes(summaries)
    assert "top-1 is 50.0 ± 0.0 % of its pair accuracy" in ceiling


def test_a_control_that_misbehaves_is_reported() -> None:
    data = results(
        *(record("rsa", s, 60, 66, group="rsa", features=0.3) for s in range(3)),
        *(record("rsa", s, 7, 14, part="untrained", features=0.2 + 0.01 * s) for s in range(3)),
    )
    claims = c.reversal_claims(c.groups(data), c.groups(data, "untrained"), "rsa")
    control = next(x for x in claims if x.control)
    assert control.outcome == "holds"  # the page then says the analysis is not evidence


def test_pairs_are_learned_only_above_what_an_order_blind_network_reaches() -> None:
    runs = []
    for s in range(3):
        r = record("rsa", s, 60, 66, group="rsa")
        r["metrics"]["pair_top1"] = [90 + s, 45 + s, 50 + 10 * s, 80, 80, 80, 80]
        runs.append(r)
    rows = c.pair_table(c.groups(results(*runs)), ["rsa"])
    assert [row["learnable"] for row in rows[:3]] == [True, False, False]


def probe(pair: int, seed: int, top1: float) -> dict:
    r = record(f"pair{pair}_conv3d", seed, top1, 100.0, part="pair_probe")
    r["value"] = pair
    r["metrics"]["pair_top1"] = [top1]  # a probe sees one pair
    return r


def test_a_pair_no_comparison_network_learned_is_learnable_when_its_probe_beats_50() -> None:
    runs = []
    for s in range(3):
        r = record("rsa", s, 60, 66, group="rsa")
        r["metrics"]["pair_top1"] = [90, 45 + s, 48 + s, 80, 80, 80, 80]
        runs.append(r)
    probes = [probe(1, s, 85 + 2 * s) for s in range(3)] + [
        probe(2, s, 48 + 2 * s) for s in range(3)
    ]
    found = results(*runs, *probes)
    assert c.num_classes(found) == 14  # the probes' single pair does not count
    by_pair = c.probe_groups(found)
    assert sorted(by_pair) == [1, 2]
    claims = c.probe_claims(by_pair)
    assert [claim.outcome for claim in claims] == ["holds", "not significant"]
    assert "rotating something clockwise" in claims[1].text
    rows = c.pair_table(c.groups(found), ["rsa"], by_pair)
    assert [(row["learned"], row["learnable"]) for row in rows[:3]] == [
        (True, True),
        (False, True),  # learned alone
        (False, False),  # its probe is not above 50 %
    ]
    assert c.verdicts(found).probes == claims


def test_ablation_claims_use_every_seed_and_no_rank_under_four_points() -> None:
    spec = {
        "variant": "rsa",
        "values": [2, 8],
        "label": "latent dimension D",
        "default_label": "dk",
        "paper_table": "4b",
    }
    runs = [record("rsa", s, 60 + s, 66, group="rsa") for s in range(3)]
    for value, top1 in ((2, 40), (8, 59)):
        for s in range(3):
            r = record(f"latent_dim_{value}", s, top1 + s, 66, part="latent_dim", group="rsa")
            r["value"] = value
            runs.append(r)
    data = results(*runs)
    data["ablations"] = {"latent_dim": spec}
    points = c.ablation_points(data, "latent_dim")
    assert [p.value for p in points] == ["2", "8", "dk"] and all(p.group.n == 3 for p in points)
    claims = c.ablation_claims("D", points, 14)
    # the paper's best (dk) against 8 only: the paper gives no figure for 2, no rank over 2
    assert [(x.text.rsplit(" ", 1)[1], x.outcome) for x in claims] == [
        ("2", "holds"),
        ("8", "not significant"),
    ]
