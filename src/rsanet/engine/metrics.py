"""Classification metrics: top-k, mean per-class accuracy and the confusion matrix, kept
as sums so that processes can add theirs together before the ratios are taken."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int]) -> list[int]:
    """How many rows of ``scores`` (N, C) have their label among the ``k`` highest scores,
    for each ``k`` (clamped to C)."""
    if scores.shape[0] == 0:
        return [0 for _ in ks]
    largest = min(max(ks), scores.shape[1])
    top = scores.topk(largest, dim=1).indices
    hits = top.eq(labels.view(-1, 1))
    return [int(hits[:, : min(k, largest)].any(dim=1).sum()) for k in ks]


class ClassificationMeter:
    """Accumulates predictions of a C-way classifier.

    ``update(scores, labels)`` adds a batch of scores (N, C) (logits or probabilities) and
    integer labels (N,), optionally with the summed loss of the batch. :meth:`all_reduce`
    adds the sums of every process; :meth:`compute` returns top-1, top-5, mean per-class
    accuracy (the mean over classes that have samples), per-class accuracy and the loss.
    """

    def __init__(self, num_classes: int, ks: Sequence[int] = (1, 5)) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ks = num_classes, tuple(ks)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        # [count, loss sum, top-k correct ...] in float64: one tensor to all-reduce
        self.sums = torch.zeros(2 + len(self.ks), dtype=torch.float64)
        self.has_loss = False

    def update(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        loss_sum: float | torch.Tensor | None = None,
    ) -> None:
        scores, labels = scores.detach().float().cpu(), labels.detach().long().cpu()
        if scores.dim() != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(f"scores must be (N, {self.num_classes}), got {tuple(scores.shape)}")
        predictions = scores.argmax(dim=1)
        index = labels * self.num_classes + predictions
        self.confusion += torch.bincount(index, minlength=self.num_classes**2).view(
            self.num_classes, self.num_classes
        )
        self.sums[0] += labels.numel()
        if loss_sum is not None:
            self.sums[1] += float(loss_sum)
            self.has_loss = True
        for i, hits in enumerate(topk_correct(scores, labels, self.ks)):
            self.sums[2 + i] += hits

    def all_reduce(self, env: Any) -> None:
        """Sum the counts of every process of ``env`` (a no-op in a single process)."""
        from rsanet.engine.distributed import all_reduce_sum

        self.confusion = all_reduce_sum(self.confusion, env)
        self.sums = all_reduce_sum(self.sums, env)

    @property
    def count(self) -> int:
        return int(self.sums[0])

    def per_class(self) -> list[float | None]:
        """Accuracy (%) of each class; None for a class without samples."""
        support = self.confusion.sum(dim=1)
        correct = self.confusion.diagonal()
        return [
            100.0 * int(c) / int(s) if s > 0 else None
            for c, s in zip(correct, support, strict=True)
        ]

    def compute(self) -> dict[str, Any]:
        """``top1``, ``top5`` (``top{k}`` for each k), ``mean_class``, ``per_class``
        (percentages), ``loss`` (mean, or None) and ``num_samples``."""
        n = self.count
        result: dict[str, Any] = {}
        for i, k in enumerate(self.ks):
            result[f"top{k}"] = 100.0 * float(self.sums[2 + i]) / n if n else math.nan
        per_class = self.per_class()
        present = [a for a in per_class if a is not None]
        result["mean_class"] = sum(present) / len(present) if present else math.nan
        result["per_class"] = per_class
        result["loss"] = float(self.sums[1]) / n if n and self.has_loss else None
        result["num_samples"] = n
        return result


def finite_or_null(value: Any) -> Any:
    """``value`` (nested dicts and lists) with NaN and infinite floats as None: JSON
    outputs hold no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value
