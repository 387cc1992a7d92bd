"""Training checkpoints: the full state needed for an exact resume.

A training checkpoint is an rsanet model checkpoint (``format``, ``model``,
``model_config``, ``state_dict``: :func:`rsanet.models.load_model` rebuilds the network from
it) with the training state beside it: ``optimizer``, ``scheduler``, ``scaler``, ``ema``,
``epoch`` (epochs complete), ``step`` (optimiser steps taken), ``rng`` (torch, CUDA, numpy
and Python generator states), ``sampler``, ``best_score`` (of ``train.best_metric``),
``best_top1``, ``best_epoch``, ``elapsed_s`` (the run's wall time so far), ``budget_spent``,
``closing_s`` and ``cosine_start_s`` (``train.time_budget_min``'s state), ``classes``,
``config`` and ``metrics``. Everything is tensors and plain Python values, so ``torch.load(...,
weights_only=True)`` reads it.

Files are serialised in memory, then written atomically (:mod:`rsanet.atomic`: a temporary
file in the same folder, flushed to disk, then renamed over the target): a crash or a full
disk (:class:`rsanet.atomic.DiskFullError`) leaves the previous checkpoint intact. A state
holding NaN or infinite numbers is never written (:class:`NonFiniteStateError`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: the training-state entries of a checkpoint (besides the model's)
TRAINING_KEYS = ("optimizer", "scheduler", "scaler", "ema", "epoch", "step", "rng", "sampler")
#: how many non-finite tensors a message names
_SHOWN = 3


class NonFiniteError(RuntimeError):
    """A number that training or testing depends on became NaN or infinite: an error,
    never a result (the message names where, and the last good checkpoint)."""


class NonFiniteStateError(NonFiniteError):
    """Weights or BatchNorm statistics hold NaN or infinite values."""


# -- finiteness ---------------------------------------------------------------------------


def nonfinite_entries(state: Mapping[str, Any]) -> list[str]:
    """The names of the floating-point tensors of ``state`` (a state dict) that hold NaN
    or infinite values; one fused check, names only computed when something is wrong."""
    tensors = [
        (k, v)
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel()
    ]
    if not tensors:
        return []
    with torch.no_grad():
        finite = torch.stack([torch.isfinite(v).all() for _, v in tensors])
        if bool(finite.all()):
            return []
        return [k for (k, _), ok in zip(tensors, finite.tolist(), strict=True) if not ok]


def describe_nonfinite(names: Iterable[str]) -> str:
    """``"layer1.0.bn1.running_var, fc.weight (and 3 more)"``."""
    names = list(names)
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" (and {len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


# -- random number generators -------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """The states of torch's CPU (and CUDA) generators, numpy's and Python's, as tensors
    and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# -- reading and writing ------------------------------------------------------------------


def save_training_checkpoint(path: str | Path, model: torch.nn.Module, **state: Any) -> Path:
    """Write ``model`` (in the rsanet checkpoint format of
    :func:`rsanet.models.save_checkpoint`) and the training ``state`` entries atomically;
    returns the path. Raises :class:`NonFiniteStateError` (writing nothing) when the
    weights, BatchNorm statistics or EMA weights hold NaN or infinite values, and
    :class:`rsanet.atomic.DiskFullError` on a full disk (the previous file intact)."""
    from rsanet.models.weights import save_checkpoint

    weights = {k: v.detach() for k, v in model.state_dict().items()}
    bad = nonfinite_entries(weights)
    bad += [f"ema.{k}" for k in nonfinite_entries(state.get("ema") or {})]
    if bad:
        raise NonFiniteStateError(
            f"not saving {path}: the model holds NaN or infinite values in "
            f"{describe_nonfinite(bad)}"
        )
    return save_checkpoint(path, model, **state)


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint written by :func:`save_training_checkpoint`; ValueError when
    the file holds only a model (nothing to resume) or NaN / infinite weights."""
    from rsanet.models import read_checkpoint

    checkpoint = read_checkpoint(path)
    missing = [k for k in ("optimizer", "epoch", "step") if k not in checkpoint]
    if missing:
        raise ValueError(
            f"{path} holds no training state (missing {', '.join(missing)}): it can be "
            "evaluated or used as initialisation (model.pretrained is for ImageNet ResNets), "
            "not resumed"
        )
    state = checkpoint.get("state_dict")
    bad = nonfinite_entries(state) if isinstance(state, Mapping) else []
    ema = checkpoint.get("ema")
    bad += [f"ema.{k}" for k in (nonfinite_entries(ema) if isinstance(ema, Mapping) else [])]
    if bad:
        raise ValueError(
            f"{path} holds NaN or infinite values ({describe_nonfinite(bad)}): it is not a "
            "state to resume from; resume from an earlier checkpoint or start afresh"
        )
    return checkpoint
