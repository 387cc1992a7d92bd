"""Bad data: how a broken sample or annotation row is described, reported and handled.

Bad data never ends a run and is never silent: each problem becomes a :class:`BadSample`
(the path, or ``file:line`` of an annotation row, and the reason), is logged once on the
``rsanet.data`` logger (printed to stderr even when logging is not configured), counted in
a :class:`BadSampleLog`, and handled by the policy: ``skip`` (another sample is drawn
deterministically from ``(seed, index, attempt)``) or ``raise``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger("rsanet.data")

#: how bad samples and malformed annotation rows are handled
BAD_SAMPLE_POLICIES = ("skip", "raise")


@dataclass(frozen=True)
class BadSample:
    """One problem: ``path`` is a file or folder, or ``file:line`` / ``file:entry N`` of an
    annotation row; ``reason`` says what is wrong and, where there is one, the fix."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


class BadSampleError(ValueError):
    """A sample that cannot be read (missing, empty, truncated, undecodable, too short)."""

    def __init__(self, path: str, reason: str) -> None:
        self.bad = BadSample(str(path), reason)
        super().__init__(str(self.bad))


class AnnotationError(ValueError):
    """A malformed annotation row (under the ``raise`` policy) or an unusable annotation
    file; the message names the file, the line or entry, and the fix."""

    def __init__(self, location: str, reason: str) -> None:
        self.bad = BadSample(location, reason)
        super().__init__(str(self.bad))


def check_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`BAD_SAMPLE_POLICIES`, else a ValueError."""
    if policy not in BAD_SAMPLE_POLICIES:
        raise ValueError(
            f"bad_sample_policy must be one of {', '.join(BAD_SAMPLE_POLICIES)}, got {policy!r}"
        )
    return policy


class BadSampleLog:
    """Counts every reported problem and logs each path once (``rsanet.data`` logger).

    Each DataLoader worker process holds its own copy: its counts are that worker's.
    """

    def __init__(self, keep: int = 10_000) -> None:
        self.count = 0
        self.entries: list[BadSample] = []
        self._keep = keep
        self._seen: set[str] = set()
        self.reasons: Counter[str] = Counter()

    def report(self, bad: BadSample, action: str = "") -> None:
        """Count ``bad`` and log it (once per path); ``action`` says what happens next."""
        self.count += 1
        self.reasons[bad.reason.split(":", 1)[0]] += 1
        if bad.path in self._seen:
            return
        self._seen.add(bad.path)
        if len(self.entries) < self._keep:
            self.entries.append(bad)
        logger.warning("bad sample %s%s", bad, f" ({action})" if action else "")

    def __len__(self) -> int:
        return self.count

    def summary(self) -> str:
        """One line: the count and the most frequent reasons."""
        if not self.count:
            return "no bad samples"
        top = ", ".join(f"{reason} x{n}" for reason, n in self.reasons.most_common(3))
        return f"{self.count} bad sample(s) reported: {top}"


def replacement_index(seed: int, index: int, attempt: int, length: int) -> int:
    """The sample drawn instead of a bad ``index`` at ``attempt`` (1, 2, ...): a pure function
    of ``(seed, index, attempt)``, never ``index`` itself when ``length > 1``."""
    if length < 1:
        raise ValueError("cannot draw a replacement from an empty dataset")
    if length == 1:
        return 0
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, index, attempt, 0x5EED]).generate_state(2)
    offset = 1 + (int(state[0]) | (int(state[1]) << 32)) % (length - 1)
    return (index + offset) % length


class ReplacesBadSamples:
    """``__getitem__`` for datasets whose ``load_frames(index)`` may raise
    :class:`BadSampleError`: policy ``raise`` re-raises, ``skip`` loads
    :func:`replacement_index` instead (reported to ``bad_samples``) and gives up after
    ``max_attempts`` replacements in a row. The frames then go through ``transform``.

    A subclass sets ``policy``, ``max_attempts``, ``seed``, ``bad_samples`` (a
    :class:`BadSampleLog`) and ``transform``, and names its items and the command that checks
    them (:attr:`item_name`, :attr:`check_hint`) for the give-up message."""

    item_name = "sample"
    check_hint = "rsanet data check ANNOTATIONS --format FORMAT --root DIR"

    def load_frames(self, index: int):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __getitem__(self, index: int):
        current = index
        for attempt in range(1, self.max_attempts + 2):
            try:
                frames, label = self.load_frames(current)
                break
            except BadSampleError as error:
                if self.policy == "raise":
                    self.bad_samples.report(error.bad, "raised: bad_sample_policy='raise'")
                    raise
                if attempt > self.max_attempts:
                    self.bad_samples.report(error.bad, "giving up")
                    raise RuntimeError(
                        f"{self.max_attempts + 1} bad {self.item_name}s in a row from index "
                        f"{index}; check the data with: {self.check_hint}"
                    ) from None
                replacement = replacement_index(self.seed, index, attempt, len(self))
                self.bad_samples.report(
                    error.bad, f"{self.item_name} {current} replaced by {replacement}"
                )
                current = replacement
        clip, label = self.transform(frames, label)
        if clip.dim() == 5 and clip.shape[0] == 1:
            clip = clip[0]
        return clip, int(label)
