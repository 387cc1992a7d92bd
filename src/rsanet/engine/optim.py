"""Optimiser, learning-rate schedule and loss of a run.

* :func:`param_groups`: two groups, weight decay on the weights of convolutions, linear
  layers and attention projections, none on normalisation parameters and biases.
* :func:`build_optimizer`: SGD (with Nesterov momentum) or AdamW.
* :class:`WarmupCosine`: per optimiser step, a linear warm-up to the peak rate followed by a
  cosine decay to ``min_lr`` (or a constant rate).
* :func:`build_loss`: cross-entropy with label smoothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from rsanet.engine.config import OptimConfig

#: module types whose parameters never get weight decay
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def param_groups(
    model: nn.Module, weight_decay: float, *, no_decay_norm_bias: bool = True
) -> list[dict]:
    """Parameter groups for an optimiser: ``[{"params": decayed, "weight_decay": wd},
    {"params": norms, biases and the names of ``model.no_weight_decay()`` (timm's convention
    for class tokens and position embeddings), "weight_decay": 0}]`` (one group when
    ``no_decay_norm_bias`` is False). Parameters without gradients are left out."""
    exempt = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    exempt_ids = {id(p) for n, p in model.named_parameters() if n in exempt}
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            skip = no_decay_norm_bias and (
                isinstance(module, NORM_TYPES) or name == "bias" or id(param) in exempt_ids
            )
            (no_decay if skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "decay"}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "name": "no_decay"})
    return groups


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum or AdamW over :func:`param_groups`."""
    groups = param_groups(model, config.weight_decay, no_decay_norm_bias=config.no_decay_norm_bias)
    if config.name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
        )
    if config.name == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas))
    raise ValueError(f"optim.name must be 'sgd' or 'adamw', got {config.name!r}")


def warmup_cosine_factor(
    step: int,
    total_steps: int,
    warmup_steps: int,
    min_factor: float = 0.0,
    schedule: str = "cosine",
    clock_progress: float = 0.0,
) -> float:
    """Learning-rate multiplier of optimiser step ``step`` (0-based): ``(step + 1) /
    warmup_steps`` during the warm-up, then a cosine from 1 down to ``min_factor`` at
    ``total_steps`` (or 1 throughout for ``schedule="constant"``). ``clock_progress``, the
    share of a time budget spent, moves the cosine on where it is ahead of the steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max((step - warmup_steps) / span, clock_progress))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine(LRScheduler):
    """Per-step linear warm-up then cosine decay; call :meth:`step` after every optimiser
    step. Its state (``last_epoch`` counts steps) is saved with the checkpoint. Under a
    time budget, set :attr:`clock_progress` (the share spent) before each :meth:`step`."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        total_steps: int,
        warmup_steps: int,
        min_lr: float = 0.0,
        schedule: str = "cosine",
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.min_lr, self.schedule = float(min_lr), schedule
        self.clock_progress = 0.0
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        lrs = []
        for base in self.base_lrs:
            floor = min(self.min_lr / base, 1.0) if base > 0 else 0.0
            lrs.append(
                base
                * warmup_cosine_factor(
                    step,
                    self.total_steps,
                    self.warmup_steps,
                    floor,
                    self.schedule,
                    self.clock_progress,
                )
            )
        return lrs


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, *, epochs: int, steps_per_epoch: int
) -> WarmupCosine:
    """The schedule of ``config`` over ``epochs * steps_per_epoch`` optimiser steps."""
    return WarmupCosine(
        optimizer,
        total_steps=epochs * steps_per_epoch,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        min_lr=config.min_lr,
        schedule=config.schedule,
    )


def build_loss(config: OptimConfig) -> nn.Module:
    """Cross-entropy on logits with ``config.label_smoothing``."""
    return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
