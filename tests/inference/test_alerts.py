"""Alert rules: parsing, thresholds with minimum duration and cooldown, the JSON-lines log,
the webhook, and ``rsanet predict --rules`` on a real clip."""

from __future__ import annotations

import json

import pytest

from rsanet.inference import (
    AlertEngine,
    AlertRule,
    Backoff,
    EventLog,
    NonFiniteScoresError,
    RulesError,
    WebhookSink,
    load_rules,
    parse_rules,
)
from support.inference import CLASSES, fire, rules_file, window


def test_rules_files_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "rules.yaml"
    yaml_file.write_text(
        "defaults: {cooldown: 30}\n"
        "rules:\n"
        "  fighting: {threshold: 0.6, min_duration: 2}\n"
        "  falling: 0.7\n"
        "  loitering:\n"
    )
    assert load_rules(yaml_file) == [
        AlertRule("fighting", 0.6, 2.0, 30.0),
        AlertRule("falling", 0.7, 0.0, 30.0),
        AlertRule("loitering", 0.5, 0.0, 30.0),
    ]
    json_file = tmp_path / "rules.json"
    json_file.write_text(json.dumps({"rules": [{"class": "walking", "threshold": 0.9}]}))
    assert load_rules(json_file) == [AlertRule("walking", 0.9, 0.0, 60.0)]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"rules": {"fighting": {"treshold": 0.5}}}, "unknown key"),
        ({"rules": {"fighting": {"threshold": 1.5}}}, "threshold is a probability"),
        ({"rules": {"fighting": {"cooldown": -1}}}, "cooldown must be >= 0"),
        ({"rules": {"fighting": {"threshold": "high"}}}, "threshold must be a number"),
        ({"rules": {"fighting": {"top_class": "yes"}}}, "top_class must be true or false"),
        ({"defaults": {"top_class": 1}, "rules": {"fighting": 0.5}}, "must be true or false"),
        ({"rules": [{"threshold": 0.5}]}, "needs a 'class' name"),
        ({"rules": {}}, "no rules"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_rules(data, message):
    with pytest.raises(RulesError, match=message):
        parse_rules(data)


def test_unknown_class_and_unreadable_file(tmp_path):
    with pytest.raises(RulesError, match="no class 'figting' \\(did you mean 'fighting'"):
        AlertEngine([AlertRule("figting", 0.5)], CLASSES)
    broken = tmp_path / "rules.yaml"
    broken.write_text("rules: {fighting: [unclosed\n")
    with pytest.raises(RulesError, match="rules.yaml: not valid yaml"):
        load_rules(broken)
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")


def test_threshold_minimum_duration_and_cooldown():
    engine = AlertEngine([AlertRule("fighting", 0.6, min_duration=2, cooldown=5)], CLASSES)
    #          end: 2    3    4    5    6    7    8    9    10   11   12   13
    scores = [0.7, 0.9, 0.5, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    events = fire(engine, scores)
    # the run from 5 s reaches 2 s at 7 s; high scores go on, so it fires again at 12 s
    assert [(e.start, e.time, e.window) for e in events] == [(5.0, 7.0, 5), (5.0, 12.0, 10)]
    assert events[0].score == pytest.approx(0.9) and events[0].duration == 2.0
    record = events[0].to_dict()
    assert record["type"] == "alert" and record["label"] == "fighting"
    assert record["threshold"] == 0.6 and record["source"] == "cam" and record["wall_time"]


def test_top_class_rules_stay_quiet_while_another_ruled_class_scores_higher():
    rules = parse_rules(
        {
            "defaults": {"threshold": 0.3, "cooldown": 0, "top_class": True},
            "rules": {"fighting": None, "falling": {"top_class": False}},
        }
    )
    assert [rule.top_class for rule in rules] == [True, False]
    # falling scores 1 - fighting: fighting is the top class in windows 1 and 3 only
    scores = [0.4, 0.6, 0.45, 0.7]
    fired = [(e.label, e.window) for e in fire(AlertEngine(rules, CLASSES), scores)]
    assert [w for label, w in fired if label == "fighting"] == [1, 3]
    assert [w for label, w in fired if label == "falling"] == [0, 1, 2, 3]  # not top_class
    # a window where another class is on top breaks a run, as a low score does
    held = [AlertRule("fighting", 0.3, min_duration=1, cooldown=0, top_class=True), rules[1]]
    assert [e for e in fire(AlertEngine(held, CLASSES), scores) if e.label == "fighting"] == []
    # only classes with a rule compete: alone, the fighting rule fires in every window
    alone = AlertEngine([rules[0]], CLASSES)
    assert [e.window for e in fire(alone, scores)] == [0, 1, 2, 3]


def test_a_single_window_fires_without_minimum_duration_and_reset_clears_runs():
    engine = AlertEngine([AlertRule("fighting", 0.5, min_duration=1, cooldown=0)], CLASSES)
    assert fire(engine, [0.6]) == []
    engine.reset()  # an outage: the run starts again
    assert fire(engine, [0.6]) == []
    instant = AlertEngine([AlertRule("fighting", 0.5, cooldown=0)], CLASSES)
    assert len(fire(instant, [0.6, 0.4, 0.6])) == 2


def test_event_log_and_webhook(tmp_path, http_server):
    engine = AlertEngine([AlertRule("fighting", 0.5, cooldown=0)], CLASSES)
    events = fire(engine, [0.8, 0.9, 0.2])
    log = EventLog(tmp_path / "events" / "alerts.jsonl")
    server = http_server()
    hook = WebhookSink(server.url + "/alerts")
    for event in events:
        log.write(event)
        hook.write(event)
    log.close()
    hook.close()
    lines = [
        json.loads(x) for x in (tmp_path / "events" / "alerts.jsonl").read_text().split("\n") if x
    ]
    assert [x["time"] for x in lines] == [2.0, 3.0]
    assert [json.loads(body) for body in server.server.posts] == lines
    assert (hook.sent, hook.failed) == (2, 0)


def test_webhook_failures_are_counted_not_fatal(closed_port):
    engine = AlertEngine([AlertRule("fighting", 0.5)], CLASSES)
    hook = WebhookSink(
        f"http://127.0.0.1:{closed_port}/alerts",
        timeout=1,
        retries=1,
        backoff=Backoff(initial=0.01),
    )
    hook.write(fire(engine, [0.9])[0])
    hook.close()
    assert (hook.sent, hook.failed, hook.retried, hook.lost) == (0, 1, 1, 1)
    with pytest.raises(ValueError, match="must start with http"):
        WebhookSink("ftp://127.0.0.1/alerts")


def test_non_finite_scores_are_an_error_never_an_alert():
    engine = AlertEngine([AlertRule("fighting", 0.5, cooldown=0)], CLASSES)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(NonFiniteScoresError, match="not a number the rules can compare"):
            engine.update(window(0, 2.0, bad))
    assert engine.fired == 0


def test_cli_rules_events_and_webhook(cli, fighting_checkpoint, bikes, tmp_path, http_server):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  fighting: {threshold: 0.9, min_duration: 2, cooldown: 4}\n"
        "  falling: {threshold: 0.5}\n"
    )
    events = tmp_path / "events.jsonl"
    server = http_server()
    result = cli(
        "predict",
        bikes,
        "--checkpoint",
        fighting_checkpoint,
        "--size",
        32,
        "--json",
        "--window-seconds",
        2,
        "--stride-seconds",
        1,
        "--rules",
        rules,
        "--events",
        events,
        "--webhook",
        server.url + "/hook",
    )
    assert result.code == 0, result.err
    lines = [json.loads(x) for x in result.out.splitlines()]
    windows = [x for x in lines if x["type"] == "window"]
    alerts = [x for x in lines if x["type"] == "alert"]
    assert len(windows) == 9 and all(w["top"][0]["label"] == "fighting" for w in windows)
    # windows end at 2..10 s: the run starts at 2 s, fires at 4 s, then every 4 s
    assert [(a["label"], a["start"], a["time"]) for a in alerts] == [
        ("fighting", 2.0, 4.0),
        ("fighting", 2.0, 8.0),
    ]
    logged = [json.loads(x) for x in events.read_text().splitlines()]
    assert logged == alerts
    assert [json.loads(body) for body in server.server.posts] == alerts
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["alerts"] == 2 and summary["error"] is None
    assert summary["delivery"]["events"] == {
        "path": str(events),
        "written": 2,
        "failed": 0,
        "lost": 0,
    }
    assert summary["delivery"]["webhook"]["sent"] == 2
    assert summary["delivery"]["webhook"]["lost"] == 0


def test_cli_rules_naming_unknown_classes(cli, checkpoint, bikes, tmp_path):
    rules = rules_file(tmp_path, {"theft": 0.5})
    result = cli("predict", bikes, "--checkpoint", checkpoint, "--rules", rules)
    assert result.code == 2 and "the model has no class 'theft'" in result.err


def test_a_clock_that_starts_again_clears_the_cooldown():
    """A looping file replayed from its start (or a stream whose time resets on reconnection)
    must alert again: its new times are not comparable with the cooldown's."""
    engine = AlertEngine([AlertRule("fighting", 0.5, min_duration=0, cooldown=60)], CLASSES)
    assert len(fire(engine, [0.9, 0.9, 0.9])) == 1  # the cooldown holds within one pass
    assert len(fire(engine, [0.9, 0.9])) == 1  # second pass: times start at 2 s again
