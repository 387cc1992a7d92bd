"""Multiple-instance learning on bags of windows (``data.untrimmed.bag_size`` > 1).

An annotated event interval is a weak label: a dumping event spans the walk in, the bag set
down and the walk away, and only the middle shows dumping. Trained on every window of the
interval, a network is taught that a person walking with a bag is dumping, and then
raises that class on every walker. A bag of windows of one event asks less: that *one* of
them shows the class. :func:`select_instances` picks, in each bag, the window the loss is
taken on:

* an event bag: the window that gives the bag's class the highest probability;
* a normal bag (independent event-free windows): the window that gives ``normal`` the
  lowest. Every one of them must be normal, and the one that looks least so is the one
  that would raise a false alarm.

The loss then is the ordinary one on the picked windows' logits, so label smoothing and the
training accuracy work unchanged; only the picked windows get gradients.
"""

from __future__ import annotations

import torch


def select_instances(logits: torch.Tensor, labels: torch.Tensor, normal: int = 0) -> torch.Tensor:
    """(N, K, C) logits of N bags of K windows, (N,) labels -> (N, C): the logits of the
    window picked in each bag (above); ``normal``: the class index of normal windows."""
    if logits.dim() != 3 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"expected logits (N, K, C) and labels (N,), got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    with torch.no_grad():
        # (N, K): each window's log-probability of its bag's label
        index = labels.view(-1, 1, 1).expand(-1, logits.shape[1], 1)
        own = logits.float().log_softmax(-1).gather(2, index)[..., 0]
        picked = torch.where(labels == normal, own.argmin(1), own.argmax(1))
    return logits[torch.arange(logits.shape[0], device=logits.device), picked]


__all__ = ["select_instances"]
