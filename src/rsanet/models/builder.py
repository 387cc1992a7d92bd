"""Building models and loading weights into them (the registry only names factories).

* :func:`create_model` builds a registered model and, with ``pretrained``, initialises it
  from an ImageNet checkpoint (:func:`rsanet.models.load_imagenet_resnet`,
  :func:`rsanet.models.load_vit_checkpoint`).
* :func:`load_model` rebuilds a trained model from one of our files: a checkpoint
  (:func:`rsanet.models.save_checkpoint`, ``rsanet train``) or a weights-only safetensors
  file with its JSON (:mod:`rsanet.models.safetensors_file`).
* :func:`select_weights` picks the weights of a checkpoint to use: its EMA weights when it
  has them (the ones ``rsanet train`` validated and ``rsanet eval`` scores), or the raw ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn

from rsanet.models.registry import model_factory
from rsanet.models.safetensors_file import SAFETENSORS_FORMAT, is_weights_file, read_weights_file
from rsanet.models.uniformer import UniFormer, load_uniformer_checkpoint
from rsanet.models.vit import VideoTransformer
from rsanet.models.vit_weights import load_vit_checkpoint
from rsanet.models.weights import (
    CHECKPOINT_VERSION,
    TRANSFORM_BLOCKS,
    TransformBlocks,
    load_imagenet_resnet,
    load_state_dict_checked,
    model_config,
    read_checkpoint,
)

#: which weights of a checkpoint to use: "auto" (EMA when present, else raw), "ema", "raw"
Weights = Literal["auto", "ema", "raw"]
WEIGHTS: tuple[str, ...] = get_args(Weights)


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    num_frames: int | None = None,
    pretrained: str | Path | None = None,
    pretrained_transform_blocks: TransformBlocks | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build the registered model ``name``.

    Args:
        name: a name from :func:`rsanet.models.list_models`.
        num_classes: classifier outputs (default: the factory's, 174 for Something-V1).
        num_frames: clip length T (default: the factory's: 8; 16 for MViT and UniFormer-S/B,
            32 for vivit_b).
        pretrained: path of a 2-D ImageNet checkpoint: a ResNet in torchvision's layout,
            inflated into the backbone by :func:`rsanet.models.load_imagenet_resnet`, or for
            the video transformers with a ViT part (TimeSformer, ViViT) a ViT/DeiT in timm's
            layout, loaded by :func:`rsanet.models.load_vit_checkpoint`; for UniFormer the
            authors' 2-D ImageNet UniFormer, inflated by
            :func:`rsanet.models.load_uniformer_checkpoint`.
        pretrained_transform_blocks: for a ResNet with ``pretrained``, how its transform
            blocks are initialised: ``"fresh"`` (default, the authors' way: the whole block
            keeps its initialisation, an identity residual) or
            ``"imagenet-except-transform"`` (ours: only the transform is left alone); see
            :func:`rsanet.models.load_imagenet_resnet`. Without ``pretrained`` it has no
            effect (a run resumed from a checkpoint keeps the same model options).
        overrides: any other constructor argument of the model (e.g. ``drop_path_rate``,
            ``placement``, ``transform_options``).

    The model carries ``rsanet_config = {"name": name, **kwargs}`` so that
    :func:`rsanet.models.save_checkpoint` can record how to rebuild it.
    """
    factory = model_factory(name)
    if (
        pretrained_transform_blocks is not None
        and pretrained_transform_blocks not in TRANSFORM_BLOCKS
    ):
        raise ValueError(
            "pretrained_transform_blocks must be one of "
            f"{', '.join(map(repr, TRANSFORM_BLOCKS))}, got {pretrained_transform_blocks!r}"
        )
    kwargs = dict(overrides)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if num_frames is not None:
        kwargs["num_frames"] = num_frames
    model = factory(**kwargs)
    config = {"name": name, **kwargs}
    for key in ("num_classes", "num_frames"):
        if hasattr(model, key):
            config[key] = getattr(model, key)
    model.rsanet_config = config
    if pretrained is not None:
        if isinstance(model, VideoTransformer | UniFormer):
            if pretrained_transform_blocks is not None:
                raise ValueError(f"pretrained_transform_blocks applies to ResNets, not to {name!r}")
            if isinstance(model, UniFormer):
                load_uniformer_checkpoint(model, pretrained)
            else:
                load_vit_checkpoint(model, pretrained)
        else:
            load_imagenet_resnet(
                model, pretrained, transform_blocks=pretrained_transform_blocks or "fresh"
            )
    return model


def read_model_file(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """One of our model files as a checkpoint dict: a path ending in ``.safetensors`` (or
    the ``.json`` beside one) is read by :func:`rsanet.models.read_weights_file` (no
    pickle), any other path by :func:`rsanet.models.read_checkpoint`
    (``torch.load(..., weights_only=True)``); a dict is returned as a copy."""
    if isinstance(source, Mapping):
        return dict(source)
    if is_weights_file(source):
        return read_weights_file(source)
    return read_checkpoint(source)


def select_weights(
    checkpoint: Mapping[str, Any], weights: Weights = "auto", *, where: str = "the checkpoint"
) -> tuple[dict[str, torch.Tensor], str]:
    """The weights of ``checkpoint`` to load and which they are (``"ema"`` or ``"raw"``).

    ``"auto"``: the EMA weights when the checkpoint has them (a run trained with
    ``train.ema``: the weights it validated, and those ``rsanet eval`` scores), else the raw
    ones; ``"ema"`` or ``"raw"`` insist (ValueError when the checkpoint lacks them). A
    weights-only file holds one set, the kind its JSON records."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        raise ValueError(f"{where} has no state_dict; top-level keys: {sorted(checkpoint)[:10]}")
    held = checkpoint.get("weights") if checkpoint.get("format") == SAFETENSORS_FORMAT else "raw"
    ema = checkpoint.get("ema")
    if held == "ema":
        if weights == "raw":
            raise ValueError(
                f"{where} holds the EMA weights only; export the raw ones from the training "
                "checkpoint with --weights raw"
            )
        return dict(state), "ema"
    if weights != "raw" and isinstance(ema, Mapping):
        return dict(ema), "ema"
    if weights == "ema":
        raise ValueError(
            f"{where} has no EMA weights (trained without train.ema); use the raw weights "
            "(weights 'raw' or 'auto')"
        )
    return dict(state), "raw"


def load_model(
    source: str | Path | Mapping[str, Any],
    *,
    weights: Weights = "auto",
    eval_mode: bool = True,
) -> nn.Module:
    """Rebuild a trained model and load its weights, in evaluation mode unless
    ``eval_mode=False``.

    ``source`` is a checkpoint written by :func:`rsanet.models.save_checkpoint` or
    ``rsanet train`` (a path or the loaded dict), or a weights-only ``.safetensors`` file
    (the path of it or of the JSON beside it). ``weights`` picks the weights (see
    :func:`select_weights`): by default the EMA weights when the checkpoint has them, the
    ones ``rsanet eval`` scores. Extra entries (``classes``, ...) are available through
    :func:`read_model_file`; ``model.rsanet_weights`` says which weights were loaded."""
    checkpoint = read_model_file(source)
    where = str(source) if not isinstance(source, Mapping) else "the checkpoint"
    if not isinstance(checkpoint.get("model"), str):
        raise ValueError(
            "not an rsanet checkpoint (no 'model' name); top-level keys: "
            f"{sorted(checkpoint)[:10]} (the authors' checkpoints load with "
            "rsanet.compat.load_official_checkpoint)"
        )
    if checkpoint.get("format") != SAFETENSORS_FORMAT:
        version = checkpoint.get("format_version", CHECKPOINT_VERSION)
        if version > CHECKPOINT_VERSION:
            raise ValueError(
                f"checkpoint format_version {version} is newer than this rsanet "
                f"({CHECKPOINT_VERSION})"
            )
    state, kind = select_weights(checkpoint, weights, where=where)
    model = create_model(checkpoint["model"], **dict(checkpoint.get("model_config") or {}))
    load_state_dict_checked(model, state, what="checkpoint" if kind == "raw" else "EMA weights")
    model.rsanet_weights = kind
    return model.eval() if eval_mode else model


def init_from_trained(
    model: nn.Module, source: str | Path, *, weights: Weights = "auto"
) -> dict[str, list[str]]:
    """Initialise ``model`` from a trained model of the same network (fine-tuning on new
    classes, as MMAction2's ``load_from``): every tensor of ``source`` (a checkpoint or a
    weights-only file; EMA weights as :func:`select_weights` picks them) whose name and
    shape match is copied in; the rest, typically the classifier of another class count,
    keeps ``model``'s initialisation. Returns ``{"loaded": names, "kept": names}``.
    ValueError (one line, naming the file) when ``source`` holds another network or no
    tensor of ``model``'s backbone fits."""
    checkpoint = read_model_file(source)
    name = checkpoint.get("model")
    expected = model_config(model)["name"]
    if name != expected:
        raise ValueError(
            f"{source} holds a {name!r}, not the {expected!r} being trained: initialise from "
            "a model of the same name (model.init_from)"
        )
    state, _ = select_weights(checkpoint, weights, where=str(source))
    own = model.state_dict()
    loaded = [k for k, v in own.items() if k in state and tuple(state[k].shape) == tuple(v.shape)]
    kept = [k for k in own if k not in set(loaded)]
    if not any(not k.startswith(("fc.", "head.")) for k in loaded):
        raise ValueError(f"{source}: none of its tensors fits {expected}'s backbone")
    with torch.no_grad():
        for key in loaded:
            own[key].copy_(state[key])
    return {"loaded": loaded, "kept": kept}
