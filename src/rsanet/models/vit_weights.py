"""Initialising the video transformers from an image ViT / DeiT checkpoint (timm layout).

The checkpoint's keys are timm's: ``cls_token``, ``pos_embed`` (1, prefix + h*w, C),
``patch_embed.proj.weight`` (C, 3, p, p) and ``.bias``, ``blocks.{i}.norm1/attn.qkv/
attn.proj/norm2/mlp.fc1/mlp.fc2``, ``norm``, ``head``, and for DeiT (distilled)
``dist_token`` and ``head_dist``. A model takes it when it has an
``image_checkpoint_prefix`` (where the ViT's tokens, positions, blocks and norm live:
``""`` for TimeSformer, ``"spatial."`` for ViViT) and ``image_checkpoint_keys()`` (its keys
the checkpoint must fill).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsanet.models.vit import resize_pos_embed
from rsanet.models.weights import (
    ImageNetLoadResult,
    extract_state_dict,
    load_partial_state_dict,
    read_checkpoint,
    tensor_shape,
)

INFLATIONS = ("center", "average")
_VIT_KEYS = ("cls_token", "dist_token", "pos_embed", "blocks.", "norm.")


@dataclass
class ViTLoadResult(ImageNetLoadResult):
    """What :func:`load_vit_checkpoint` did: ``loaded`` / ``not_loaded`` / ``unused`` as for
    ResNets, plus ``resized`` (model keys whose tensor was resampled or inflated: position
    embeddings, the patch embedding) and ``copied`` (model key -> checkpoint key of the
    tensors used a second time: TimeSformer's temporal attention starts as the spatial)."""

    resized: list[str] = field(default_factory=list)
    copied: dict[str, str] = field(default_factory=dict)


def supports_vit_checkpoint(model: nn.Module) -> bool:
    """Whether ``model`` can take an image ViT/DeiT checkpoint."""
    return hasattr(model, "image_checkpoint_prefix") and callable(
        getattr(model, "image_checkpoint_keys", None)
    )


def inflate_patch_kernel(weight: torch.Tensor, frames: int, mode: str = "center") -> torch.Tensor:
    """A 2-D patch kernel (C, 3, p, p) as a ``frames x p x p`` tubelet kernel: in the
    central frame only (``"center"``, ViViT's best initialisation: a clip of constant frames
    gives the image embedding) or spread evenly over the frames (``"average"``, I3D's
    inflation, same property)."""
    if mode not in INFLATIONS:
        raise ValueError(f"inflation must be one of {INFLATIONS}, got {mode!r}")
    if mode == "average":
        return weight.unsqueeze(2).repeat(1, 1, frames, 1, 1) / frames
    out = weight.new_zeros(weight.shape[0], weight.shape[1], frames, *weight.shape[2:])
    out[:, :, frames // 2] = weight
    return out


def _num_prefix(state: Mapping[str, torch.Tensor]) -> int:
    return 2 if "dist_token" in state else 1


def _fit_pos_embed(
    tensor: torch.Tensor, source_prefix: int, target: torch.Tensor, target_prefix: int
) -> torch.Tensor:
    """Checkpoint position embeddings to the model's prefix tokens and grid."""
    prefix, grid = tensor[:, :source_prefix], tensor[:, source_prefix:]
    if target_prefix < source_prefix:
        prefix = prefix[:, :target_prefix]  # DeiT's distillation position dropped
    elif target_prefix > source_prefix:
        prefix = torch.cat([prefix] + [prefix[:, :1]] * (target_prefix - source_prefix), dim=1)
    count = target.shape[1] - target_prefix
    side = int(round(count**0.5))
    grid = resize_pos_embed(grid, (side, count // side), num_prefix=0)
    return torch.cat([prefix, grid], dim=1)


def load_vit_checkpoint(
    model: nn.Module,
    source: str | Path | Mapping[str, Any],
    *,
    inflation: str = "center",
    temporal_from_spatial: bool = True,
    skip_prefixes: tuple[str, ...] = ("head.", "head_dist."),
) -> ViTLoadResult:
    """Initialise a video transformer's image parts from a ViT/DeiT checkpoint.

    ``source`` is a path or a state dict in timm's layout (``state_dict`` / ``model``
    wrappers and a ``module.`` prefix accepted). Position embeddings are resampled to the
    model's patch grid (bicubic) and to its prefix tokens (a DeiT distillation position is
    dropped for a model without that token); 2-D patch kernels are inflated to the model's
    tubelet (:func:`inflate_patch_kernel` with ``inflation``). With
    ``temporal_from_spatial`` (TimeSformer), each block's temporal attention and its norm
    start as copies of the block's spatial ones, as in the authors' code. The classifier
    (``skip_prefixes``) and a distillation token the model lacks are left unused.
    Anything else that does not fit, and any image key of the model the checkpoint lacks,
    raises CheckpointMismatchError naming the first misfits.
    """
    if not supports_vit_checkpoint(model):
        name = getattr(model, "model_name", type(model).__name__)
        raise ValueError(
            f"{name} has no ViT/DeiT layout to load an image transformer checkpoint into"
        )
    state = extract_state_dict(read_checkpoint(source))
    ours = model.state_dict()
    prefix = model.image_checkpoint_prefix
    source_prefix = _num_prefix(state)
    target_prefix = getattr(model, "image_num_prefix", 1)

    result = ViTLoadResult()
    mismatched, unexpected, to_load = [], [], {}
    for key, tensor in state.items():
        if key.startswith(skip_prefixes) or (key == "dist_token" and target_prefix < 2):
            result.unused.append(key)
            continue
        target_key = prefix + key if key.startswith(_VIT_KEYS) else key
        if target_key not in ours:
            unexpected.append(f"{key} {tensor_shape(tensor)}")
            continue
        target = ours[target_key]
        if key == "pos_embed":
            tensor = _fit_pos_embed(tensor, source_prefix, target, target_prefix)
            result.resized.append(target_key)
        elif key == "patch_embed.proj.weight" and tensor.dim() == 4 and target.dim() == 5:
            tensor = inflate_patch_kernel(tensor, target.shape[2], inflation)
            result.resized.append(target_key)
        if tensor.shape != target.shape:
            mismatched.append(
                f"{key}: checkpoint {tensor_shape(state[key])} vs model {tensor_shape(target)}"
            )
            continue
        to_load[target_key] = tensor.to(target.dtype)
    pairs = ((".attn.", ".temporal_attn."), (".norm1.", ".temporal_norm1."))
    if temporal_from_spatial:
        for key in list(to_load):
            for spatial, temporal in pairs:
                copy_key = key.replace(spatial, temporal)
                if spatial in key and copy_key in ours and copy_key not in to_load:
                    to_load[copy_key] = to_load[key].clone()
                    result.copied[copy_key] = key[len(prefix) :]
    expected = set(model.image_checkpoint_keys())
    missing = [f"{k} {tensor_shape(ours[k])}" for k in ours if k in expected and k not in to_load]
    load_partial_state_dict(
        model,
        to_load,
        result,
        "ViT checkpoint",
        mismatched=mismatched,
        missing=missing,
        unexpected=unexpected,
    )
    return result
