"""Alerts: rules turn window scores into events (delivered to a JSON-lines log and a webhook
by :mod:`rsanet.inference.sinks`).

A rules file (YAML or JSON) maps class names to a score threshold, a minimum duration and a
cooldown, and may make a rule fire only for the top class::

    defaults: {threshold: 0.5, min_duration: 0, cooldown: 60, top_class: false}
    rules:
      fighting: {threshold: 0.6, min_duration: 2}
      falling down: {threshold: 0.7, top_class: true}

(``rules`` may also be a list of ``{class: NAME, threshold: ..., ...}`` entries.) A rule
fires when the class's smoothed score has been at or above ``threshold`` in consecutive
windows whose ends span at least ``min_duration`` seconds, and not within ``cooldown``
seconds of its last event; a score that stays high fires again once the cooldown is over.
A rule with ``top_class: true`` counts a window only when its class scores at least as high
as every class that has a rule: during a fight that also lifts the assault score, the
assault rule stays quiet while fight scores higher. A score that is not finite (NaN, inf)
is an error (:class:`NonFiniteScoresError`), never an alert.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsanet.inference.predictor import NonFiniteScoresError
from rsanet.inference.results import WindowResult

RULE_KEYS = ("threshold", "min_duration", "cooldown")
FLAG_KEYS = ("top_class",)
KNOWN = RULE_KEYS + FLAG_KEYS
DEFAULTS = {"threshold": 0.5, "min_duration": 0.0, "cooldown": 60.0, "top_class": False}


class RulesError(ValueError):
    """An unusable rules file (the message names the file and the problem)."""


@dataclass(frozen=True)
class AlertRule:
    """Fire for ``label`` when its score stays >= ``threshold`` for ``min_duration`` seconds;
    then stay quiet for ``cooldown`` seconds. With ``top_class``, a window counts only when
    ``label`` scores at least as high as every class that has a rule."""

    label: str
    threshold: float
    min_duration: float = 0.0
    cooldown: float = 60.0
    top_class: bool = False


@dataclass
class AlertEvent:
    """One alert: ``label`` scored ``score`` (>= ``threshold``) from ``start`` to ``time``
    (seconds of stream time) in ``source``; ``window`` is the window that fired it."""

    label: str
    score: float
    threshold: float
    start: float
    time: float
    window: int
    source: str
    wall_time: str

    @property
    def duration(self) -> float:
        return self.time - self.start

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "alert",
            "label": self.label,
            "score": round(self.score, 6),
            "threshold": self.threshold,
            "start": round(self.start, 3),
            "time": round(self.time, 3),
            "duration": round(self.duration, 3),
            "window": self.window,
            "source": self.source,
            "wall_time": self.wall_time,
        }

    def describe(self) -> str:
        return (
            f"ALERT {self.label} score {self.score:.2f} >= {self.threshold:g} for "
            f"{self.duration:.1f} s (at {self.time:.1f} s of {self.source})"
        )


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RulesError(f"{where}: {key} must be a number, got {value!r}")
    if value < 0:
        raise RulesError(f"{where}: {key} must be >= 0, got {value!r}")
    return float(value)


def _flag(value: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise RulesError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _rule(label: str, spec: Any, defaults: Mapping[str, float], where: str) -> AlertRule:
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        spec = {"threshold": spec}  # "fighting: 0.6" is a threshold
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise RulesError(f"{where}: rule {label!r} must be a mapping of {', '.join(KNOWN)}")
    unknown = set(spec) - set(KNOWN) - {"class", "label"}
    if unknown:
        raise RulesError(
            f"{where}: rule {label!r} has unknown key(s) {sorted(unknown)}; "
            f"known: {', '.join(KNOWN)}"
        )
    here = f"{where}: rule {label!r}"
    values: dict[str, Any] = {k: _number(spec.get(k, defaults[k]), k, here) for k in RULE_KEYS}
    values.update({k: _flag(spec.get(k, defaults[k]), k, here) for k in FLAG_KEYS})
    if values["threshold"] > 1:
        raise RulesError(f"{here}: threshold is a probability in [0, 1], got {values['threshold']}")
    return AlertRule(str(label), **values)


def parse_rules(data: Any, where: str = "rules") -> list[AlertRule]:
    """Rules from the loaded YAML/JSON document (see the module docstring)."""
    if not isinstance(data, Mapping):
        raise RulesError(f"{where}: expected a mapping with 'rules' (and optional 'defaults')")
    defaults = dict(DEFAULTS)
    given = data.get("defaults") or {}
    if not isinstance(given, Mapping):
        raise RulesError(f"{where}: 'defaults' must be a mapping")
    for key, value in given.items():
        if key not in KNOWN:
            raise RulesError(f"{where}: unknown default {key!r}; known: {', '.join(KNOWN)}")
        check = _flag if key in FLAG_KEYS else _number
        defaults[key] = check(value, key, f"{where}: defaults")
    entries = (
        data["rules"] if "rules" in data else {k: v for k, v in data.items() if k != "defaults"}
    )
    rules: list[AlertRule] = []
    if isinstance(entries, Mapping):
        rules = [_rule(label, spec, defaults, where) for label, spec in entries.items()]
    elif isinstance(entries, list):
        for number, spec in enumerate(entries, start=1):
            label = spec.get("class", spec.get("label")) if isinstance(spec, Mapping) else None
            if not isinstance(label, str):
                raise RulesError(f"{where}: rule {number} needs a 'class' name")
            rules.append(_rule(label, spec, defaults, where))
    else:
        raise RulesError(f"{where}: 'rules' must be a mapping or a list")
    if not rules:
        raise RulesError(f"{where}: no rules")
    return rules


def load_rules(path: str | Path) -> list[AlertRule]:
    """Read a rules file: ``.json`` as JSON, anything else as YAML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RulesError(f"cannot read rules file {path}: {error.strerror or error}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as error:  # json.JSONDecodeError, yaml.YAMLError
        reason = " ".join(str(error).split())
        raise RulesError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {reason}"
        ) from None
    return parse_rules(data, str(path))


def check_rules(rules: Sequence[AlertRule], classes: Sequence[str], where: str = "rules") -> None:
    """RulesError when a rule names a class the model does not have (with close matches)."""
    known = set(classes)
    for rule in rules:
        if rule.label not in known:
            close = difflib.get_close_matches(rule.label, list(classes), n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise RulesError(f"{where}: the model has no class {rule.label!r}{hint}")


class AlertEngine:
    """Applies rules to consecutive window results; :meth:`update` returns the events fired
    by a window. :meth:`reset` forgets running conditions (after an outage). A window that
    ends before the previous one means the source's clock started again (a looping file
    replayed from its start, a stream reconnected with its time reset): running conditions
    and cooldowns are forgotten too, since times on the two clocks cannot be compared (a
    cooldown would otherwise hold until the new clock passed the old one)."""

    def __init__(self, rules: Sequence[AlertRule], classes: Sequence[str]) -> None:
        check_rules(rules, classes)
        self.rules = list(rules)
        self._index = {rule.label: list(classes).index(rule.label) for rule in rules}
        self._since: dict[int, float | None] = {}
        self._peak: dict[int, float] = {}
        self._last_fired: dict[int, float] = {}
        self._last_end: float | None = None
        self.fired = 0

    def reset(self) -> None:
        self._since.clear()
        self._peak.clear()

    def update(self, result: WindowResult) -> list[AlertEvent]:
        if self._last_end is not None and result.end < self._last_end:
            self.reset()
            self._last_fired.clear()
        self._last_end = result.end
        scores = [result.score_of(self._index[rule.label]) for rule in self.rules]
        for rule, score in zip(self.rules, scores, strict=True):
            if not math.isfinite(score):
                raise NonFiniteScoresError(
                    f"window {result.index} ({result.start:.2f}-{result.end:.2f} s) of "
                    f"{result.source or 'the source'}: the score of {rule.label!r} is "
                    f"{score}, not a number the rules can compare; no alert is raised from it"
                )
        top = max(scores, default=0.0)
        events = []
        for number, (rule, score) in enumerate(zip(self.rules, scores, strict=True)):
            if score < rule.threshold or (rule.top_class and score < top):
                self._since[number] = None
                self._peak.pop(number, None)
                continue
            since = self._since.get(number)
            if since is None:
                since = self._since[number] = result.end
            self._peak[number] = max(self._peak.get(number, 0.0), score)
            if result.end - since < rule.min_duration - 1e-9:
                continue
            last = self._last_fired.get(number)
            if last is not None and result.end - last < rule.cooldown - 1e-9:
                continue
            self._last_fired[number] = result.end
            self.fired += 1
            events.append(
                AlertEvent(
                    label=rule.label,
                    score=score,
                    threshold=rule.threshold,
                    start=since,
                    time=result.end,
                    window=result.index,
                    source=result.source,
                    wall_time=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                )
            )
        return events
