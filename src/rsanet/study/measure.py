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
from torch.utils.data import DataLoader

from rsanet.data.synthmotion import opposite, play_backwards
from rsanet.engine.config import Config


@torch.no_grad()
def reversal_metrics(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """Accuracies (%) of ``model`` on every clip of ``loader`` and on the clip played
    backwards: ``top1``, ``pair_accuracy`` (prediction // 2 == label // 2),
    ``reversed_top1`` (the reversed clip classified as the opposite class),
    ``swap_rate`` (the answer on the reversed clip is the opposite of the answer on the
    clip) and ``same_rate`` (both answers equal: the model ignores the direction)."""
    model.eval()
    counts = dict.fromkeys(("top1", "pair_accuracy", "reversed_top1", "swap_rate", "same_rate"), 0)
    total = 0
    for clips, labels in loader:
        labels = torch.as_tensor(labels).long()
        backward, reversed_labels = play_backwards(clips, labels)
        forward_pred = model(clips).argmax(1)
        backward_pred = model(backward).argmax(1)
        counts["top1"] += int((forward_pred == labels).sum())
        counts["pair_accuracy"] += int((forward_pred // 2 == labels // 2).sum())
        counts["reversed_top1"] += int((backward_pred == reversed_labels).sum())
        counts["swap_rate"] += int((backward_pred == opposite(forward_pred)).sum())
        counts["same_rate"] += int((backward_pred == forward_pred).sum())
        total += labels.numel()
    return {key: 100.0 * value / max(total, 1) for key, value in counts.items()}


def model_cost(model: nn.Module, frames: int, size: int) -> dict[str, float]:
    """Parameters (millions) and GFLOPs (multiply-accumulates of one clip, the papers'
    convention: :func:`rsanet.models.profile_model`)."""
    from rsanet.models import profile_model

    profile = profile_model(model, frames=frames, size=size)
    return {"mparams": profile.params / 1e6, "gflops": profile.gflops}


def measure_run(config: Config, checkpoint: str | Path) -> dict[str, Any]:
    """Reversal metrics and cost of the network saved at ``checkpoint``, on the validation
    split of ``config``'s data."""
    from rsanet.engine.loaders import build_split
    from rsanet.models import load_model

    model = load_model(checkpoint)
    val_set = build_split(config.data, "val", train=False, seed=config.train.seed)
    loader = DataLoader(val_set, batch_size=config.eval.batch_size, shuffle=False)
    metrics = reversal_metrics(model, loader)
    metrics.update(model_cost(model, config.data.num_frames, config.data.size))
    metrics["num_val"] = len(val_set)
    return metrics


def moving_point(frames: np.ndarray) -> tuple[int, int, int]:
    """The query (t, y, x) where the clip (T, H, W, 3) changes most around its middle
    frame: on the moving object rather than on the background."""
    t = frames.shape[0] // 2
    before, after = max(t - 1, 0), min(t + 1, frames.shape[0] - 1)
    change = np.abs(frames[after].astype(np.int32) - frames[before].astype(np.int32)).sum(-1)
    y, x = np.unravel_index(int(change.argmax()), change.shape)
    return t, int(y), int(x)


def kernel_pictures(
    config: Config, checkpoint: str | Path, out_dir: str | Path, *, video: int = 2, head: int = 0
) -> dict[str, Any]:
    """The paper's kernel figure for the first RSA layer of the network at ``checkpoint``:
    basic and relational kernels for validation video ``video`` played forwards and
    backwards (:mod:`rsanet.analysis`), at the query where the clip moves most. Returns the
    query, the layer and, per kernel kind, max |forward - backward| next to max |forward|
    (how much reversing the clip changes it).
    """
    from rsanet.analysis import compare_kernels, draw_kernels
    from rsanet.data.synthmotion import SynthMotion
    from rsanet.models import load_model

    model = load_model(checkpoint)
    data = config.data
    dataset = SynthMotion(
        max(video + 1, 1),
        num_frames=data.num_frames,
        size=data.size,
        seed=config.train.seed,
        split="val",
    )
    clip, label = dataset[video]
    frames = dataset.frames(video)
    comparison = compare_kernels(
        model, clip.unsqueeze(0), head=head, frames=frames, position=moving_point(frames)
    )
    written = draw_kernels(comparison, out_dir)
    summary: dict[str, Any] = {
        "layer": comparison.layer,
        "head": head,
        "position": list(comparison.position),
        "video": video,
        "class": dataset.classes[label],
        "pictures": [str(path) for path in written if path.suffix == ".png"],
        "kinds": {},
    }
    for kind in comparison.kernels["forward"]:
        scale = float(abs(comparison.kernels["forward"][kind]).max())
        summary["kinds"][kind] = {"max_abs": scale, "max_change": comparison.difference(kind)}
    return summary
