"""Exponential moving average (EMA) of a model's weights."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn


class ModelEMA:
    """A frozen copy of ``model`` whose floating-point parameters follow
    ``ema = decay * ema + (1 - decay) * weight`` after every :meth:`update`; buffers (e.g.
    BatchNorm statistics) are copied as they are. ``module`` is the averaged network."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self._params = {name for name, _ in self.module.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` (same architecture) into the average."""
        ours = self.module.state_dict()
        for key, value in model.state_dict().items():
            target = ours[key]
            if key in self._params and target.dtype.is_floating_point:
                target.lerp_(value.detach(), 1.0 - self.decay)
            else:
                target.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
