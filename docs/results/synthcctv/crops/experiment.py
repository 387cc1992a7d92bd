"""Does SynthCCTV become learnable when the network sees the people at the recordings' own
resolution? One experiment, kept with its records (``log.jsonl``, ``result.json``).

    python docs/results/synthcctv/crops/experiment.py MODEL INIT DATA OUT [EPOCHS [KEY=VALUE ...]]
    e.g. ... rsanet_tiny runs/synthmotion_rsanet/best.pt data/synthcctv runs/crops 9

``KEY=VALUE`` settings override the recipe's configuration as ``rsanet train --set`` does
(the recorded run gave none; the tests shrink the windows per epoch with them).

The recipe (``configs/synthcctv_MODEL.yaml``) squeezes each whole 160 x 120 frame to 64 x 64.
Here training takes 64 x 64 crops of the frames at their own resolution instead: a crop
holding the event actor's keypoint (the ``<position>`` of the ``<object>`` in the AI Hub XML:
the actor's feet) for an event window, anywhere for a normal one. The windows, their labels,
the session split, the optimiser and its schedule are those of the recipe (AdamW 0.003,
weight decay 0.05 on weights only, label smoothing 0.1, gradient norm 5, 0.3 warm-up epochs,
cosine, batch 16, 2,000 windows per epoch). Validation reads the recipe's validation windows
as six 64 x 64 tiles covering the frame: an event class scores its highest tile, normal its
lowest. A loop of its own rather than ``rsanet train``, whose datasets have no such crops.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rsanet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from rsanet.engine.config import load_config
from rsanet.engine.loaders import build_split
from rsanet.inference.event_metrics import roc_auc
from rsanet.models import create_model, init_from_trained

CROP = 64
#: (top, left) of the validation tiles of a 160 x 120 frame
TILES = [(top, left) for top in (0, 56) for left in (0, 48, 96)]
MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)


_KEYPOINTS: dict[str, dict[str, tuple[float, float]]] = {}


def actor_keypoints(video_path: str) -> dict[str, tuple[float, float]]:
    """Object name -> (x, y) pixels of its keypoint, from the recording's XML (read once)."""
    cache = _KEYPOINTS
    if video_path not in cache:
        root = ET.parse(str(Path(video_path).with_suffix(".xml"))).getroot()
        points = {}
        for node in root.iter("object"):
            keypoint = node.find("position/keypoint")
            if keypoint is not None:
                x, y = float(keypoint.findtext("x")), float(keypoint.findtext("y"))
                points[node.findtext("objectname")] = (x, y)
        cache[video_path] = points
    return cache[video_path]


def to_clip(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W), normalised as the recipe's clips."""
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 255
    return (clip - MEAN) / STD


class TrainingCrops(torch.utils.data.Dataset):
    """The recipe's training windows as 64 x 64 crops around the event actor."""

    def __init__(self, windows) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        ds = self.windows
        frames, label = ds.load_frames(index)
        frames = frames[0]
        height, width = frames.shape[1:3]
        window = ds.windows[index]
        video = ds.videos[window.video]
        centre = None
        if label != 0:
            end = window.start_s + ds.sampler.window_s
            points = actor_keypoints(video.path)
            for event in video.events:
                overlaps = event.end_s > window.start_s and event.start_s < end
                if event.label == ds.classes[label] and overlaps and event.actor in points:
                    centre = points[event.actor]
                    break
            if centre is None and points:  # an actor without a keypoint: the first object's
                centre = next(iter(points.values()))
        if centre is None:
            top, left = random.randint(0, height - CROP), random.randint(0, width - CROP)
        else:  # the feet 20-44 px from the left, 42-58 px from the top
            x, y = centre
            left = int(np.clip(random.uniform(x - 44, x - 20), 0, width - CROP))
            top = int(np.clip(random.uniform(y - 58, y - 42), 0, height - CROP))
        return to_clip(frames[:, top : top + CROP, left : left + CROP]), label


class ValidationTiles(torch.utils.data.Dataset):
    """The recipe's validation windows, each as (tiles, 3, T, 64, 64)."""

    def __init__(self, windows) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames, label = self.windows.load_frames(index)
        tiles = [frames[0][:, t : t + CROP, left : left + CROP] for t, left in TILES]
        return torch.stack([to_clip(tile) for tile in tiles]), label


def rounded_auc(positive: torch.Tensor, scores: torch.Tensor) -> float | None:
    """ROC-AUC to 3 places; None where the windows hold only one side."""
    auc = roc_auc(positive.numpy(), scores.numpy())
    return None if auc is None else round(auc, 3)


def main() -> None:
    model_name, init, data, out = sys.argv[1:5]
    epochs = int(sys.argv[5]) if len(sys.argv) > 5 else 9
    overrides = sys.argv[6:]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    random.seed(0)
    family = "rsanet" if model_name.startswith("rsanet") else model_name.split("_")[0]
    config = load_config(
        f"configs/synthcctv_{family}.yaml", [f"data.annotations={data}", *overrides]
    )
    train = build_split(config.data, "train", train=True, seed=0)
    val = build_split(config.data, "val", train=False, seed=0)
    classes = train.classes
    model = create_model(model_name, num_classes=len(classes))
    init_from_trained(model, init)
    weights = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": weights, "weight_decay": 0.05}, {"params": others, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=0.003)
    steps = len(train) // 16
    total, warmup = epochs * steps, int(0.3 * steps)

    def lr_at(step: int) -> float:
        if step < warmup:
            return 0.003 * step / warmup
        return 0.003 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    log = (out / "log.jsonl").open("w")
    step, start = 0, time.time()
    for epoch in range(epochs):
        train.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            TrainingCrops(train), batch_size=16, shuffle=True, num_workers=1, drop_last=True
        )
        model.train()
        loss_sum, seen, correct = 0.0, 0, 0
        for clips, labels in loader:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            logits = model(clips)
            loss = F.cross_entropy(logits, labels, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            loss_sum += loss.item() * len(labels)
            seen += len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            step += 1
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen,
            "train_top1": correct / seen,
            "elapsed_s": time.time() - start,
        }
        print(record, flush=True)
        log.write(json.dumps(record) + "\n")
        log.flush()
    torch.save(model.state_dict(), out / "model.pt")

    model.eval()
    probabilities, truths = [], []
    loader = torch.utils.data.DataLoader(ValidationTiles(val), batch_size=8, num_workers=1)
    with torch.inference_mode():
        for tiles, labels in loader:
            p = model(tiles.flatten(0, 1)).softmax(-1).view(len(labels), len(TILES), -1)
            probabilities.append(p)
            truths.append(labels)
    p, y = torch.cat(probabilities), torch.cat(truths)
    np.savez(out / "val_scores.npz", probs=p.numpy(), labels=y.numpy())
    scores = p.max(1).values
    scores[:, 0] = p[:, :, 0].min(1).values
    predicted = scores.argmax(1)
    present = [c for c in range(len(classes)) if (y == c).any()]
    recalls = [((predicted == c) & (y == c)).sum().item() / (y == c).sum().item() for c in present]
    result = {
        "val_windows": len(y),
        "val_top1": (predicted == y).float().mean().item(),
        "val_mean_class": float(np.mean(recalls)),
        "window_auc": {classes[c]: rounded_auc(y == c, scores[:, c]) for c in present if c},
        "event_vs_normal_auc": rounded_auc(y != 0, 1 - scores[:, 0]),
        "elapsed_s": time.time() - start,
    }
    print(result)
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
