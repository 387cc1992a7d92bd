"""The record of one experiment: windows that also show the seconds before them.

A 2 s window of 16 frames shows a moment. Dumping and theft are told apart by what the
scene held before it (no bag, then a bag; a bag, then none), fainting by the fall before
the stillness, loitering by where the person was. Here every window's clip is
``CONTEXT_FRAMES`` frames spread over the ``CONTEXT_S`` seconds before the window (the
centres of equal segments of that span, clamped to the recording's first frame), then the
window's own frames as usual: with ``data.num_frames=20``, 4 frames of the 8 s before and
16 of the 2 s window. Nothing else changes: the labels are the window's, and the network
is the same (a clip of 20 frames).

    python docs/results/synthcctv/context/experiment.py train configs/synthcctv_tsm_budget.yaml \
        --set data.annotations=D/train4x data.num_frames=20 --output RUN
    python docs/results/synthcctv/context/experiment.py scores RUN/last.pt D/test OUT.npz 2 0.5 1

``train`` takes the arguments of ``rsanet train``: the training and validation windows
read their frames at :func:`frame_times`. ``scores`` takes those of ``rules/compare.py
scores`` (``rsanet eval-events``' own code): each stream window's clip is the context
frames picked from the frames already decoded (:func:`clip_frames`) and the window's own,
picked as inference always picks them. Both pick the frame shown at each centre time, so
a window's clip is the same frames in training and in scoring (a test checks it). A
checkpoint trained here is read correctly only through this script: ``rsanet predict``
would sample 20 frames over the 2 s. Kept as the record of the run in ``docs/events.md``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

import rsanet.data.windows as data_windows
import rsanet.inference.windows as stream_windows
from rsanet.cli import main

#: seconds before each window that its context frames cover, and how many frames
CONTEXT_S, CONTEXT_FRAMES = 8.0, 4


def context_times(start_s: float, count: int = CONTEXT_FRAMES) -> np.ndarray:
    """Seconds of the context frames of a window starting at ``start_s``: the centres of
    ``count`` equal segments of the ``CONTEXT_S`` before it, none before the first frame."""
    step = CONTEXT_S / count
    return np.maximum(start_s - CONTEXT_S + (np.arange(count) + 0.5) * step, 0.0)


def frame_times(self, window) -> np.ndarray:
    """:meth:`UntrimmedWindows.frame_times` with the context first: ``num_frames`` times,
    ``CONTEXT_FRAMES`` of them before the window."""
    own = self.num_frames - CONTEXT_FRAMES
    if own < 1:
        raise ValueError(f"data.num_frames must exceed the {CONTEXT_FRAMES} context frames")
    step = self.sampler.window_s / own
    inside = window.start_s + (np.arange(own) + 0.5) * step
    return np.concatenate([context_times(window.start_s), inside])


def clip_frames(window, num_frames: int) -> list:
    """:meth:`Window.sample` with the context first, picked from every frame the stream has
    decoded so far (``window.history``) as the window's own are picked from its frames."""
    history, start = window.history, window.start
    times = [frame.time for frame in history]  # a centre before the first frame takes it
    picks = stream_windows.tsn_pick(times, start - CONTEXT_S, start, CONTEXT_FRAMES)
    own = stream_windows.Window.sample(window, num_frames - CONTEXT_FRAMES)
    return [history[i] for i in picks] + own


class ContextSlidingWindow(stream_windows.SlidingWindow):
    """The stream's sliding window, keeping every frame it was given so that a window can
    reach back before its start (a recording of 40 s at 10 frames per second: 400 frames
    at the predictor's size)."""

    def reset(self) -> None:
        super().reset()
        self.history: list = []

    def add(self, frame) -> None:
        if not self.history or frame.time >= self.history[-1].time - stream_windows.EPS:
            self.history.append(frame)
        super().add(frame)

    def _make(self, end: float, skipped: int):
        window = super()._make(end, skipped)
        window.history = self.history
        window.sample = lambda num_frames, *_: clip_frames(window, num_frames)  # its own context
        return window


def _rules_compare():
    path = Path(__file__).resolve().parents[1] / "rules" / "compare.py"
    spec = importlib.util.spec_from_file_location("rules_compare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "train":
        data_windows.UntrimmedWindows.frame_times = frame_times
        return main(["train", *rest])
    if command == "scores":
        import rsanet.inference.predictor as predictor

        predictor.SlidingWindow = ContextSlidingWindow
        _rules_compare().scores(*rest)
        return 0
    sys.exit(f"usage: {sys.argv[0]} train RSANET_TRAIN_ARGS... | scores CHECKPOINT DATA OUT ...")


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
