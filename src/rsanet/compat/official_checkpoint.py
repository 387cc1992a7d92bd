"""The authors' released RSANet-R50 checkpoints (KimManjin/RSA) as our ``rsanet_r50``.

Their ``resnet_rgb_model_best.pth.tar`` is a dict whose ``state_dict`` holds

* ``module.base_model.<key>``: the ResNet-50 with torchvision's names and 3-D kernels
  (1 x k x k), the RSA layers at ``layer{s}.{i}.conv2.*`` (``projection.weight``,
  ``H1.weight``, ``H2.weight``, ``G.weight``, ``P1``, ``I``), ``bn2`` kept after them;
* ``module.new_fc.weight`` (classes, 2048, 1) and ``module.new_fc.bias``: a per-frame
  1x1 Conv1d classifier whose logits are averaged over frames (with dropout 0 they used
  ``base_model.fc1`` instead).

Their network takes the clip as (N, T*3, H, W), frame-major; :func:`official_clip_to_ours`
turns it into our (N, 3, T, H, W).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rsanet.compat.official_layer import (
    PARAMETER_NAMES,
    official_layer_state_dict_to_ours,
    rsa_kwargs_from_official,
)
from rsanet.layers import RSA
from rsanet.models import create_model
from rsanet.models.resnet import ResNetTSN
from rsanet.models.weights import (
    CheckpointMismatchError,
    load_state_dict_checked,
    read_checkpoint,
)

#: the official constructor arguments of every RSA layer of RSANet-R50 (d_in = d_out =
#: planes of the stage; dk = dv = dd = 0 mean planes/8), from their training scripts
OFFICIAL_RSA_ARGS = {
    "nh": 8,
    "dk": 0,
    "dv": 0,
    "dd": 0,
    "kernel_size": (5, 7, 7),
    "stride": (1, 1, 1),
    "kernel_type": "VplusR",
    "feat_type": "VplusR",
}
_BASE = "base_model."


def official_clip_to_ours(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The authors' input (N, T*3, H, W), frames major -> ours (N, 3, T, H, W)."""
    if x.dim() != 4 or x.shape[1] != 3 * num_frames:
        raise ValueError(
            f"the official clip layout is (N, {3 * num_frames}, H, W) for {num_frames} frames "
            f"(frame-major RGB), got {tuple(x.shape)}"
        )
    n, _, h, w = x.shape
    return x.reshape(n, num_frames, 3, h, w).transpose(1, 2)


def _official_state_dict(source: str | Path | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    checkpoint = read_checkpoint(source)
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise ValueError("official checkpoint: 'state_dict' is not a dict of tensors")
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    if not any(k.startswith(_BASE) for k in state):
        raise ValueError(
            "not an official RSANet checkpoint: no 'base_model.' keys (with or without "
            f"'module.'); first keys: {sorted(state)[:5]}"
        )
    return state


def official_state_dict_to_ours(
    state: Mapping[str, torch.Tensor], model: ResNetTSN
) -> dict[str, torch.Tensor]:
    """Rename (and reshape) an official RSANet state dict (``module.`` removed) to the
    state dict of our ``model`` (an ``rsanet_r50``). Raises ValueError naming the first
    misfit."""
    ours: dict[str, torch.Tensor] = {}
    rsa_prefixes = []
    for name, block in model.named_blocks():
        if not isinstance(block.conv2, RSA):
            continue
        layer = block.conv2
        official = {"d_in": layer.in_channels, "d_out": layer.out_channels, **OFFICIAL_RSA_ARGS}
        expected = rsa_kwargs_from_official(official)
        differ = [
            f"{k}: ours {getattr(layer, k)!r}, theirs {v!r}"
            for k, v in expected.items()
            if getattr(layer, k) != v
        ]
        if differ:
            raise ValueError(
                f"{name}.conv2 differs from the official RSA layer: {', '.join(differ)}"
            )
        prefix = f"{_BASE}{name}.conv2."
        rsa_prefixes.append(prefix)
        unknown = [
            k for k in state if k.startswith(prefix) and k[len(prefix) :] not in PARAMETER_NAMES
        ]
        if unknown:
            raise ValueError(f"official checkpoint has RSA entries we do not know: {unknown[:5]}")
        for key, tensor in official_layer_state_dict_to_ours(state, layer, prefix=prefix).items():
            ours[f"{name}.conv2.{key}"] = tensor
    classifier = None
    if "new_fc.weight" in state:
        classifier = "new_fc."
    elif f"{_BASE}fc1.weight" in state:
        classifier = f"{_BASE}fc1."
    for key, tensor in state.items():
        if key.startswith(tuple(rsa_prefixes)):
            continue  # converted above (anything left over is flagged by the fit check)
        if classifier and key.startswith(classifier):
            suffix = key[len(classifier) :]
            if suffix == "weight" and tensor.dim() == 3 and tensor.shape[-1] == 1:
                tensor = tensor.squeeze(-1)  # Conv1d (classes, C, 1) -> Linear (classes, C)
            ours[f"fc.{suffix}"] = tensor
        elif key.startswith(_BASE):
            ours[key[len(_BASE) :]] = tensor
        else:
            ours[key] = tensor  # unexpected: reported by the fit check
    return ours


def load_official_checkpoint(
    source: str | Path | Mapping[str, Any], num_classes: int = 174, num_frames: int = 8
) -> ResNetTSN:
    """Our ``rsanet_r50`` with the weights of the authors' checkpoint (a path to
    ``resnet_rgb_model_best.pth.tar`` or its loaded dict, with or without the ``module.``
    prefix), in evaluation mode. Its outputs equal the official network's on the same clip
    (ours as (N, 3, T, H, W); see :func:`official_clip_to_ours`).

    Raises CheckpointMismatchError naming the first keys that do not fit, with both shapes
    (e.g. a classifier for another number of classes).
    """
    state = _official_state_dict(source)
    for key in ("new_fc.weight", f"{_BASE}fc1.weight"):
        if key in state and state[key].shape[0] != num_classes:
            raise CheckpointMismatchError(
                f"official checkpoint's classifier {key} has shape {tuple(state[key].shape)}: "
                f"{state[key].shape[0]} classes, not num_classes={num_classes}; pass "
                f"num_classes={state[key].shape[0]}"
            )
    model = create_model("rsanet_r50", num_classes=num_classes, num_frames=num_frames)
    converted = official_state_dict_to_ours(state, model)
    load_state_dict_checked(model, converted, what="official checkpoint")
    return model.eval()
