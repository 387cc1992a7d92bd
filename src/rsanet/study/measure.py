"""What the study measures of one trained run: accuracy, pair accuracy, the reversal test,
parameters and GFLOPs; and the kernel pictures of one RSA network.

SynthMotion's classes come in pairs (2k, 2k + 1) whose second class is the first played
backwards. For each validation clip the network sees the clip and the clip reversed in
time: a model that sees motion swaps its answer to the opposite class; a model that sees
only the set of frames (TSN) gives the same answer both ways.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rsanet.data.synthmotion import opposite, play_backwards
from rsanet.engine.config import Config


@torch.no_grad()
def reversal_metrics(model: nn.Module, loader: DataLoader) -> dict[str, Any]:
    """Accuracies (%) of ``model`` on every clip of ``loader`` and on the clip played
    backwards: ``top1``, ``pair_accuracy`` (prediction // 2 == label // 2),
    ``reversed_top1`` (the reversed clip classified as the opposite class),
    ``swap_rate`` (the answer on the reversed clip is the opposite of the answer on the
    clip) and ``same_rate`` (both answers equal: the model ignores the direction).

    Also the counts the report's tests need (``num_val``, ``top1_correct``,
    ``pair_correct``) and, per pair of opposite classes, ``pair_top1`` (top-1 % on the
    clips of that pair) over ``pair_clips`` clips.
    """
    model.eval()
    counts = dict.fromkeys(("top1", "pair_accuracy", "reversed_top1", "swap_rate", "same_rate"), 0)
    total = 0
    pair_correct: list[int] = []
    pair_total: list[int] = []
    for clips, labels in loader:
        labels = torch.as_tensor(labels).long()
        backward, reversed_labels = play_backwards(clips, labels)
        forward_pred = model(clips).argmax(1)
        backward_pred = model(backward).argmax(1)
        right = forward_pred == labels
        counts["top1"] += int(right.sum())
        counts["pair_accuracy"] += int((forward_pred // 2 == labels // 2).sum())
        counts["reversed_top1"] += int((backward_pred == reversed_labels).sum())
        counts["swap_rate"] += int((backward_pred == opposite(forward_pred)).sum())
        counts["same_rate"] += int((backward_pred == forward_pred).sum())
        total += labels.numel()
        pairs = labels // 2
        needed = int(pairs.max()) + 1
        pair_correct += [0] * (needed - len(pair_correct))
        pair_total += [0] * (needed - len(pair_total))
        for pair in range(needed):
            mine = pairs == pair
            pair_correct[pair] += int(right[mine].sum())
            pair_total[pair] += int(mine.sum())
    metrics: dict[str, Any] = {key: 100.0 * value / max(total, 1) for key, value in counts.items()}
    metrics.update(
        num_val=total,
        top1_correct=counts["top1"],
        pair_correct=counts["pair_accuracy"],
        pair_top1=[
            100.0 * c / t if t else float("nan")
            for c, t in zip(pair_correct, pair_total, strict=True)
        ],
        pair_clips=pair_total,
    )
    return metrics


def _relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).double().norm() / a.double().norm().clamp_min(1e-30))


@torch.no_grad()
def direction_indices(model: nn.Module, clips: torch.Tensor) -> dict[str, Any]:
    """How much the network's kernels and features depend on the direction of time.

    Each quantity q of a clip is compared with the same quantity of the clip played
    backwards, mirrored in time: frame t with frame T - 1 - t and, for the kernels of an RSA
    layer, the neighbour at temporal offset dt with the one at -dt. The index is
    ``||q(clip) - mirror(q(reversed clip))|| / ||q(clip)||`` over all clips, queries and
    heads. A computation blind to the order of frames (per-frame convolutions, a kernel that
    merely follows its neighbours) scores exactly zero.

    (N, 3, T, H, W) clips -> ``{"kernel": {kind: index averaged over the RSA layers},
    "kernel_by_layer": {layer: {kind: index}}, "features": index of the last stage's
    output}`` (``features`` is None for a network without ``layer4``).
    """
    from rsanet.analysis import rsa_layers

    model.eval()
    layers = rsa_layers(model)
    stage = dict(model.named_modules()).get("layer4")
    captured: dict[str, list[torch.Tensor]] = {}

    def keep(name: str, value: torch.Tensor) -> None:
        captured.setdefault(name, []).append(value.detach())

    handles = [
        layer.register_forward_pre_hook(lambda _m, inputs, name=name: keep(name, inputs[0]))
        for name, layer in layers
    ]
    if stage is not None:
        handles.append(stage.register_forward_hook(lambda _m, _i, out: keep("layer4", out)))
    try:
        model(clips)
        model(clips.flip(2))
    finally:
        for handle in handles:
            handle.remove()
    by_layer: dict[str, dict[str, float]] = {}
    for name, layer in layers:
        forward, backward = captured[name]
        ours, theirs = layer.neighbour_kernels(forward), layer.neighbour_kernels(backward)
        # (N, T, H, W, nh, kt, kh, kw): frame t <-> T - 1 - t and offset dt <-> -dt
        by_layer[name] = {
            kind: _relative_change(ours[kind], theirs[kind].flip(1).flip(5)) for kind in ours
        }
    kinds = sorted({kind for values in by_layer.values() for kind in values})
    kernel = {
        kind: float(np.mean([v[kind] for v in by_layer.values() if kind in v])) for kind in kinds
    }
    features = None
    if stage is not None:
        forward, backward = captured["layer4"]
        features = _relative_change(forward, backward.flip(2))
    return {"kernel": kernel, "kernel_by_layer": by_layer, "features": features}


def analysis_clips(val_set: Dataset, per_class: int) -> torch.Tensor:
    """``per_class`` clips of every class of ``val_set`` (the first ones of each class, in
    order): (per_class * classes, 3, T, H, W)."""
    num_classes = len(val_set.classes)
    chosen: dict[int, list[torch.Tensor]] = {label: [] for label in range(num_classes)}
    for index in range(len(val_set)):
        clip, label = val_set[index]
        if len(chosen[int(label)]) < per_class:
            chosen[int(label)].append(clip)
        if all(len(clips) == per_class for clips in chosen.values()):
            break
    return torch.stack([clip for label in sorted(chosen) for clip in chosen[label]])


def model_cost(model: nn.Module, frames: int, size: int) -> dict[str, float]:
    """Parameters (millions) and GFLOPs (multiply-accumulates of one clip, the papers'
    convention: :func:`rsanet.models.profile_model`)."""
    from rsanet.models import profile_model

    profile = profile_model(model, frames=frames, size=size)
    return {"mparams": profile.params / 1e6, "gflops": profile.gflops}


def untrained_model(config: Config, num_classes: int) -> nn.Module:
    """The network of ``config`` exactly as its training run would start (initialised from
    ``train.seed``), for the study's negative controls."""
    from rsanet.engine.checkpoint import seed_everything
    from rsanet.models import create_model

    options = dict(config.model.options)
    for key in ("drop_rate", "drop_path_rate"):
        if getattr(config.model, key) is not None:
            options[key] = getattr(config.model, key)
    seed_everything(config.train.seed)
    return create_model(
        config.model.name, num_classes=num_classes, num_frames=config.data.num_frames, **options
    )


def measure_model(
    config: Config, model: nn.Module, *, analysis_per_class: int = 4
) -> dict[str, Any]:
    """Reversal metrics, direction indices and cost of ``model`` on the validation split of
    ``config``'s data."""
    from rsanet.engine.loaders import build_split

    val_set = build_split(config.data, "val", train=False, seed=config.train.seed)
    loader = DataLoader(val_set, batch_size=config.eval.batch_size, shuffle=False)
    metrics = reversal_metrics(model, loader)
    metrics.update(model_cost(model, config.data.num_frames, config.data.size))
    if analysis_per_class > 0:
        metrics["direction"] = direction_indices(model, analysis_clips(val_set, analysis_per_class))
    return metrics


def measure_run(config: Config, checkpoint: str | Path, **options: Any) -> dict[str, Any]:
    """:func:`measure_model` of the network saved at ``checkpoint``."""
    from rsanet.models import load_model

    return measure_model(config, load_model(checkpoint), **options)


def moving_point(frames: np.ndarray) -> tuple[int, int, int]:
    """The query (t, y, x) where the clip (T, H, W, 3) changes most around its middle
    frame: on the moving object rather than on the background."""
    t = frames.shape[0] // 2
    before, after = max(t - 1, 0), min(t + 1, frames.shape[0] - 1)
    change = np.abs(frames[after].astype(np.int32) - frames[before].astype(np.int32)).sum(-1)
    y, x = np.unravel_index(int(change.argmax()), change.shape)
    return t, int(y), int(x)


def kernel_pictures(
    config: Config, checkpoint: str | Path, *, video: int = 2, head: int = 0
) -> dict[str, Any]:
    """The data of the paper's kernel figure for the first RSA layer of the network at
    ``checkpoint``: basic and relational kernels for validation video ``video`` played
    forwards and backwards (:mod:`rsanet.analysis`), at the query where the clip moves
    most. Plain data (the kernels as nested lists), so that the figure can be drawn again
    from the study's records alone (:func:`kernel_comparison`)."""
    from rsanet.analysis import compare_kernels
    from rsanet.data.synthmotion import SynthMotion
    from rsanet.models import load_model

    model = load_model(checkpoint)
    data = config.data
    dataset = SynthMotion(
        video + 1, num_frames=data.num_frames, size=data.size, seed=config.train.seed, split="val"
    )
    clip, label = dataset[video]
    frames = dataset.frames(video)
    comparison = compare_kernels(
        model, clip.unsqueeze(0), head=head, frames=frames, position=moving_point(frames)
    )
    return {
        "layer": comparison.layer,
        "head": head,
        "position": list(comparison.position),
        "cells": {d: list(c) for d, c in comparison.cells.items()},
        "video": video,
        "class": dataset.classes[label],
        "clip": {"num_frames": data.num_frames, "size": data.size, "seed": config.train.seed},
        "kernels": {
            direction: {kind: value.tolist() for kind, value in kinds.items()}
            for direction, kinds in comparison.kernels.items()
        },
    }


def kernel_comparison(summary: dict[str, Any]):
    """The :class:`rsanet.analysis.KernelComparison` of a :func:`kernel_pictures` summary
    (its query frame rendered again from the generator), ready for
    :func:`rsanet.analysis.draw_kernels`."""
    from rsanet.analysis import KernelComparison
    from rsanet.data.synthmotion import SynthMotion

    clip = summary["clip"]
    dataset = SynthMotion(
        summary["video"] + 1,
        num_frames=clip["num_frames"],
        size=clip["size"],
        seed=clip["seed"],
        split="val",
    )
    position = tuple(summary["position"])
    return KernelComparison(
        layer=summary["layer"],
        head=summary["head"],
        position=position,
        cells={d: tuple(c) for d, c in summary["cells"].items()},
        kernels={
            direction: {kind: np.asarray(value, np.float32) for kind, value in kinds.items()}
            for direction, kinds in summary["kernels"].items()
        },
        frame=dataset.frames(summary["video"])[position[0]],
    )
