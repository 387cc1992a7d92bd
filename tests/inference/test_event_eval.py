"""``rsanet eval-events`` end to end: tiny generated recordings with an intervals file, an
untrained rsanet_tiny checkpoint (structure only), and a stub model whose scores follow the
pixels (exact numbers, through the command's own code path)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import rsanet.cli
from rsanet.data.events import EventInterval as Event
from rsanet.inference import AlertEngine, AlertRule, Predictor, WindowResult, load_rules
from rsanet.inference import event_metrics as em
from rsanet.inference.alerts import parse_rules
from rsanet.inference.event_eval import NO_EVENT, EventEvaluation, VideoRun
from support.inference import CLASSES, encode

FPS = 10


def recording(path, seconds: float, bright: list[tuple[float, float]] = ()):
    """A 32 x 32 video at 10 fps: dark, bright during each ``bright`` span [a, b)."""
    frames = np.full((round(seconds * FPS), 32, 32, 3), 30, np.uint8)
    for a, b in bright:
        frames[round(a * FPS) : round(b * FPS)] = 220
    return encode(path, frames, fps=FPS)


@pytest.fixture
def run_cli(monkeypatch, capsys):
    monkeypatch.setattr(rsanet.cli, "COMMAND_MODULES", ["eval", "eval_events"])

    def run(*args: object) -> SimpleNamespace:
        code = rsanet.cli.main([str(a) for a in args])
        captured = capsys.readouterr()
        return SimpleNamespace(code=code, out=captured.out, err=captured.err)

    return run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """a.mp4 (8 s, bright 2-4 s annotated and 6-7 s not), b.mp4 (4 s, dark, an event at
    1-2 s), broken.mp4 (not a video), and intervals.csv listing the three."""
    root = tmp_path_factory.mktemp("recordings")
    recording(root / "a.mp4", 8, [(2, 4), (6, 7)])
    recording(root / "b.mp4", 4)
    (root / "broken.mp4").write_bytes(b"not a video at all" * 10)
    (root / "intervals.csv").write_text(
        "video,label,start_s,end_s\n"
        "a.mp4,fighting,2.0,4.0\n"
        "b.mp4,fighting,1.0,2.0\n"
        "broken.mp4,falling,0.5,1.0\n"
    )
    rules = root / "rules.yaml"
    rules.write_text("rules:\n  fighting: {threshold: 0.5, min_duration: 0, cooldown: 3}\n")
    return SimpleNamespace(root=root, csv=root / "intervals.csv", rules=rules)


def test_eval_help_points_at_eval_events(run_cli, capsys):
    with pytest.raises(SystemExit):
        run_cli("eval", "--help")
    assert "rsanet eval-events --help" in " ".join(capsys.readouterr().out.split())


def test_untrained_checkpoint_structure(run_cli, data, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    result = run_cli(
        "eval-events",
        checkpoint,
        "--format",
        "intervals",
        "--annotations",
        data.csv,
        "--root",
        data.root,
        "--size",
        32,
        "--window-seconds",
        2,
        "--target-fa-per-hour",
        1000,
        "--out",
        out,
    )
    assert result.code == 1, result.err  # one recording failed, the others were evaluated
    report = json.loads((out / "events.json").read_text())
    assert [v["path"].rsplit("/", 1)[-1] for v in report["videos"]] == [
        "a.mp4",
        "b.mp4",
        "broken.mp4",
    ]
    assert len(report["failures"]) == 1 and "broken.mp4" in report["failures"][0]["path"]
    assert set(report["event"]["classes"]) == set(CLASSES)  # none is named normal
    assert report["event"]["overall"]["events"] == 2  # the broken video's event is out
    for video in report["videos"][:2]:
        assert video["decode_passes"] == 1 and video["windows"] > 0
        assert video["frames"] == round(video["duration_s"] * FPS)
    assert report["frame"]["frames"] == 120
    assert report["speed"]["decode_passes_per_video"] == 1
    assert len(list((out / "timelines").glob("*.png"))) == 2
    assert (out / "pr_curve.png").stat().st_size > 0
    assert "**overall**" in (out / "events.md").read_text()
    rules = load_rules(out / "rules.yaml")
    # only fighting has an event in the recordings evaluated (falling's is in the broken
    # one): the other classes get no rule, and the whole budget is fighting's
    assert [rule.label for rule in rules] == ["fighting"]
    assert all(rule.cooldown == 60 for rule in rules)  # the default rules' timing is kept
    sweep = report["sweep"]
    assert (sweep["target_fa_per_hour"], sweep["per_class_fa_per_hour"]) == (1000, 1000)
    assert list(sweep["classes"]) == ["fighting"]
    assert list(sweep["without_rule"]) == ["falling", "loitering", "walking"]
    assert "| fighting |" in result.out
    assert "| loitering | no rule: no event of this class in these recordings |" in result.out


class PixelModel:
    """Logits that follow the pixels: 'fighting' when every sampled frame is bright,
    'walking' otherwise."""

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        bright = bool((clip.mean(dim=(1, 3, 4)) > 0).all())
        logits = torch.zeros(1, len(CLASSES))
        logits[0, 0 if bright else 3] = 5.0  # scores 0.98 and 0.0066
        return logits


def test_exact_numbers_with_a_stub_model(run_cli, data, monkeypatch, tmp_path):
    import rsanet.cli.eval_events as command

    def stub(args, stream):
        return Predictor(PixelModel(), CLASSES, num_frames=4, size=32, smoothing=stream.smoothing)

    monkeypatch.setattr(command, "build_predictor", stub)
    out = tmp_path / "out"
    result = run_cli(
        "eval-events",
        "unused.pt",
        "--format",
        "intervals",
        "--annotations",
        data.csv,
        "--root",
        data.root,
        "--rules",
        data.rules,
        "--window-seconds",
        1,
        "--stride-seconds",
        0.5,
        "--smoothing",
        1,
        "--tolerance",
        0.5,
        "--normal-class",
        "walking",
        "--target-fa-per-hour",
        0,
        "--budget-split",
        "recall",
        "--out",
        out,
        "--json",
    )
    assert result.code == 1, result.err
    report = json.loads(result.out)
    assert report == json.loads((out / "events.json").read_text())
    a, b, broken = report["videos"]
    # windows [e - 1, e) every 0.5 s; all four sampled frames are bright for e = 3.0, 3.5,
    # 4.0 (fires at 3.0; cooldown 3 s) and e = 7.0 (fires: a false alarm)
    assert [(x["time"], x["outcome"]) for x in a["alerts"]] == [
        (pytest.approx(3.0), "hit"),
        (pytest.approx(7.0), "false_alarm"),
    ]
    assert (a["windows"], a["duration_s"], b["alerts"], b["missed"]) == (15, 8.0, [], 1)
    assert broken["error"]
    fighting = report["event"]["classes"]["fighting"]
    # every evaluated class is scored, with or without a rule (no falling event: no recall)
    assert set(report["event"]["classes"]) == {"fighting", "falling", "loitering"}
    assert report["event"]["classes"]["falling"]["events"] == 0
    # event-free time: 8 - 3 s (a: [1.5, 4.5]) + 4 - 2 s (b: [0.5, 2.5]) = 7 s
    assert fighting["event_free_hours"] == pytest.approx(7 / 3600)
    assert fighting["fa_per_hour"] == pytest.approx(3600 / 7)
    assert (fighting["recall"], fighting["precision"], fighting["f1"]) == (0.5, 0.5, 0.5)
    assert fighting["latency_median_s"] == pytest.approx(1.0)
    assert fighting["latency_p90_s"] == pytest.approx(1.0)
    assert report["event"]["overall"]["fa_per_hour"] == pytest.approx(3600 / 7)
    # frames: 10 positives scored high (both windows bright), 10 mid (one of two), 12 low;
    # negatives: 10 mid (a, 6-7 s) and 78 low. AUC = (10*88 + 10*(78 + 5) + 12*39) / (32*88)
    frame = report["frame"]
    assert frame["frames"] == 120
    assert set(frame["classes"]) == {"fighting", "falling", "loitering"}
    assert frame["classes"]["fighting"]["positive_frames"] == 32
    assert frame["classes"]["fighting"]["auc"] == pytest.approx(2178 / 2816)
    ap = 10 / 32 + (10 / 32) * (2 / 3) + (12 / 32) * (32 / 120)
    assert frame["classes"]["fighting"]["ap"] == pytest.approx(ap)
    assert frame["overall"]["auc"] == pytest.approx(2178 / 2816)  # max over the three
    assert frame["classes"]["falling"]["ap"] is None  # no falling event was evaluated
    # the sweep: no false alarm at all needs a threshold above the bright score
    assert report["sweep"]["split"] == "recall"
    assert "spent where it detects the most events" in (out / "events.md").read_text()
    sweep = report["sweep"]["classes"]["fighting"]
    assert sweep["achieved"] and sweep["false_alarms"] == 0 and sweep["recall"] == 0.0
    rules = load_rules(out / "rules.yaml")
    assert rules == [AlertRule("fighting", sweep["threshold"], 0.0, 3.0)]
    assert sweep["threshold"] > a["alerts"][0]["score"] - 1e-6
    # every window's scores, kept for analysis without the network (no pickles)
    assert report["files"]["window_scores"] == str(out / "window_scores.npz")
    stored = np.load(out / "window_scores.npz", allow_pickle=False)
    assert list(stored["classes"]) == CLASSES
    assert list(stored["videos"]) == [x["path"] for x in report["videos"]]
    assert list(stored["durations"][:2]) == [8.0, b["duration_s"]]
    assert np.bincount(stored["video"], minlength=3).tolist() == [15, b["windows"], 0]
    assert stored["scores"].shape == (15 + b["windows"], len(CLASSES))
    first = stored["video"] == 0
    assert stored["ends"][first].tolist() == pytest.approx(np.arange(1.0, 8.5, 0.5).tolist())
    assert (stored["ends"] - stored["starts"]).tolist() == pytest.approx(
        [1.0] * 15 + [1.0] * b["windows"]
    )
    fire = stored["scores"][first][stored["ends"][first] == 3.0, CLASSES.index("fighting")]
    assert fire.tolist() == pytest.approx([a["alerts"][0]["score"]], abs=1e-6)
    assert list(zip(stored["event_video"], stored["event_label"], strict=True)) == [
        (0, "fighting"),
        (1, "fighting"),
        (2, "falling"),
    ]
    assert stored["event_span"].tolist() == [[2.0, 4.0], [1.0, 2.0], [0.5, 1.0]]


def _calibration(labels: list[str], events: list[Event]) -> tuple[EventEvaluation, VideoRun]:
    """A rule (threshold 0.5, cooldown 60 s) for each of ``labels`` and one hour of windows
    ending every second: every class scores 0.1, 0.9 during its events, and 0.6 in one
    window outside them (at 2000 s, 2500 s, 3000 s, 3500 s for the classes in order), which
    the lowest passing threshold lets through as exactly one false alarm."""
    scores = np.full((3600, len(CLASSES)), 0.1)
    for event in events:
        scores[round(event.start_s) - 1 : round(event.end_s), CLASSES.index(event.label)] = 0.9
    for column in range(len(CLASSES)):
        scores[1999 + 500 * column, column] = 0.6
    run = VideoRun(
        "calibration.mp4",
        tuple(events),
        ends=list(np.arange(1.0, 3601.0)),
        scores=list(scores),
        duration_s=3600.0,
    )
    predictor = SimpleNamespace(classes=CLASSES, smoothing=1, num_frames=8, size=64)
    rules = [AlertRule(label, 0.5, 0.0, 60.0) for label in labels]
    return EventEvaluation(predictor, window=1.0, stride=1.0, rules=rules), run


def _overall_fa_per_hour(document: dict, run: VideoRun) -> float:
    """False alarms per hour of event-free time of a rules document's rules together."""
    rules = parse_rules(document)
    alerts = [
        SimpleNamespace(label=rule.label, time=t)
        for rule in rules
        for t in em.simulate_alerts(
            run.ends,
            run.score_matrix[:, CLASSES.index(rule.label)],
            rule.threshold,
            rule.min_duration,
            rule.cooldown,
        )
    ]
    video = em.VideoEvents(run.events, alerts, run.duration_s)
    return em.event_counts([video], [rule.label for rule in rules], 0.0)[1].fa_per_hour


@pytest.mark.parametrize(
    "labels, target",
    [
        (["fighting", "falling"], 1.5),  # one false alarm (1.006 / h) fits, two do not
        (["fighting", "falling", "loitering"], 2.5),  # two fit, three do not
    ],
)
def test_the_sweep_splits_the_budget_evenly_over_the_rules(labels, target):
    events = [Event(label, 1000 + 100 * i, 1010 + 100 * i) for i, label in enumerate(labels)]
    evaluation, run = _calibration(labels, events)
    sweep = evaluation.sweep([run], target, tolerance=0.0)
    share = target / len(labels)
    assert (sweep["target_fa_per_hour"], sweep["per_class_fa_per_hour"]) == (target, share)
    assert list(sweep["classes"]) == labels and sweep["without_rule"] == {}
    for label in labels:
        result = sweep["classes"][label]
        assert result["achieved"] and result["fa_per_hour"] <= share
        assert result["target_fa_per_hour"] == share
        # one false alarm would exceed the share: the rule waits for the event's 0.9
        assert result["threshold"] == pytest.approx(0.9) and result["recall"] == 1.0
    overall = _overall_fa_per_hour(sweep["rules"], run)
    assert overall <= target and overall == pytest.approx(sweep["overall"]["fa_per_hour"])
    assert sweep["overall"]["achieved"] and sweep["overall"]["recall"] == 1.0
    # each class given the whole budget (as the sweep once did) lets every bump through:
    # len(labels) false alarms, more than the budget allows
    whole = {}
    for label in labels:
        series = [
            em.ScoreSeries(run.ends, run.score_matrix[:, CLASSES.index(label)], events, 3600.0)
        ]
        alone = em.sweep_threshold(label, series, target_fa_per_hour=target, cooldown=60.0)
        whole[label] = (alone.threshold, 0.0, 60.0)
    assert _overall_fa_per_hour(em.rules_document(whole), run) > target


def test_a_class_without_calibration_events_gets_no_rule():
    labels = ["fighting", "falling", "loitering"]
    evaluation, run = _calibration(
        labels, [Event("fighting", 1000, 1010), Event("falling", 1100, 1110)]
    )
    run.scores[100][CLASSES.index("loitering")] = 1.0  # loitering scores high, never annotated
    sweep = evaluation.sweep([run], 4.0, tolerance=0.0)
    assert (sweep["target_fa_per_hour"], sweep["per_class_fa_per_hour"]) == (4.0, 2.0)
    assert list(sweep["classes"]) == ["fighting", "falling"]
    assert sweep["without_rule"] == {"loitering": NO_EVENT}
    rules = parse_rules(sweep["rules"])
    assert [rule.label for rule in rules] == ["fighting", "falling"]
    # each class's share lets its one false alarm (1.006 / h) through
    assert [rule.threshold for rule in rules] == pytest.approx([0.6, 0.6])
    # with no rule, the alert engine never fires for loitering, however high it scores
    engine = AlertEngine(rules, CLASSES)
    fired = [
        alert.label
        for i, (end, scores) in enumerate(zip(run.ends, run.scores, strict=True))
        for alert in engine.update(
            WindowResult("v", i, end - 1.0, end, [], scores, scores, 0.0, 0.0, 10)
        )
    ]
    assert "loitering" not in fired and {"fighting", "falling"} <= set(fired)


def _replay(rules: list[AlertRule], run: VideoRun) -> em.EventCounts:
    """The overall counts of ``rules`` fired by the alert engine over ``run``'s windows."""
    engine = AlertEngine(rules, CLASSES)
    alerts = [
        alert
        for i, (end, scores) in enumerate(zip(run.ends, run.scores, strict=True))
        for alert in engine.update(
            WindowResult("v", i, end - 1.0, end, [], scores, scores, 0.0, 0.0, 10)
        )
    ]
    video = em.VideoEvents(run.events, alerts, run.duration_s)
    return em.event_counts([video], [rule.label for rule in rules], 0.0)[1]


def _fighting_and_falling(
    falling: dict[Iterable[int], float],
) -> tuple[EventEvaluation, VideoRun]:
    """:func:`_calibration` of a fighting event at 1000-1010 s and a falling one at
    1100-1110 s, with falling's score set to each value of ``falling`` in its windows."""
    events = [Event("fighting", 1000, 1010), Event("falling", 1100, 1110)]
    evaluation, run = _calibration(["fighting", "falling"], events)
    for windows, value in falling.items():
        for i in windows:
            run.scores[i][CLASSES.index("falling")] = value
    return evaluation, run


def test_the_sweep_calibrates_top_class_rules_as_the_engine_fires_them():
    """Falling also rises to 0.8 during the fighting event, and scores only 0.7 during its
    own: a falling rule low enough to detect its event also fires during the fight, a false
    alarm the budget (1.5 / h split evenly: none per class) cannot pay. With top_class,
    fighting (0.9) silences falling there, and the rule can wait at 0.7."""
    labels = ["fighting", "falling"]
    evaluation, run = _fighting_and_falling({range(999, 1010): 0.8, range(1099, 1110): 0.7})
    plain = evaluation.sweep([run], 1.5, tolerance=0.0)
    assert plain["overall"]["detected"] == 1 and plain["overall"]["false_alarms"] == 0
    assert plain["classes"]["falling"]["threshold"] > 0.8
    evaluation.rules = [AlertRule(label, 0.5, 0.0, 60.0, top_class=True) for label in labels]
    top = evaluation.sweep([run], 1.5, tolerance=0.0)
    assert top["overall"]["detected"] == 2 and top["overall"]["false_alarms"] == 0
    assert top["classes"]["falling"]["threshold"] == pytest.approx(0.7)
    rules = parse_rules(top["rules"])
    assert [(rule.label, rule.top_class) for rule in rules] == [(x, True) for x in labels]
    assert "top_class" not in plain["rules"]["rules"]["falling"]  # files as before
    # the alert engine, reading the written rules, fires exactly what the sweep counted
    replayed = _replay(rules, run)
    assert (replayed.detected, replayed.false_alarms) == (2, 0)
    without = [AlertRule(r.label, r.threshold, r.min_duration, r.cooldown) for r in rules]
    assert _replay(without, run).false_alarms == 1  # the same thresholds, not top_class


@pytest.mark.parametrize("split", ["even", "recall"])
def test_the_sweep_picks_minimum_durations_that_let_thresholds_fall(split):
    """Falling's event scores only 0.6 for 11 windows, and three single windows outside it
    score 0.6, 0.7, 0.7. Without a minimum duration its rule must stay above 0.7 and
    misses the event. Allowed 2 s, the rule ignores the single windows and waits at 0.6;
    fighting's event (0.9) needs no minimum duration, and keeps the shortest."""
    evaluation, run = _fighting_and_falling({range(1099, 1110): 0.6, (2999, 3099): 0.7})
    fixed = evaluation.sweep([run], 1.5, tolerance=0.0, split=split)
    assert fixed["min_durations"] is None
    assert fixed["overall"]["detected"] == 1 and fixed["overall"]["false_alarms"] == 0
    assert fixed["classes"]["falling"]["min_duration"] == 0.0  # the rule's own
    swept = evaluation.sweep([run], 1.5, tolerance=0.0, split=split, min_durations=[0, 2])
    assert swept["min_durations"] == [0, 2]
    assert swept["overall"]["detected"] == 2 and swept["overall"]["false_alarms"] == 0
    falling_result = swept["classes"]["falling"]
    assert falling_result["min_duration"] == 2 and falling_result["threshold"] == pytest.approx(0.6)
    assert swept["classes"]["fighting"]["min_duration"] == 0  # ties go to the shortest
    rules = parse_rules(swept["rules"])
    assert [(rule.label, rule.min_duration) for rule in rules] == [("fighting", 0), ("falling", 2)]
    replayed = _replay(rules, run)  # the engine fires what the sweep counted
    assert (replayed.detected, replayed.false_alarms) == (2, 0)
    report = evaluation.report(
        [run], tolerance=0.0, target_fa_per_hour=1.5, split=split, min_durations=[0, 2]
    )
    assert report["sweep"] == swept  # the report passes them on


def test_the_sweep_refuses_recordings_without_events():
    evaluation, run = _calibration(["fighting", "falling"], [Event("walking", 10, 20)])
    with pytest.raises(ValueError, match=r"hold no events \(of fighting, falling\)"):
        evaluation.sweep([run], 2.0, tolerance=0.0)


def _stub_predictor(monkeypatch) -> None:
    import rsanet.cli.eval_events as command

    def stub(args, stream):
        return Predictor(PixelModel(), CLASSES, num_frames=4, size=32, smoothing=stream.smoothing)

    monkeypatch.setattr(command, "build_predictor", stub)


def test_a_sweep_without_calibration_events_fails_in_one_line(run_cli, data, monkeypatch, tmp_path):
    _stub_predictor(monkeypatch)
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  loitering: 0.5\n  walking: 0.5\n")  # no event of either
    args = ["eval-events", "unused.pt", "--format", "intervals", "--annotations", data.csv,
            "--root", data.root, "--rules", rules, "--target-fa-per-hour", 2,
            "--out", tmp_path / "out", "--no-figures"]  # fmt: skip
    result = run_cli(*args)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert f"error: {data.csv}: the calibration recordings hold no events" in result.err
    assert "loitering, walking" in result.err
    assert not (tmp_path / "out").exists()  # refused before decoding anything
    # falling's only event is in the recording that cannot be decoded: the evaluation is
    # written, then the same one-line error
    rules.write_text("rules:\n  falling: 0.5\n")
    result = run_cli(*args)
    assert result.code == 2 and result.err.strip().splitlines()[-1].startswith(
        f"rsanet eval-events: error: {data.csv}: the calibration recordings hold no events"
    )
    report = json.loads((tmp_path / "out" / "events.json").read_text())
    assert report["sweep"] is None and not (tmp_path / "out" / "rules.yaml").exists()


def test_top_class_and_min_durations_options(run_cli, data, monkeypatch, tmp_path):
    _stub_predictor(monkeypatch)
    out = tmp_path / "out"
    result = run_cli(
        "eval-events", "unused.pt", "--format", "intervals", "--annotations", data.csv,
        "--root", data.root, "--rules", data.rules, "--top-class", "--window-seconds", 1,
        "--target-fa-per-hour", 2, "--min-durations", 0, 1.5, "--out", out, "--no-figures",
        "--json",
    )  # fmt: skip
    assert result.code == 1  # broken.mp4
    report = json.loads(result.out)
    assert [rule["top_class"] for rule in report["settings"]["rules"]] == [True]
    assert [rule.top_class for rule in load_rules(out / "rules.yaml")] == [True]
    assert report["sweep"]["min_durations"] == [0.0, 1.5]
    assert report["sweep"]["classes"]["fighting"]["min_duration"] in (0.0, 1.5)
    assert "| min duration (s) |" in (out / "events.md").read_text()


def test_usage_errors(run_cli, data, tmp_path):
    result = run_cli(
        "eval-events", "x.pt", "--format", "intervals", "--annotations", data.csv,
        "--rules-out", tmp_path / "r.yaml",
    )  # fmt: skip
    assert result.code == 2 and "--rules-out needs --target-fa-per-hour" in result.err
    result = run_cli(
        "eval-events", "x.pt", "--format", "intervals", "--annotations", data.csv,
        "--budget-split", "recall",
    )  # fmt: skip
    assert result.code == 2 and "--budget-split needs --target-fa-per-hour" in result.err
    result = run_cli(
        "eval-events", "x.pt", "--format", "intervals", "--annotations", data.csv,
        "--min-durations", 0, 2,
    )  # fmt: skip
    assert result.code == 2 and "--min-durations needs --target-fa-per-hour" in result.err
    result = run_cli(
        "eval-events", "x.pt", "--format", "intervals", "--annotations", data.csv,
        "--out", tmp_path, "--rules", tmp_path / "missing.yaml",
    )  # fmt: skip
    assert result.code == 2 and "missing.yaml" in result.err


def test_formats_match_the_readers():
    from rsanet.cli.eval_events import FORMATS
    from rsanet.data.untrimmed import UNTRIMMED_FORMATS

    assert set(FORMATS) == set(UNTRIMMED_FORMATS)


def test_events_of_a_class_without_a_rule_are_missed_not_left_out():
    """Rules for fighting only; a falling event in the footage still counts: recall 1/2."""
    events = [Event("fighting", 1000, 1010), Event("falling", 1100, 1110)]
    evaluation, run = _calibration(["fighting"], events)
    evaluation.predictor = SimpleNamespace(classes=CLASSES, smoothing=1, num_frames=4, size=32)
    run.alerts = [SimpleNamespace(label="fighting", time=1001.0, score=0.9)]
    report = evaluation.report([run], tolerance=0.0)
    overall, falling = report["event"]["overall"], report["event"]["classes"]["falling"]
    assert (overall["events"], overall["detected"], overall["recall"]) == (2, 1, 0.5)
    assert (falling["events"], falling["detected"]) == (1, 0)
    assert report["videos"][0]["missed"] == 1


def test_the_recall_split_spends_the_budget_on_the_class_it_helps():
    """Falling's event scores only 0.6, as high as its bump: detecting it costs one false
    alarm. Fighting's events score 0.9 above its 0.6 bump: they cost nothing. With a budget
    of one false alarm in the hour, the even split (half each) detects fighting only, the
    recall split gives falling the false alarm and detects both."""
    labels = ["fighting", "falling"]
    events = [Event("fighting", 1000, 1010), Event("falling", 1100, 1110)]
    evaluation, run = _calibration(labels, events)
    run.scores[1099:1110] = [
        np.where(np.arange(len(CLASSES)) == CLASSES.index("falling"), 0.6, s)
        for s in run.scores[1099:1110]
    ]
    even = evaluation.sweep([run], 1.5, tolerance=0.0)
    assert even["overall"]["detected"] == 1 and even["overall"]["false_alarms"] == 0
    split = evaluation.sweep([run], 1.5, tolerance=0.0, split="recall")
    assert split["split"] == "recall" and split["per_class_fa_per_hour"] is None
    assert split["overall"]["detected"] == 2 and split["overall"]["false_alarms"] == 1
    assert split["overall"]["achieved"]
    falling = split["classes"]["falling"]
    assert falling["threshold"] == pytest.approx(0.6) and falling["false_alarms"] == 1
    assert split["classes"]["fighting"]["false_alarms"] == 0
    assert _overall_fa_per_hour(split["rules"], run) == pytest.approx(
        split["overall"]["fa_per_hour"]
    )
    with pytest.raises(ValueError, match="split must be one of even, recall"):
        evaluation.sweep([run], 1.5, tolerance=0.0, split="greedy")
