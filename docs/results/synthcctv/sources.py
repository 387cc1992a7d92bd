"""Networks compared on the same recordings through their stored window scores: each
source's rules calibrated for 2 false alarms per hour (``--budget-split recall``) on the
4.4 calibration hours, plain and with swept minimum durations (0-3 s), and replayed on the
held-out hour by the alert engine, per training seed.

    python docs/results/synthcctv/sources.py PAGE SEED ... > docs/results/synthcctv/PAGE/compare.md

Each source is a folder of ``calib.npz`` and ``test.npz`` written by ``rules/compare.py
scores`` (the ``window_scores.npz`` of ``rsanet eval-events`` holds the same arrays, with
the recordings' full paths instead of paths under the data folder). The pages
(:data:`PAGES`):

``windows``: 2 s against 6 s windows, and the two fused.
  * ``2 s``: the 16-frame ``tsm_tiny`` recipe (8 frames per second);
  * ``6 s``: the same recipe trained and run on 6 s windows of 16 frames (2.7 per second),
    which see what comes before and after a moment: a bag set down and left, a fall and
    the stillness after it, a wanderer who stays;
  * ``max``: each class's score the higher of the two networks' at the same window end
    (the 6 s network has no window before 6 s into a recording: its score counts as 0);
  * control ``max, 6 s shuffled``: the 6 s network's windows in a random order within each
    recording before fusing, the same scores at the wrong times. If fusing gained only
    because a second score raises some windows, this would gain too.

``hard_negatives``: the recipe against the recipe trained with hard negatives.
  * ``recipe``: the 16-frame ``tsm_tiny`` recipe;
  * ``hard negatives``: the same command with ``data.untrimmed.hard_negatives``, the window
    scores of that seed's recipe network on its own training recordings: half of the
    normal samples are drawn from the 10 % of normal windows it scored most like an event;
  * control ``all normal windows``: the same, with ``hard_negative_top: 1.0``, so the
    "hard" windows are every normal window of that grid: the same machinery without the
    hardness. It must not gain.

``scale``: the recipe against four times the scenes trained four times as long.
  * ``recipe``: the 16-frame ``tsm_tiny`` recipe (240 sessions, 9 epochs of 2,000
    windows, about 20 minutes);
  * ``4x scenes, 36 epochs``: the same command on 960 sessions (``--sessions 960``) with
    ``train.epochs=36`` and a validation split of 2.5 % (24 sessions, as many as the
    recipe's), 52-56 minutes: is the held-out limit one of data and training time?
  * control ``4x, shuffled``: that network's windows in a random order within each
    recording, the same scores at the wrong times. It must not gain.

``budget``: the same scenes within the recipe's 20 minutes.
  * ``recipe`` and ``4x scenes, 36 epochs``: as on the ``scale`` page;
  * ``4x scenes, 14 epochs, bf16``: the long configuration trained under bfloat16 autocast
    (``configs/synthcctv_tsm_budget.yaml``: a ``tsm_tiny`` training step takes 0.63 times
    its fp32 time on this CPU, an epoch about 0.85 times) for the 14 epochs that fit the
    recipe's 20 minutes;
  * control ``4x bf16, shuffled``: that network's windows in a random order within each
    recording. It must not gain.

``budget20``: the budget configuration for 20 epochs instead of 14.
  * ``recipe`` and ``4x scenes, 14 epochs, bf16``: as on the ``budget`` page;
  * ``4x scenes, 20 epochs, bf16``: the same configuration for 20 epochs, which fit the 20
    minutes once a training window was read in about half the time (one FFmpeg converter
    per thread instead of one per frame); scored every 0.5 s without smoothing, viewed
    here at the 1 s stride and smoothing 3 of the other sources;
  * control ``4x bf16 20 epochs, shuffled``: that network's windows in a random order
    within each recording. It must not gain.

``latency``: the 20-epoch network's scores at a 1 s or 0.5 s stride, smoothed over 1-3
  windows, each view calibrated on its own (plain rules only). A finer stride and less
  smoothing let a rule fire sooner, and give a threshold more normal windows to stay
  above. The claims on events detected and on the latency median are each tested against
  ``1 s stride, smoothing 3``; control ``0.5 s, smoothing 2, shuffled``: that view's
  windows in a random order within each recording, which must not gain.

``onset``: positives that cover a quarter of their window instead of half.
  * ``min overlap 0.5``: the ``budget20`` page's 20-epoch network, whose positive windows
    cover at least 1 s of an event;
  * ``min overlap 0.25``: the same command with ``data.untrimmed.min_overlap=0.25``: a
    window that has seen only the first 0.5 s of an event is trained as its class, so
    that its score may rise sooner (and at an event's last 0.5 s too);
  * each at the 1 s stride with smoothing 3, and at 0.5 s without smoothing;
  * control ``min overlap 0.25, shuffled``: that network's windows in a random order
    within each recording. It must not gain.
  The claims on events detected and on the latency median are each tested against the
  same view of ``min overlap 0.5``.

``networks``: ``rsanet_tiny`` against ``tsm_tiny`` on the same scenes and schedule.
  * ``recipe``: as on the ``scale`` page;
  * ``tsm_tiny, 14 epochs, bf16``: the ``budget`` page's network;
  * ``rsanet_tiny 5x3x3, 14 epochs, bf16``: the same configuration with ``rsanet_tiny``,
    its RSA layers reading 5 x 3 x 3 neighbourhoods (the paper's 5 x 7 x 7 spans most of a
    64 x 64 input's feature maps), fine-tuned from its own SynthMotion job with those
    neighbourhoods;
  * control ``rsanet_tiny, shuffled``: that network's windows in a random order within
    each recording. It must not gain.
  The comparison of the two networks is tested both ways. A table of the striking classes
  (:data:`STRIKE_CLASSES`) says which of them each network names the windows of each (the
  event class scoring highest, normal left out), with claims on the share named right; the
  control is the shuffled network (it must not gain).

``context``: windows that also show the seconds before them.
  * ``2 s``: the ``budget20`` page's 20-epoch network (16 frames of the 2 s window);
  * ``2 s and the 8 s before``: the same command with 20 frames per clip, the first 4
    spread over the 8 s before the window (``context/experiment.py``), so that the
    network sees what the scene held before the moment: a bag that was not there
    (dumping) or was (theft), a person standing before the fall;
  * each at the 1 s stride with smoothing 3 (scored every 0.5 s without smoothing);
  * control ``context, shuffled``: that network's windows in a random order within each
    recording. It must not gain.

``background``: windows read as their change from the 8 s before them.
  * ``2 s``: as on the ``context`` page;
  * ``change from the 8 s before``: the clips of the ``context`` page's second network
    (4 frames of the 8 s before the window, then its 16), the network's stem given
    the window's 16 frames and, through a second convolution started at zero, their
    difference from the per-pixel median of the 4 context frames
    (``background/experiment.py``);
  * each at the 1 s stride with smoothing 3 (scored every 0.5 s without smoothing);
  * control ``background, shuffled``: that network's windows in a random order within
    each recording. It must not gain.
  Besides events, the page tests the window ROC-AUC of the classes that what came before
  tells (:data:`BEFORE_CLASSES`).

``channels_last`` and ``channels_last_tsm``: the budget configurations of ``rsanet_tiny``
and ``tsm_tiny`` on channels-last clips.
  * ``rsanet_tiny 5x3x3, 14 epochs``: the ``networks`` page's network;
    ``tsm_tiny, 20 epochs``: the ``budget20`` page's, viewed at the 1 s stride with
    smoothing 3;
  * ``..., channels-last``: the same commands with ``train.channels_last=true`` (the two
    configurations now set it), which hands the network the same numbers in another
    memory order and trains faster, within the 20 minutes. Their results should differ
    from the first runs' only as two seeds of one configuration do;
  * control ``..., channels-last, shuffled``: that network's windows in a random order
    within each recording. It must not gain.

``time_budget``: ``rsanet_tiny``'s budget configuration with its time budget of 19.5 minutes.
  * ``rsanet_tiny 5x3x3, 14 epochs, channels-last``: as on the ``channels_last`` page;
  * ``rsanet_tiny 5x3x3, 19.5 min budget``: the same command with ``train.time_budget_min``
    (the configuration now) and the fused backward of its authors'-order layers: the run
    ends within the 20 minutes, its cosine following the clock over the epochs that fit.
    Its results should differ from the 14-epoch runs no more than two seeds of one do;
  * control ``rsanet_tiny, budget, shuffled``: that network's windows in a random order
    within each recording. It must not gain.

``background_rsanet``: ``rsanet_tiny``'s budget configuration given the scene's change.
  * ``rsanet_tiny 5x3x3, 19.5 min budget``: as on the ``time_budget`` page;
  * ``rsanet_tiny, change from the 8 s before``: the same command with ``data.num_frames=20
    data.untrimmed.context_frames=4``: 4 frames of the 8 s before each window, then its
    16, and the stem's second convolution of each window frame's difference from their
    median (``background`` page, now a model option); the same 19.5-minute budget;
  * control ``rsanet_tiny, background, shuffled``: that network's windows in a random
    order within each recording. It must not gain.
  Besides events, the page tests the window ROC-AUC of :data:`BEFORE_CLASSES`.

"Test FA / h in event-free time" leaves out the false alarms raised during an event of
another class (a fight alert during an assault): the alarms a security desk would get on
quiet video.

A claim holds when the paired gain in test events detected (the same seed) is above zero,
one-sided one-sample t, p < 0.05 (where every seed gains exactly the same, the t statistic is
undefined and the exact sign test decides: p = 0.5 ** seeds); a control must come out "does
not hold".
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from rsanet.data.windows import NORMAL_CLASS, window_label
from rsanet.inference.event_metrics import roc_auc
from rsanet.study.stats import above_zero, mean_ci, verdict

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("rules_compare", HERE / "rules" / "compare.py")
rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rules)

RULE_SETS = ("plain", "min_durations")
#: the classes told apart by what the scene held before the moment: a bag that was not
#: there (dumping) or was (theft), a person standing before the fall, where a person was
BEFORE_CLASSES = ("dumping", "theft", "fainting", "loitering")
#: the classes whose events are blows: at a person who fights back, at one who falls, at a
#: fixed object
STRIKE_CLASSES = ("assault", "fight", "vandalism")

#: page -> its title, sources (name -> folder under this one, {seed} filled in; or (folder,
#: stride, smoothing): a view of scores written every 0.5 s without smoothing, see
#: ``rules.resampled``), fused sources (name -> the two sources, whether the second is
#: shuffled first), shuffled sources (name -> the source whose windows are put in a random
#: order), claims (source, baseline) on events detected, and optionally latency claims
#: (source, baseline) and the rule sets (default :data:`RULE_SETS`)
PAGES = {
    "windows": {
        "title": "2 s and 6 s windows, and the two fused",
        "sources": {"2 s": "rules/seed{seed}", "6 s": "windows/w6seed{seed}"},
        "fused": {"max": ("2 s", "6 s", False), "max, 6 s shuffled": ("2 s", "6 s", True)},
        "claims": [("6 s", "2 s"), ("max", "2 s"), ("max, 6 s shuffled", "2 s")],
    },
    "hard_negatives": {
        "title": "Hard negatives",
        "sources": {
            "recipe": "rules/seed{seed}",
            "hard negatives": "hard_negatives/seed{seed}",
            "all normal windows": "hard_negatives/all_seed{seed}",
        },
        "fused": {},
        "claims": [("hard negatives", "recipe"), ("all normal windows", "recipe")],
    },
    "scale": {
        "title": "Four times the scenes, four times the epochs",
        "sources": {"recipe": "rules/seed{seed}", "4x scenes, 36 epochs": "scale/x4e36seed{seed}"},
        "fused": {},
        "shuffled": {"4x, shuffled": "4x scenes, 36 epochs"},
        "claims": [("4x scenes, 36 epochs", "recipe"), ("4x, shuffled", "recipe")],
    },
    "budget": {
        "title": "Four times the scenes within the 20-minute budget",
        "sources": {
            "recipe": "rules/seed{seed}",
            "4x scenes, 36 epochs": "scale/x4e36seed{seed}",
            "4x scenes, 14 epochs, bf16": "budget/bf16e14seed{seed}",
        },
        "fused": {},
        "shuffled": {"4x bf16, shuffled": "4x scenes, 14 epochs, bf16"},
        "claims": [
            ("4x scenes, 14 epochs, bf16", "recipe"),
            ("4x bf16, shuffled", "recipe"),
        ],
    },
    "budget20": {
        "title": "Twenty epochs within the 20-minute budget",
        "sources": {
            "recipe": "rules/seed{seed}",
            "4x scenes, 14 epochs, bf16": "budget/bf16e14seed{seed}",
            "4x scenes, 20 epochs, bf16": ("budget/bf16e20seed{seed}", 1.0, 3),
        },
        "fused": {},
        "shuffled": {"4x bf16 20 epochs, shuffled": "4x scenes, 20 epochs, bf16"},
        "claims": [
            ("4x scenes, 20 epochs, bf16", "recipe"),
            ("4x scenes, 20 epochs, bf16", "4x scenes, 14 epochs, bf16"),
            ("4x bf16 20 epochs, shuffled", "recipe"),
        ],
    },
    "latency": {
        "title": "Alerts sooner: a finer stride and less smoothing, the same network",
        "rule_sets": ("plain",),
        "sources": {
            "1 s stride, smoothing 3": ("budget/bf16e20seed{seed}", 1.0, 3),
            "1 s stride, smoothing 1": ("budget/bf16e20seed{seed}", 1.0, 1),
            "0.5 s stride, smoothing 2": ("budget/bf16e20seed{seed}", 0.5, 2),
            "0.5 s stride, smoothing 1": ("budget/bf16e20seed{seed}", 0.5, 1),
        },
        "fused": {},
        "shuffled": {"0.5 s, smoothing 2, shuffled": "0.5 s stride, smoothing 2"},
        "claims": [
            ("1 s stride, smoothing 1", "1 s stride, smoothing 3"),
            ("0.5 s stride, smoothing 2", "1 s stride, smoothing 3"),
            ("0.5 s stride, smoothing 1", "1 s stride, smoothing 3"),
            ("0.5 s, smoothing 2, shuffled", "1 s stride, smoothing 3"),
        ],
        "latency_claims": [
            ("1 s stride, smoothing 1", "1 s stride, smoothing 3"),
            ("0.5 s stride, smoothing 2", "1 s stride, smoothing 3"),
            ("0.5 s stride, smoothing 1", "1 s stride, smoothing 3"),
        ],
    },
    "onset": {
        "title": "Event onsets trained as the class: positives covering a quarter of a window",
        "rule_sets": ("plain",),
        "sources": {
            "min overlap 0.5": ("budget/bf16e20seed{seed}", 1.0, 3),
            "min overlap 0.25": ("onset/ov25seed{seed}", 1.0, 3),
            "min overlap 0.5, 0.5 s, smoothing 1": ("budget/bf16e20seed{seed}", 0.5, 1),
            "min overlap 0.25, 0.5 s, smoothing 1": ("onset/ov25seed{seed}", 0.5, 1),
        },
        "fused": {},
        "shuffled": {"min overlap 0.25, shuffled": "min overlap 0.25"},
        "claims": [
            ("min overlap 0.25", "min overlap 0.5"),
            ("min overlap 0.25, 0.5 s, smoothing 1", "min overlap 0.5, 0.5 s, smoothing 1"),
            ("min overlap 0.25, shuffled", "min overlap 0.5"),
        ],
        "latency_claims": [
            ("min overlap 0.25", "min overlap 0.5"),
            ("min overlap 0.25, 0.5 s, smoothing 1", "min overlap 0.5, 0.5 s, smoothing 1"),
        ],
    },
    "context": {
        "title": "Windows that also show the 8 s before them",
        "sources": {
            "2 s": ("budget/bf16e20seed{seed}", 1.0, 3),
            "2 s and the 8 s before": ("context/c8seed{seed}", 1.0, 3),
        },
        "fused": {},
        "shuffled": {"context, shuffled": "2 s and the 8 s before"},
        "claims": [("2 s and the 8 s before", "2 s"), ("context, shuffled", "2 s")],
    },
    "background": {
        "title": "Windows read as their change from the 8 s before them",
        "sources": {
            "2 s": ("budget/bf16e20seed{seed}", 1.0, 3),
            "change from the 8 s before": ("background/b8seed{seed}", 1.0, 3),
        },
        "fused": {},
        "shuffled": {"background, shuffled": "change from the 8 s before"},
        "claims": [("change from the 8 s before", "2 s"), ("background, shuffled", "2 s")],
        # the classes told by what the scene held before the moment (the context page's)
        "auc_claims": [
            ("change from the 8 s before", "2 s", BEFORE_CLASSES),
            ("background, shuffled", "2 s", BEFORE_CLASSES),
        ],
    },
    "networks": {
        "title": "rsanet_tiny and tsm_tiny on four times the scenes, 14 epochs in bf16",
        "sources": {
            "recipe": "rules/seed{seed}",
            "tsm_tiny, 14 epochs, bf16": "budget/bf16e14seed{seed}",
            "rsanet_tiny 5x3x3, 14 epochs, bf16": "networks/rsanet_k3e14seed{seed}",
        },
        "fused": {},
        "shuffled": {"rsanet_tiny, shuffled": "rsanet_tiny 5x3x3, 14 epochs, bf16"},
        "claims": [
            ("rsanet_tiny 5x3x3, 14 epochs, bf16", "recipe"),
            ("rsanet_tiny 5x3x3, 14 epochs, bf16", "tsm_tiny, 14 epochs, bf16"),
            ("tsm_tiny, 14 epochs, bf16", "rsanet_tiny 5x3x3, 14 epochs, bf16"),
            ("rsanet_tiny, shuffled", "recipe"),
        ],
        # which striking class each network names the blows' windows (the fight rule of
        # rsanet_tiny fires during assaults)
        "naming_claims": [
            ("tsm_tiny, 14 epochs, bf16", "rsanet_tiny 5x3x3, 14 epochs, bf16", "assault"),
            ("tsm_tiny, 14 epochs, bf16", "rsanet_tiny 5x3x3, 14 epochs, bf16", "fight"),
            ("rsanet_tiny, shuffled", "rsanet_tiny 5x3x3, 14 epochs, bf16", "assault"),
        ],
    },
    "channels_last": {
        "title": "rsanet_tiny's budget configuration on channels-last clips",
        "sources": {
            "rsanet_tiny 5x3x3, 14 epochs": "networks/rsanet_k3e14seed{seed}",
            "rsanet_tiny 5x3x3, 14 epochs, channels-last": "networks/rsanet_k3e14clseed{seed}",
        },
        "fused": {},
        "shuffled": {
            "rsanet_tiny, channels-last, shuffled": "rsanet_tiny 5x3x3, 14 epochs, channels-last",
        },
        "claims": [
            ("rsanet_tiny 5x3x3, 14 epochs, channels-last", "rsanet_tiny 5x3x3, 14 epochs"),
            ("rsanet_tiny 5x3x3, 14 epochs", "rsanet_tiny 5x3x3, 14 epochs, channels-last"),
            ("rsanet_tiny, channels-last, shuffled", "rsanet_tiny 5x3x3, 14 epochs"),
        ],
    },
    "time_budget": {
        "title": "rsanet_tiny's budget configuration within its time budget",
        "sources": {
            "rsanet_tiny 5x3x3, 14 epochs, channels-last": "networks/rsanet_k3e14clseed{seed}",
            "rsanet_tiny 5x3x3, 19.5 min budget": "networks/rsanet_k3budgetseed{seed}",
        },
        "fused": {},
        "shuffled": {"rsanet_tiny, budget, shuffled": "rsanet_tiny 5x3x3, 19.5 min budget"},
        "claims": [
            ("rsanet_tiny 5x3x3, 19.5 min budget", "rsanet_tiny 5x3x3, 14 epochs, channels-last"),
            ("rsanet_tiny 5x3x3, 14 epochs, channels-last", "rsanet_tiny 5x3x3, 19.5 min budget"),
            ("rsanet_tiny, budget, shuffled", "rsanet_tiny 5x3x3, 14 epochs, channels-last"),
        ],
    },
    "background_rsanet": {
        "title": "rsanet_tiny given the change from the 8 s before each window",
        "sources": {
            "rsanet_tiny 5x3x3, 19.5 min budget": "networks/rsanet_k3budgetseed{seed}",
            "rsanet_tiny, change from the 8 s before": "networks/rsanet_k3bgseed{seed}",
        },
        "fused": {},
        "shuffled": {
            "rsanet_tiny, background, shuffled": "rsanet_tiny, change from the 8 s before",
        },
        "claims": [
            ("rsanet_tiny, change from the 8 s before", "rsanet_tiny 5x3x3, 19.5 min budget"),
            ("rsanet_tiny, background, shuffled", "rsanet_tiny 5x3x3, 19.5 min budget"),
        ],
        "auc_claims": [
            (
                "rsanet_tiny, change from the 8 s before",
                "rsanet_tiny 5x3x3, 19.5 min budget",
                BEFORE_CLASSES,
            ),
            (
                "rsanet_tiny, background, shuffled",
                "rsanet_tiny 5x3x3, 19.5 min budget",
                BEFORE_CLASSES,
            ),
        ],
    },
    "long_rsanet": {
        "title": "rsanet_tiny on the long schedule: 36 epochs",
        "sources": {
            "rsanet_tiny 5x3x3, 19.5 min budget": "networks/rsanet_k3budgetseed{seed}",
            "rsanet_tiny 5x3x3, 36 epochs": "networks/rsanet_k3e36seed{seed}",
            "tsm_tiny, 36 epochs": "scale/x4e36seed{seed}",
        },
        "fused": {},
        "shuffled": {"rsanet_tiny, 36 epochs, shuffled": "rsanet_tiny 5x3x3, 36 epochs"},
        "claims": [
            ("rsanet_tiny 5x3x3, 36 epochs", "rsanet_tiny 5x3x3, 19.5 min budget"),
            ("tsm_tiny, 36 epochs", "rsanet_tiny 5x3x3, 36 epochs"),
            ("rsanet_tiny, 36 epochs, shuffled", "rsanet_tiny 5x3x3, 19.5 min budget"),
        ],
    },
    "channels_last_tsm": {
        "title": "tsm_tiny's budget configuration on channels-last clips",
        "sources": {
            "tsm_tiny, 20 epochs": ("budget/bf16e20seed{seed}", 1.0, 3),
            "tsm_tiny, 20 epochs, channels-last": "budget/bf16e20clseed{seed}",
        },
        "fused": {},
        "shuffled": {"tsm_tiny, channels-last, shuffled": "tsm_tiny, 20 epochs, channels-last"},
        "claims": [
            ("tsm_tiny, 20 epochs, channels-last", "tsm_tiny, 20 epochs"),
            ("tsm_tiny, 20 epochs", "tsm_tiny, 20 epochs, channels-last"),
            ("tsm_tiny, channels-last, shuffled", "tsm_tiny, 20 epochs"),
        ],
    },
}


def fused(short: list, long: list, shuffle_seed: int | None = None) -> list:
    """Each run of ``short`` with every score the higher of the two sources' at the same
    window end (``shuffle_seed``: ``long``'s windows in a random order first)."""
    rng = np.random.default_rng(shuffle_seed)
    out = []
    for a, b in zip(short, long, strict=True):
        if a.path != b.path:
            raise ValueError(f"the score files list other recordings: {a.path} != {b.path}")
        other = b.score_matrix
        if shuffle_seed is not None:
            other = other[rng.permutation(len(other))]
        at_end = {round(end, 3): row for end, row in zip(b.ends, other, strict=True)}
        matrix = a.score_matrix
        for i, end in enumerate(a.ends):
            row = at_end.get(round(end, 3))
            if row is not None:
                matrix[i] = np.maximum(matrix[i], row)
        out.append(replace(a, scores=list(matrix), alerts=[]))
    return out


def labelled_windows(runs: list) -> tuple[np.ndarray, np.ndarray]:
    """The windows' labels as training labels them (the class covering at least half of the
    window, normal where no event touches it; the windows in between left out) and their
    score rows."""
    labels, rows = [], []
    for run in runs:
        for start, end, row in zip(run.starts, run.ends, run.scores, strict=True):
            label, _ = window_label(run.events, start, end - start, 0.5)
            if label is not None:
                labels.append(label)
                rows.append(row)
    return np.array(labels), np.array(rows)


def window_auc(classes: list[str], runs: list) -> dict[str, float | None]:
    """Each event class's ROC-AUC over the labelled windows (:func:`labelled_windows`),
    against the normal ones: does a source's score separate the class at all?"""
    labels, matrix = labelled_windows(runs)
    out = {}
    for column, label in enumerate(classes):
        keep = (labels == label) | (labels == NORMAL_CLASS)
        if label != NORMAL_CLASS and (labels == label).any():
            out[label] = roc_auc(labels[keep] == label, matrix[keep, column])
    return out


def window_naming(classes: list[str], runs: list) -> dict[str, dict[str, float]]:
    """For each class of :data:`STRIKE_CLASSES`: the shares of its labelled windows whose
    highest-scoring event class (normal left out) is each of those classes, or another."""
    labels, matrix = labelled_windows(runs)
    events = [c for c in classes if c != NORMAL_CLASS]
    named = np.array(events)[matrix[:, [classes.index(c) for c in events]].argmax(axis=1)]
    out = {}
    for label in STRIKE_CLASSES:
        mine = named[labels == label]
        shares = {c: float(np.mean(mine == c)) for c in STRIKE_CLASSES}
        out[label] = shares | {"other": 1.0 - sum(shares.values())}
    return out


def seed_results(page: dict, seed: str) -> dict:
    sources, views, loaded = {}, {}, {}
    for name, spec in page["sources"].items():
        folder, view = (spec, None) if isinstance(spec, str) else (spec[0], spec[1:])
        path = HERE / folder.format(seed=seed)
        if path not in loaded:  # several views of one folder read its files once
            loaded[path] = rules.load(path / "calib.npz"), rules.load(path / "test.npz")[1]
        (classes, calibration), test = loaded[path]
        if view is not None:  # scores made every 0.5 s without smoothing
            calibration, test = rules.resampled(calibration, *view), rules.resampled(test, *view)
            views[name] = view
        sources[name] = (calibration, test)
    for number, (name, (first, second, shuffle)) in enumerate(page["fused"].items()):
        (calib_a, test_a), (calib_b, test_b) = sources[first], sources[second]
        shuffles = (
            (10 * number + int(seed), 10 * number + 100 + int(seed)) if shuffle else (None,) * 2
        )
        sources[name] = (fused(calib_a, calib_b, shuffles[0]), fused(test_a, test_b, shuffles[1]))
    for number, (name, source) in enumerate(page.get("shuffled", {}).items()):
        calibration, test = sources[source]
        seeds = (20 * number + 200 + int(seed), 20 * number + 300 + int(seed))
        sources[name] = (
            rules.gated(calibration, [], seeds[0], shuffle=True),
            rules.gated(test, [], seeds[1], shuffle=True),
        )
        if source in views:
            views[name] = views[source]
    results = {
        f"{source} {rule_set}": rules.rule_set(
            classes, calibration, test, rule_set, *views.get(source, ())
        )
        for source, (calibration, test) in sources.items()
        for rule_set in page.get("rule_sets", RULE_SETS)
    }
    for source, (_, test) in sources.items():
        results[f"{source} plain"]["test_window_auc"] = window_auc(classes, test)
        if page.get("naming_claims"):
            results[f"{source} plain"]["test_window_naming"] = window_naming(classes, test)
    return results


def render(name: str, results: dict[str, dict]) -> str:
    page = PAGES[name]
    seeds = list(results)
    names = list(results[seeds[0]])
    first = results[seeds[0]][names[0]]
    lines = [
        f"# {page['title']}, {len(seeds)} seed{'s' if len(seeds) > 1 else ''}",
        "",
        f"Generated by `python docs/results/synthcctv/sources.py {name} {' '.join(seeds)}` "
        "from the committed window scores. Mean ± 95 % CI over seeds.",
        "",
        f"| source and rules | calibration: detected of {first['calibration_events']} "
        f"| test: detected of {first['test_events']} | test FA / h | test FA / h in event-free "
        "time | test latency median (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in names:
        column = [results[s][row] for s in seeds]
        latencies = [c["test_latency_median_s"] for c in column]
        latency = "-" if None in latencies else mean_ci(latencies).format(1)
        lines.append(
            f"| {row} | {mean_ci([c['calibration_detected'] for c in column]).format(1)} "
            f"| {mean_ci([c['test_detected'] for c in column]).format(1)} "
            f"| {mean_ci([c['test_fa_per_hour'] for c in column]).format(2)} "
            f"| {mean_ci([c['test_quiet_fa_per_hour'] for c in column]).format(2)} | {latency} |"
        )
    detected = [
        (
            f"{source} > {base} ({rule_set})",
            [
                results[s][f"{source} {rule_set}"]["test_detected"]
                - results[s][f"{base} {rule_set}"]["test_detected"]
                for s in seeds
            ],
        )
        for rule_set in page.get("rule_sets", RULE_SETS)
        for source, base in page["claims"]
    ]
    lines += claims_table(
        "Paired gains in test events detected (the same seed), one-sided one-sample t (the sign "
        "test where every seed gains the same):",
        "test gain",
        detected,
        digits=1,
    )
    lines += latency_claims(page, results)
    lines += auc_claims(page, results)
    lines += naming(page, results)
    classes = list(first["test_per_class"])
    lines += ["", "Test events detected per class (seeds in order):", ""]
    lines += rules.per_class_table(results, names, "source and rules")
    lines += table_head(
        "Test window ROC-AUC per class, each class's windows against the normal ones (mean "
        "over seeds; a fused source's windows are its first source's):",
        ["source", *classes],
    )
    for row in names:
        if "test_window_auc" in results[seeds[0]][row]:
            aucs = [results[s][row]["test_window_auc"] for s in seeds]
            cells = [f"{np.mean([a[c] for a in aucs]):.3f}" for c in classes]
            lines.append(f"| {row.removesuffix(' plain')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_head(intro: str, columns: list[str]) -> list[str]:
    """The lines that open a table: a blank line, ``intro``, a blank line, the header."""
    return ["", intro, "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]


def latency_claims(page: dict, results: dict[str, dict]) -> list[str]:
    """The page's ``latency_claims`` (source, baseline): the paired difference of their test
    latency medians (the baseline's minus the source's: seconds sooner), tested above zero."""
    if not page.get("latency_claims"):
        return []
    claims = []
    for rule_set in page.get("rule_sets", RULE_SETS):
        for source, base in page["latency_claims"]:
            pairs = [
                (
                    results[s][f"{base} {rule_set}"]["test_latency_median_s"],
                    results[s][f"{source} {rule_set}"]["test_latency_median_s"],
                )
                for s in results
            ]
            gains = None if any(None in pair for pair in pairs) else [b - a for b, a in pairs]
            claims.append((f"{source} alerts sooner than {base} ({rule_set})", gains))
    return claims_table(
        "Paired differences in test latency median (the baseline's minus the source's, the "
        "same seed: seconds sooner), one-sided one-sample t (the sign test where every seed "
        "gains the same):",
        "seconds sooner",
        claims,
        digits=2,
    )


def auc_claims(page: dict, results: dict[str, dict]) -> list[str]:
    """The page's ``auc_claims`` (source, baseline, classes): the paired gain in each of those
    classes' test window ROC-AUC, tested above zero."""
    claims = []
    for source, base, labels in page.get("auc_claims", ()):
        for label in labels:
            gains = [
                results[s][f"{source} plain"]["test_window_auc"][label]
                - results[s][f"{base} plain"]["test_window_auc"][label]
                for s in results
            ]
            claims.append((f"{source} > {base}: {label}", gains))
    if not claims:
        return []
    return claims_table(
        "Paired gains in test window ROC-AUC (the same seed), one-sided one-sample t (the "
        "sign test where every seed gains the same):",
        "AUC gain",
        claims,
        digits=3,
    )


def naming(page: dict, results: dict[str, dict]) -> list[str]:
    """The page's ``naming_claims`` (source, baseline, class): a table of which striking
    class each source names the windows of each striking class (:func:`window_naming`),
    and the paired gain in the share of that class's windows named right, tested above
    zero."""
    if not page.get("naming_claims"):
        return []
    seeds = list(results)
    columns = [*STRIKE_CLASSES, "other"]
    lines = table_head(
        "Test windows of the striking classes, by the event class that scores highest in "
        "them (normal left out; mean share over seeds):",
        ["source", "windows of", *columns],
    )
    for row in results[seeds[0]]:
        if "test_window_naming" in results[seeds[0]][row]:
            for label in STRIKE_CLASSES:
                shares = [results[s][row]["test_window_naming"][label] for s in seeds]
                cells = [f"{np.mean([x[c] for x in shares]):.2f}" for c in columns]
                lines.append(
                    f"| {row.removesuffix(' plain')} | {label} | " + " | ".join(cells) + " |"
                )
    claims = [
        (
            f"{source} > {base}: {label} windows named {label}",
            [
                results[s][f"{source} plain"]["test_window_naming"][label][label]
                - results[s][f"{base} plain"]["test_window_naming"][label][label]
                for s in seeds
            ],
        )
        for source, base, label in page["naming_claims"]
    ]
    return lines + claims_table(
        "Paired gains in the share of a class's test windows named that class (the same "
        "seed), one-sided one-sample t (the sign test where every seed gains the same):",
        "share gain",
        claims,
        digits=2,
    )


def claims_table(
    intro: str, column: str, claims: list[tuple[str, list[float] | None]], digits: int
) -> list[str]:
    """A table of claims, each with its paired gains over the seeds tested above zero
    (:func:`above_zero`); a claim without gains (a seed detected nothing) is not
    tested."""
    lines = ["", intro, "", f"| claim | {column} | |", "|---|---|---|"]
    for claim, gains in claims:
        if gains is None:
            lines.append(f"| {claim} | - | a seed detected nothing: not tested |")
            continue
        test = above_zero(gains)
        lines.append(f"| {claim} | {mean_ci(gains).format(digits)} | {test}: {verdict(test)} |")
    return lines


def main(argv: list[str]) -> None:
    as_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]
    if not argv or argv[0] not in PAGES or len(argv) < 2:
        sys.exit(__doc__)
    name, seeds = argv[0], argv[1:]
    results = {seed: seed_results(PAGES[name], seed) for seed in seeds}
    print(json.dumps(results, indent=1) if as_json else render(name, results), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
