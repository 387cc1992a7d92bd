"""A second stage over a camera's window scores: a small causal GRU that reads the stream
of class scores and says which event is going on at the end of each window.

The network scores every window on its own, and each alert rule compares one class's
score with one threshold. Thresholds strict enough for a couple of false alarms per hour
sit above the few highest scores that normal video ever reaches, and those come from
single windows whose neighbours look nothing like an event. A :class:`Rescorer` learns,
from recordings annotated at the site (those the thresholds are calibrated on), how a
class's scores rise and persist through a real event: its input at each window is the
log of the window's K scores, its output the probability of each of the K classes
(normal included) for the event going on at the window's end, so the alert rules run on
its output as they ran on the network's.

It is fitted by cross-fitting (:func:`fit_rescorer`): the recordings are split into folds
by session (the folder a recording is in, so that the cameras of one event stay
together), a head is trained on all folds but one and scores the one left out. Those
out-of-fold scores are what thresholds are picked on: scores of recordings the head did
not learn from, as the site's future recordings will be. The heads of all folds, averaged,
are the rescorer that runs live. Repeated cross-fits (``repeats``) score each recording
with the average of several heads that did not see it, as the rescorer's own average
scores new ones.

The stream it reads is the predictor's (windows of ``window_s`` every ``stride_s`` seconds,
smoothed over ``smoothing`` windows); it only makes sense on the same stream, so the
rescorer file records them and the commands that load one take them from it.

>>> scores = read_window_scores("calib/window_scores.npz")              # doctest: +SKIP
>>> rescorer, out_of_fold = fit_rescorer(scores.runs, scores.classes, window_s=2.0,
...                                      stride_s=0.5, smoothing=1)     # doctest: +SKIP
>>> rescorer.save("rescorer.safetensors")                               # doctest: +SKIP
>>> stream = Rescorer.load("rescorer.safetensors").stream()             # doctest: +SKIP
>>> probabilities = stream(window_scores)  # (K,) -> (K,), one camera  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rsanet.inference.smoothing import ScoreSmoother

#: scores are read as log(score + LOG_FLOOR): a floor so that a score of 0 stays finite
LOG_FLOOR = 1e-4
#: the key of a rescorer file's metadata
METADATA_KEY = "rsanet_rescorer"
#: how far two stream settings may differ and still be the same (seconds)
SETTING_TOLERANCE = 1e-6


class TemporalHead(nn.Module):
    """A GRU over the log window scores with a skip of its input: (N, T, K) -> (N, T, K)
    logits and the last hidden state (1, N, hidden). Causal: the output at window t sees
    windows 0..t only, so it runs live, one window at a time, with the hidden state."""

    def __init__(self, num_classes: int, hidden: int = 48) -> None:
        super().__init__()
        self.gru = nn.GRU(num_classes, hidden, batch_first=True)
        self.out = nn.Linear(hidden + num_classes, num_classes)

    def forward(
        self, log_scores: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, state = self.gru(log_scores, state)
        return self.out(torch.cat([hidden, log_scores], dim=-1)), state


def log_scores(scores: np.ndarray) -> torch.Tensor:
    """Scores (..., K) -> the head's input, float32."""
    return torch.from_numpy(np.log(np.asarray(scores, dtype=np.float64) + LOG_FLOOR)).float()


@dataclass
class Rescorer:
    """The heads of a fit, averaged, with the classes and the stream they were fitted on.

    Args:
        heads: one :class:`TemporalHead` per fold (their softmax outputs are averaged).
        classes: the K classes of the network whose scores it reads, in its order.
        window_s, stride_s, smoothing: the predictor's windows the scores came from.
    """

    heads: list[TemporalHead]
    classes: list[str]
    window_s: float
    stride_s: float
    smoothing: int

    def __post_init__(self) -> None:
        for head in self.heads:
            head.eval()

    @property
    def hidden(self) -> int:
        return self.heads[0].gru.hidden_size

    @torch.no_grad()
    def rescore(self, scores: np.ndarray) -> np.ndarray:
        """One recording's window scores (T, K), in order -> the probabilities (T, K)."""
        if len(scores) == 0:
            return np.zeros((0, len(self.classes)))
        x = log_scores(scores)[None]
        return np.mean([h(x)[0].softmax(-1)[0].double().numpy() for h in self.heads], axis=0)

    def stream(self) -> RescorerStream:
        """The rescorer of one camera's stream, one window at a time."""
        return RescorerStream(self)

    def mismatch(
        self,
        *,
        window_s: float | None = None,
        stride_s: float | None = None,
        smoothing: int | None = None,
    ) -> tuple[str, float, float] | None:
        """The first setting given (not None) that differs from the stream it was fitted on,
        as (name, given, its own); None when all agree. A rescorer reads only that stream."""
        given = {"window_s": window_s, "stride_s": stride_s, "smoothing": smoothing}
        for name, value in given.items():
            own = float(getattr(self, name))
            if value is not None and abs(float(value) - own) > SETTING_TOLERANCE:
                return name, float(value), own
        return None

    # -- files -------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the heads and settings as one safetensors file (atomically)."""
        from safetensors.torch import save

        from rsanet.atomic import atomic_write

        tensors = {
            f"head{number}.{name}": value.detach().contiguous()
            for number, head in enumerate(self.heads)
            for name, value in head.state_dict().items()
        }
        metadata = {
            "classes": self.classes,
            "window_s": self.window_s,
            "stride_s": self.stride_s,
            "smoothing": self.smoothing,
            "hidden": self.hidden,
            "heads": len(self.heads),
        }
        data = save(tensors, metadata={METADATA_KEY: json.dumps(metadata)})
        return atomic_write(path, lambda handle: handle.write(data))

    @classmethod
    def load(cls, path: str | Path) -> Rescorer:
        """A rescorer written by :meth:`save`; ValueError naming the file when it is not one."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such rescorer file (see rsanet fit-rescorer)")
        try:
            with safe_open(str(path), framework="pt") as handle:
                text = (handle.metadata() or {}).get(METADATA_KEY)
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path}: not a safetensors file ({error})") from None
        if text is None:
            raise ValueError(f"{path}: not a rescorer (written by rsanet fit-rescorer)")
        meta = json.loads(text)
        heads = []
        for number in range(int(meta["heads"])):
            head = TemporalHead(len(meta["classes"]), int(meta["hidden"]))
            prefix = f"head{number}."
            head.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
            heads.append(head)
        return cls(
            heads,
            list(meta["classes"]),
            float(meta["window_s"]),
            float(meta["stride_s"]),
            int(meta["smoothing"]),
        )


class RescorerStream:
    """One camera's rescorer: scores (K,) of each new window -> probabilities (K,);
    :meth:`reset` starts afresh (after a gap in the stream, as the smoother does)."""

    def __init__(self, rescorer: Rescorer) -> None:
        self.rescorer = rescorer
        self._states: list[torch.Tensor | None] = [None] * len(rescorer.heads)

    @torch.no_grad()
    def __call__(self, scores: np.ndarray) -> np.ndarray:
        x = log_scores(scores).reshape(1, 1, -1)
        outputs = []
        for number, head in enumerate(self.rescorer.heads):
            logits, self._states[number] = head(x, self._states[number])
            outputs.append(logits[0, 0].softmax(-1).double().numpy())
        return np.mean(outputs, axis=0)

    def reset(self) -> None:
        self._states = [None] * len(self.rescorer.heads)


class RescoredSmoother:
    """The predictor's smoothing followed by a camera's rescorer: what
    :meth:`Predictor.new_smoother` gives when a rescorer is attached (same interface as
    :class:`~rsanet.inference.smoothing.ScoreSmoother`)."""

    def __init__(self, smoother: ScoreSmoother, stream: RescorerStream) -> None:
        self.smoother, self.stream = smoother, stream

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return self.stream(self.smoother(scores))

    def reset(self) -> None:
        self.smoother.reset()
        self.stream.reset()


# -- fitting ---------------------------------------------------------------------------


def step_labels(run, classes: Sequence[str], normal: int) -> np.ndarray:
    """The class index of each window of ``run`` (a
    :class:`~rsanet.inference.event_eval.VideoRun`): the event going on at the window's end
    (the latest to start when several are), else ``normal``."""
    index = {label: number for number, label in enumerate(classes)}
    ends = np.asarray(run.ends, dtype=np.float64)
    labels = np.full(len(ends), normal, dtype=np.int64)
    for event in sorted(run.events, key=lambda e: e.start_s):
        if event.label not in index:
            continue
        labels[(ends > event.start_s) & (ends <= event.end_s + SETTING_TOLERANCE)] = index[
            event.label
        ]
    return labels


def session_of(run) -> str:
    """The cross-fitting group of a recording: its folder (a session in the AI Hub layout,
    whose cameras record the same event)."""
    return str(Path(run.path).parent)


def fold_of_groups(groups: Sequence[str], folds: int, seed: int) -> dict[str, int]:
    """Each distinct group -> a fold in [0, folds), dealt in a random order."""
    distinct = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(distinct))
    return {distinct[i]: position % folds for position, i in enumerate(order)}


def train_head(
    sequences: Sequence[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    *,
    hidden: int,
    epochs: int,
    seed: int,
    lr: float = 3e-3,
    batch_size: int = 32,
) -> TemporalHead:
    """A head trained on (log scores (T, K), labels (T,)) of whole recordings: per-window
    cross-entropy weighted by 1/sqrt(class frequency), so that the rare classes count
    without drowning normal video, AdamW, recordings in batches of ``batch_size``."""
    torch.manual_seed(seed)
    head = TemporalHead(num_classes, hidden)
    pad = nn.utils.rnn.pad_sequence
    x = pad([s[0] for s in sequences], batch_first=True)
    y = pad([s[1] for s in sequences], batch_first=True, padding_value=-100)
    counts = torch.bincount(y[y >= 0], minlength=num_classes).float().clamp(min=1)
    weight = (counts.sum() / counts).sqrt()
    loss_fn = nn.CrossEntropyLoss(weight=weight / weight.mean(), ignore_index=-100)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-2)
    order = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=order).split(batch_size):
            logits, _ = head(x[batch])
            loss = loss_fn(logits.reshape(-1, num_classes), y[batch].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return head.eval()


def fit_rescorer(
    runs: Sequence,
    classes: Sequence[str],
    *,
    window_s: float,
    stride_s: float,
    smoothing: int,
    normal: str = "normal",
    folds: int = 5,
    repeats: int = 1,
    hidden: int = 48,
    epochs: int = 40,
    seed: int = 0,
    group: Callable = session_of,
    order: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> tuple[Rescorer, list]:
    """Cross-fit a rescorer on annotated recordings' window scores.

    Args:
        runs: :class:`~rsanet.inference.event_eval.VideoRun` s with ``scores`` (T, K) and
            ``events`` (``rsanet eval-events``' ``window_scores.npz``, read by
            :func:`~rsanet.inference.event_eval.read_window_scores`).
        classes: the K classes of the scores; ``normal`` among them: the label of windows
            without an event.
        window_s, stride_s, smoothing: how the scores were made (recorded in the file).
        folds: cross-fitting folds over the groups ``group(run)`` (sessions by default).
        repeats: cross-fits, each with its own deal of the groups into folds (seeds
            ``seed`` .. ``seed + repeats - 1``). A recording's out-of-fold score is the
            average of the ``repeats`` heads that did not learn from it, and the rescorer
            averages all ``folds * repeats`` heads. With one cross-fit, thresholds are
            picked on single heads' scores while the average of several runs live; an
            average is less extreme on normal video, so those thresholds are stricter
            than it needs. Averaged out-of-fold scores are closer to what runs live.
        hidden, epochs, seed: the heads' size and training.
        order: a negative control's hook, ``order(matrix, number) -> row order`` applied
            to each recording's windows (and labels) before fitting and scoring.

    Returns:
        the rescorer (all folds' heads) and ``runs`` with their out-of-fold rescored
        scores (alerts cleared): what thresholds are picked on.
    """
    classes = list(classes)
    if normal not in classes:
        raise ValueError(
            f"no class {normal!r} among the scores' classes ({', '.join(classes)}): the "
            "rescorer needs the class of windows without an event"
        )
    if not runs:
        raise ValueError("no recording to fit a rescorer on")
    groups = [group(run) for run in runs]
    folds = min(folds, len(set(groups)))
    if folds < 2:
        raise ValueError(
            "cross-fitting needs recordings of at least two sessions (folders); "
            f"all {len(runs)} are in {groups[0]!r}"
        )
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    rows = [
        order(run.score_matrix, number) if order else np.arange(len(run.ends))
        for number, run in enumerate(runs)
    ]
    sequences = [
        (
            log_scores(run.score_matrix[rows[n]]),
            torch.from_numpy(step_labels(run, classes, classes.index(normal))[rows[n]]),
        )
        for n, run in enumerate(runs)
    ]
    stream = (float(window_s), float(stride_s), int(smoothing))
    heads, sums = [], [0.0] * len(runs)
    for repeat in range(seed, seed + repeats):
        fold_of = fold_of_groups(groups, folds, repeat)
        for fold in range(folds):
            inside = [s for s, g in zip(sequences, groups, strict=True) if fold_of[g] != fold]
            head = train_head(
                inside, len(classes), hidden=hidden, epochs=epochs, seed=repeat * 1000 + fold
            )
            heads.append(head)
            one = Rescorer([head], classes, *stream)
            for number, run in enumerate(runs):
                if fold_of[groups[number]] == fold:
                    sums[number] = sums[number] + one.rescore(run.score_matrix[rows[number]])
    rescored = [with_scores(run, total / repeats) for run, total in zip(runs, sums, strict=True)]
    return Rescorer(heads, classes, *stream), rescored


def with_scores(run, scores: np.ndarray):
    """``run`` with ``scores`` (T, K) for its windows and no alerts."""
    return replace(run, scores=list(scores), alerts=[])


def rescored_runs(rescorer: Rescorer, runs: Sequence) -> list:
    """``runs`` with the rescorer's scores (its heads averaged), as it would run live."""
    return [with_scores(run, rescorer.rescore(run.score_matrix)) for run in runs]


__all__ = [
    "LOG_FLOOR",
    "RescoredSmoother",
    "Rescorer",
    "RescorerStream",
    "TemporalHead",
    "fit_rescorer",
    "rescored_runs",
]
