"""Helpers of the serve tests: stub models that count their batches, frames fed without
a decoder, a real-time opener, waiting for a condition."""

from __future__ import annotations

import time

import torch

from rsanet.inference import Predictor
from rsanet.inference.sources import Frame
from support.inference import CLASSES, moving_square


class StubBackend:
    """Logits favouring class ``favour``; records the batch size of every call."""

    def __init__(self, favour: int = 0) -> None:
        self.favour = favour
        self.batches: list[int] = []

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        self.batches.append(int(clip.shape[0]))
        logits = torch.zeros(clip.shape[0], len(CLASSES))
        logits[:, self.favour] = 6.0
        return logits


def stub_predictor(favour: int = 0, smoothing: int = 1) -> Predictor:
    """A predictor on :class:`StubBackend` with small clips (4 frames of 32 x 32)."""
    return Predictor(StubBackend(favour), CLASSES, num_frames=4, size=32, smoothing=smoothing)


def frames(count: int, fps: float = 25.0, start: float = 0.0) -> list[Frame]:
    """``count`` frames (48 x 64 moving square) at ``fps``, arriving now."""
    images = moving_square(count)
    now = time.monotonic()
    return [
        Frame(time=start + i / fps, image=images[i], duration=1 / fps, index=i, arrival=now)
        for i in range(count)
    ]


def paced_opener(count: int = 1000, fps: float = 25.0):
    """An opener yielding small frames in real time (a camera without a decoder)."""

    def opener():
        images = moving_square(50)
        started = time.monotonic()
        for i in range(count):
            delay = started + i / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield Frame(
                time=i / fps, image=images[i % 50], duration=1 / fps, index=i,
                arrival=time.monotonic(),
            )  # fmt: skip

    return opener


def wait_for(condition, timeout: float = 10.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return bool(condition())
