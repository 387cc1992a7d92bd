"""Temporal shift (TSM, Lin et al. 2019): zero-cost temporal mixing by moving channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rsanet.layers import _args


def temporal_shift(x: torch.Tensor, fold_div: int = 8) -> torch.Tensor:
    """(N, C, T, H, W) -> same shape: the first C/fold_div channels take the previous frame's
    values (shifted forward in time), the next C/fold_div the next frame's (backward), the
    rest stay; frames shifted in from outside the clip are zeros."""
    fold = x.shape[1] // fold_div
    forward = F.pad(x[:, :fold, :-1], (0, 0, 0, 0, 1, 0))
    backward = F.pad(x[:, fold : 2 * fold, 1:], (0, 0, 0, 0, 0, 1))
    return torch.cat([forward, backward, x[:, 2 * fold :]], dim=1)


class TemporalShift(nn.Module):
    """Module form of :func:`temporal_shift`: (N, C, T, H, W) -> (N, C, T, H, W)."""

    def __init__(self, fold_div: int = 8) -> None:
        super().__init__()
        self.fold_div = _args.positive_int("fold_div", fold_div)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(
                f"TemporalShift expects a 5-D tensor (N, C, T, H, W), got shape {tuple(x.shape)}"
            )
        return temporal_shift(x, self.fold_div)

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}"
