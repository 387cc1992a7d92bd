"""Temporal smoothing of class scores across consecutive windows."""

from __future__ import annotations

from collections import deque

import numpy as np


class ScoreSmoother:
    """Moving average of the last ``size`` score vectors (K,); ``size=1`` passes scores
    through. :meth:`reset` forgets the history (after a gap in the stream)."""

    def __init__(self, size: int = 3) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"smoothing must be a positive number of windows, got {size!r}")
        self.size = size
        self._history: deque[np.ndarray] = deque(maxlen=size)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Scores (K,) of the newest window -> the average over the last ``size`` windows."""
        self._history.append(np.asarray(scores, dtype=np.float64))
        return np.mean(self._history, axis=0)

    def reset(self) -> None:
        self._history.clear()
