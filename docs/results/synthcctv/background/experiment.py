"""The record of one experiment: what changed in the scene, given to the network directly.

A fixed camera's recent past is a background: a bag set down (dumping) is in the window and
not in it, a bag taken (theft) the reverse, a fallen person (fainting) lies where the
ground was. Shown the seconds before a window as four more frames (``context/``), the
network hardly used them. Here it is given the difference instead: each clip is read as in
``context/experiment.py`` (4 frames spread over the 8 s before the window, then the
window's 16), the background is the per-pixel median of the 4 context frames, and the
network's stem convolves the window's frames as usual plus, through a second convolution of
the same shape (``background_conv``), each frame's difference from the background; the two
are summed before the stem's batch norm. The second convolution starts at zero, so at the
start of training the network is the 16-frame network started from its SynthMotion job,
and the difference enters only as far as training makes it. Everything else is the budget
configuration.

    python docs/results/synthcctv/background/experiment.py train \\
        configs/synthcctv_tsm_budget.yaml --set data.annotations=D/train4x data.num_frames=20 \\
        --output RUN
    python docs/results/synthcctv/background/experiment.py scores RUN/last.pt D/test OUT.npz 2 0.5 1

A checkpoint trained here (saved as ``tsm_tiny`` with the extra ``background_conv``
weights) is read only through this script, which builds ``tsm_tiny`` with the background
stem; ``rsanet predict`` refuses its unexpected weights. Kept as the record of the run in
``docs/events.md``.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch
from torch import nn

import rsanet.models  # noqa: F401  (registers the factories)
import rsanet.models.registry as registry

HERE = Path(__file__).resolve().parent


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


context = _module(HERE.parent / "context" / "experiment.py", "context_experiment")


def background_stem(self, x: torch.Tensor) -> torch.Tensor:
    """Clip (N, C, 4 + T, H, W), the context first -> (N, width, T, H/4, W/4): the stem
    of the window's T frames, plus ``background_conv`` of their difference from the
    per-pixel median of the context frames."""
    count = context.CONTEXT_FRAMES
    if x.shape[2] <= count:
        raise ValueError(f"a clip needs more than its {count} context frames, got {x.shape[2]}")
    past, window = x[:, :, :count], x[:, :, count:]
    background = past.median(dim=2, keepdim=True).values
    mixed = self.conv1(window) + self.background_conv(window - background)
    return self.maxpool(self.relu(self.bn1(mixed)))


def with_background_stem(model: nn.Module) -> nn.Module:
    """``model`` (a ResNetTSN) reading clips through :func:`background_stem`, its
    ``background_conv`` (the shape of ``conv1``) at zero."""
    conv = model.conv1
    model.background_conv = nn.Conv3d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=False,
    )
    nn.init.zeros_(model.background_conv.weight)
    model.stem = types.MethodType(background_stem, model)
    return model


def use_background_tsm() -> None:
    """Make ``tsm_tiny`` build with the background stem in this process."""
    plain = registry._MODELS["tsm_tiny"]

    def tsm_tiny(**kwargs):
        return with_background_stem(plain(**kwargs))

    registry._MODELS["tsm_tiny"] = tsm_tiny


def run(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command in ("train", "scores"):
        use_background_tsm()
        return context.run(argv)
    sys.exit(f"usage: {sys.argv[0]} train RSANET_TRAIN_ARGS... | scores CHECKPOINT DATA OUT ...")


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
