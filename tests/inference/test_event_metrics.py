"""Event-level and frame-level metrics on hand-computed cases, and the threshold sweep."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import yaml

from rsanet.data.events import EventInterval as Event
from rsanet.inference import AlertEngine, AlertRule, WindowResult, load_rules
from rsanet.inference import event_metrics as em
from support.inference import CLASSES


class Alert:
    def __init__(self, label: str, time: float) -> None:
        self.label, self.time = label, time


def test_matching_with_tolerance_duplicates_and_false_alarms():
    events = [Event("fighting", 10, 20), Event("fighting", 30, 35)]
    alerts = [
        Alert("fighting", 8.5),  # 1.5 s early: within the 2 s tolerance -> event 0
        Alert("fighting", 21.5),  # event 0 again: a duplicate, not a false alarm
        Alert("fighting", 29),  # event 1
        Alert("fighting", 50),  # nothing near: false alarm
        Alert("falling", 15),  # inside a fighting event, but of another class
    ]
    matching = em.match_alerts(events, alerts, tolerance=2)
    assert matching.pairs == [(0, 0), (1, 2)]
    assert matching.duplicates == [1]
    assert matching.false_alarms == [3, 4]
    assert matching.missed == []
    strict = em.match_alerts(events, alerts, tolerance=0)  # every alert is outside
    assert strict.pairs == [] and strict.false_alarms == [0, 1, 2, 3, 4]
    assert strict.missed == [0, 1]


def test_each_event_is_matched_once_and_the_first_to_end_is_taken():
    # a long event and a short one inside it: the alert at 11 takes the short one (it
    # ends first), so the alert at 50 still detects the long one (a maximum matching)
    events = [Event("fighting", 0, 100), Event("fighting", 10, 12)]
    alerts = [Alert("fighting", 50), Alert("fighting", 11)]  # any order in
    matching = em.match_alerts(events, alerts, tolerance=0)
    assert matching.pairs == [(0, 0), (1, 1)]
    assert not matching.false_alarms and not matching.duplicates
    # two alerts, one event: one hit, one duplicate
    one = em.match_alerts([Event("fighting", 0, 10)], [Alert("fighting", 2)] * 2, 0)
    assert (len(one.pairs), one.duplicates) == (1, [1])


def test_false_alarms_per_hour_of_event_free_time():
    events = [
        Event("fighting", 100, 200),
        Event("fighting", 150, 400),
        Event("falling", 1000, 1100),
    ]
    alerts = [
        Alert("fighting", 95),  # hit (tolerance 10)
        Alert("fighting", 2000),
        Alert("fighting", 1050),  # during a falling event: a fighting false alarm
        Alert("falling", 3000),
    ]
    per_class, overall = em.event_counts(
        [em.VideoEvents(events, alerts, 3600.0)], ["fighting", "falling"], tolerance=10
    )
    fighting, falling = per_class["fighting"], per_class["falling"]
    # fighting: union of [90, 210] and [140, 410] = 320 s of event time
    assert fighting.event_free_s == pytest.approx(3600 - 320)
    assert falling.event_free_s == pytest.approx(3600 - 120)
    assert overall.event_free_s == pytest.approx(3600 - 440)
    assert (fighting.events, fighting.detected, fighting.false_alarms) == (2, 1, 2)
    assert fighting.fa_per_hour == pytest.approx(2 / (3280 / 3600))
    assert falling.fa_per_hour == pytest.approx(1 / (3480 / 3600))
    assert overall.fa_per_hour == pytest.approx(3 / (3160 / 3600))
    # the fighting alert during the falling event names a real incident wrongly: it is a
    # false alarm, and not one raised on quiet video
    assert (fighting.false_alarms_in_events, falling.false_alarms_in_events) == (1, 0)
    assert overall.false_alarms_in_events == 1
    assert fighting.quiet_fa_per_hour == pytest.approx(1 / (3280 / 3600))
    assert falling.quiet_fa_per_hour == falling.fa_per_hour
    assert overall.quiet_fa_per_hour == pytest.approx(2 / (3160 / 3600))
    assert overall.to_dict()["false_alarms_in_events"] == 1
    late = [em.VideoEvents(events, [Alert("fighting", 1109)], 3600.0)]  # within tolerance
    assert em.event_counts(late, ["fighting", "falling"], 10)[1].false_alarms_in_events == 1
    after = [em.VideoEvents(events, [Alert("fighting", 1111)], 3600.0)]
    assert em.event_counts(after, ["fighting", "falling"], 10)[1].false_alarms_in_events == 0
    assert fighting.recall == 0.5 and falling.recall == 0.0
    assert fighting.precision == pytest.approx(1 / 3) and falling.precision == 0.0
    assert fighting.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert overall.recall == pytest.approx(1 / 3) and overall.precision == pytest.approx(1 / 4)
    assert fighting.latencies == [-5.0]


def test_event_free_time_is_clipped_to_the_video():
    events = [Event("fighting", 0, 5), Event("fighting", 58, 60)]
    assert em.event_free_seconds(events, 60.0, tolerance=2) == pytest.approx(60 - 7 - 4)
    assert em.event_free_seconds([Event("fighting", 0, 60)], 60.0, 2) == 0.0
    counts, _ = em.event_counts(
        [em.VideoEvents([Event("fighting", 0, 60)], [], 60.0)], ["fighting"], 0
    )
    assert counts["fighting"].fa_per_hour is None  # no event-free time to count on
    assert counts["fighting"].precision is None  # no alert


def test_a_class_without_events_in_a_video_has_all_its_time():
    videos = [
        em.VideoEvents([], [], 100.0),
        em.VideoEvents([Event("fighting", 10, 20)], [Alert("falling", 50)], 200.0),
    ]
    per_class, overall = em.event_counts(videos, ["fighting", "falling"], tolerance=0)
    assert per_class["fighting"].event_free_s == 100 + 190
    assert per_class["falling"].event_free_s == 300
    assert overall.event_free_s == 290
    assert (per_class["falling"].alerts, per_class["falling"].false_alarms) == (1, 1)
    assert (per_class["fighting"].events, per_class["fighting"].alerts) == (1, 0)


def test_latency_median_and_p90():
    counts = em.EventCounts(latencies=[4, 1, 10, 3, 2])
    assert counts.latency_median == 3.0
    assert counts.latency_p90 == pytest.approx(7.6)  # 4 + 0.6 * (10 - 4)
    assert em.EventCounts().latency_median is None


def test_auc_and_ap_known_values():
    y, s = [1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]
    assert em.roc_auc(y, s) == pytest.approx(0.75)
    assert em.average_precision(y, s) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert em.roc_auc([1, 0], [0.2, 0.8]) == 0.0
    assert em.average_precision([1, 1, 0], [0.9, 0.8, 0.1]) == 1.0
    assert em.roc_auc([1, 1], [0.1, 0.2]) is None
    assert em.average_precision([0, 0], [0.1, 0.2]) is None


def test_ties_count_half_and_enter_together():
    y, s = [1, 0, 1, 0], [0.5, 0.5, 0.5, 0.1]
    assert em.roc_auc(y, s) == pytest.approx(0.75)
    assert em.average_precision(y, s) == pytest.approx(2 / 3)
    assert em.roc_auc([1, 0, 1, 0], [0.3] * 4) == 0.5
    assert em.average_precision([1, 0, 1, 0], [0.3] * 4) == 0.5
    precision, recall, thresholds = em.precision_recall_curve(y, s)
    assert thresholds.tolist() == [0.5, 0.1]
    assert precision.tolist() == pytest.approx([2 / 3, 0.5]) and recall.tolist() == [1, 1]


def test_auc_matches_pair_counting_on_random_scores():
    rng = np.random.default_rng(0)
    y = rng.random(60) < 0.3
    s = rng.integers(0, 6, 60) / 5  # many ties
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(s[y], s[~y])]
    assert em.roc_auc(y, s) == pytest.approx(np.mean(pairs))


def test_frame_scores_average_the_covering_windows():
    scores = np.array([[0.1], [0.5], [0.9]])
    got = em.frame_scores([0.5, 1.5, 2.0, 3.5, 4.2], [0, 1, 2], [2, 3, 4], scores)
    assert got.ravel().tolist() == pytest.approx([0.1, 0.3, 0.7, 0.9, 0.9])
    truth = em.frame_truth([0.5, 1.0, 2.0, 2.1], [Event("a", 1.0, 2.0)])
    assert truth.tolist() == [False, True, True, False]


def _results(scores, stride=1.0):
    for i, score in enumerate(scores):
        vector = np.array([score, 1 - score, 0.0, 0.0])
        yield WindowResult("v", i, i * stride, 2 + i * stride, [], vector, vector, 1.0, 1.0, 10)


@pytest.mark.parametrize("min_duration, cooldown", [(0, 0), (0, 3), (2, 0), (1.5, 4)])
def test_simulated_alerts_are_those_of_the_alert_engine(min_duration, cooldown):
    rng = np.random.default_rng(1)
    scores = rng.random(80)
    engine = AlertEngine([AlertRule("fighting", 0.4, min_duration, cooldown)], CLASSES)
    expected = [e.time for r in _results(scores) for e in engine.update(r)]
    ends = [2 + i for i in range(80)]
    assert em.simulate_alerts(ends, scores, 0.4, min_duration, cooldown) == expected


def _series():
    """One hour, a window ending every second: low scores, an event at 1000-1010 s scored
    0.9, and three short bumps outside it (0.3 at 500 s, 0.6 at 2000 s, 0.7 at 3000 s)."""
    ends = np.arange(1, 3601, dtype=float)
    scores = np.full(3600, 0.1)
    scores[999:1010] = 0.9
    scores[[499, 1999, 2999]] = [0.3, 0.6, 0.7]
    return [em.ScoreSeries(ends, scores, [Event("fighting", 1000, 1010)], 3600.0)]


@pytest.mark.parametrize(
    "target, min_duration, expected, false_alarms",
    [
        (1.5, 0, 0.7, 1),  # 0.6 leaves 2 false alarms (2.006 per hour)
        (1.0, 0, 0.9, 0),  # one false alarm in 3590 s of event-free time is 1.003 per hour
        (0.0, 0, 0.9, 0),
        (3.5, 0, 0.3, 3),
        (0.0, 2, 0.3, 0),  # the bumps last one window: min_duration hides them
    ],
)
def test_sweep_picks_the_lowest_threshold_meeting_the_target(
    target, min_duration, expected, false_alarms
):
    result = em.sweep_threshold(
        "fighting", _series(), target_fa_per_hour=target, min_duration=min_duration, cooldown=60
    )
    assert result.achieved
    assert result.threshold == pytest.approx(expected)
    assert result.false_alarms == false_alarms
    assert result.recall == 1.0


def test_sweep_counts_false_alarms_over_the_time_free_of_the_shared_classes_events():
    series = _series()
    series[0].events = [Event("fighting", 1000, 1010), Event("falling", 100, 1900)]
    alone = em.sweep_threshold("fighting", series, target_fa_per_hour=1.5, cooldown=60)
    assert alone.threshold == pytest.approx(0.7)  # 1 false alarm in 3590 s: 1.003 / h
    shared = em.sweep_threshold(
        "fighting", series, target_fa_per_hour=1.5, cooldown=60, event_free_labels=["falling"]
    )
    assert shared.threshold == pytest.approx(0.9)  # 1 in 1800 s (falling's out): 2 / h
    assert shared.false_alarms == 0 and shared.fa_per_hour == 0.0
    rules = {"fighting": (0.7, 0.0, 60.0)}
    per_class, overall = em.evaluate_rules({"fighting": series}, rules, tolerance=0.0)
    assert per_class["fighting"].false_alarms == overall.false_alarms == 1
    assert overall.event_free_s == pytest.approx(3590)  # falling has no rule: not left out


def test_sweep_without_any_acceptable_threshold_and_candidates():
    ends, scores = np.arange(1.0, 11.0), np.full(10, 1.0)
    series = [em.ScoreSeries(ends, scores, [], 10.0)]
    result = em.sweep_threshold("fighting", series, target_fa_per_hour=0.0, cooldown=0)
    assert not result.achieved and result.threshold == 1.0
    assert em.candidate_thresholds(np.array([0.2, 0.2, 0.5])).tolist() == [
        0.2,
        0.5,
        np.nextafter(0.5, 1),
    ]
    assert len(em.candidate_thresholds(np.linspace(0, 0.9, 5000), 100)) == 101


def test_swept_rules_are_read_back_by_load_rules(tmp_path):
    threshold = float(np.nextafter(0.7, 1))  # the exact float survives the file
    document = em.rules_document({"fighting": (threshold, 2.0, 30.0), "falling": (0.25, 0, 60)})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert load_rules(path) == [
        AlertRule("fighting", threshold, 2.0, 30.0),
        AlertRule("falling", 0.25, 0.0, 60.0),
    ]


def _point(threshold: float, false_alarms: int, detected: int) -> em.CurvePoint:
    return em.CurvePoint(
        threshold, em.EventCounts(events=3, detected=detected, false_alarms=false_alarms)
    )


def test_the_false_alarm_budget_goes_where_it_detects_the_most_events():
    """Fighting detects 2 events for 2 false alarms, falling 1 for 1: with a budget of 2,
    an even split (1 each) detects 1 event, the knapsack 2; with 3, both get theirs."""
    curves = {
        "fighting": [_point(0.9, 0, 0), _point(0.6, 1, 0), _point(0.5, 2, 2), _point(0.4, 5, 3)],
        "falling": [_point(0.8, 0, 0), _point(0.45, 1, 1), _point(0.3, 4, 2)],
    }
    picks = em.allot_false_alarms(curves, 2)
    assert {label: point.threshold for label, point in picks.items()} == {
        "fighting": 0.5,
        "falling": 0.8,
    }
    picks = em.allot_false_alarms(curves, 3)
    assert [picks["fighting"].threshold, picks["falling"].threshold] == [0.5, 0.45]
    # nothing to gain from a false alarm: none is spent, and the highest threshold is kept
    flat = {"fighting": [_point(0.9, 0, 1), _point(0.7, 0, 1), _point(0.5, 1, 1)]}
    assert em.allot_false_alarms(flat, 4)["fighting"].threshold == 0.9
    # the same events for fewer false alarms win over a higher threshold
    assert (
        em.allot_false_alarms({"fighting": [_point(0.9, 2, 1), _point(0.7, 1, 1)]}, 2)[
            "fighting"
        ].threshold
        == 0.7
    )


def test_a_class_that_cannot_keep_within_the_budget_takes_its_fewest_false_alarms():
    curves = {
        "fighting": [_point(1.0, 3, 2), _point(0.8, 5, 3)],  # scores of 1.0 outside events
        "falling": [_point(0.8, 0, 0), _point(0.45, 1, 1)],
    }
    picks = em.allot_false_alarms(curves, 2)
    assert picks["fighting"].threshold == 1.0  # 3 false alarms: the budget is spent
    assert picks["falling"].threshold == 0.8


def test_a_threshold_curve_runs_down_to_the_first_point_over_the_budget():
    curve = em.threshold_curve("fighting", _series(), max_false_alarms=1, cooldown=60)
    # above 0.9: nothing; 0.9: the event; 0.7: one bump; 0.6: two (over, and the last)
    assert [p.threshold for p in curve] == pytest.approx([np.nextafter(0.9, 1), 0.9, 0.7, 0.6])
    assert [(p.false_alarms, p.detected) for p in curve] == [(0, 0), (0, 1), (1, 1), (2, 1)]


def test_top_class_scores_zero_the_ruled_classes_below_the_top():
    scores = np.array([[0.2, 0.7, 0.1, 0.9], [0.5, 0.5, 0.3, 0.0], [0.1, 0.2, 0.6, 0.0]])
    gated = em.top_class_scores(scores, [0, 1, 2])  # column 3 has no rule: kept, ignored
    expected = [[0.0, 0.7, 0.0, 0.9], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.6, 0.0]]
    np.testing.assert_array_equal(gated, expected)  # a tie keeps both
    np.testing.assert_array_equal(scores[0], [0.2, 0.7, 0.1, 0.9])  # the input is untouched
    assert em.top_class_scores(np.zeros((0, 4)), [0, 1]).shape == (0, 4)
