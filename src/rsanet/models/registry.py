"""Named model factories, timm style: ``@register_model`` on a small function per model,
``create_model(name, ...)`` to build one and ``list_models()`` to see them."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from rsanet.models.weights import TransformBlocks

_MODELS: dict[str, Callable[..., nn.Module]] = {}

#: modules whose import registers the built-in factories
_FACTORY_MODULES = ("rsanet.models.factories",)


class UnknownModelError(ValueError):
    """``create_model`` was given a name that no factory is registered under."""


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its ``__name__`` (once: a second registration is an error)."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"a model named {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def _ensure_builtin_models() -> None:
    for module in _FACTORY_MODULES:
        importlib.import_module(module)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally filtered by a shell-style
    ``pattern`` such as ``"*_tiny"``."""
    _ensure_builtin_models()
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def is_model(name: str) -> bool:
    _ensure_builtin_models()
    return name in _MODELS


def model_factory(name: str) -> Callable[..., nn.Module]:
    """The factory registered under ``name``; UnknownModelError lists the known names."""
    _ensure_builtin_models()
    if name not in _MODELS:
        close = difflib.get_close_matches(str(name), _MODELS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint}; known models: {', '.join(sorted(_MODELS))}"
        )
    return _MODELS[name]


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    num_frames: int | None = None,
    pretrained: str | Path | None = None,
    pretrained_transform_blocks: TransformBlocks | None = None,
    **overrides,
) -> nn.Module:
    """Build the registered model ``name``.

    Args:
        name: a name from :func:`list_models`.
        num_classes: classifier outputs (default: the factory's, 174 for Something-V1).
        num_frames: clip length T (default: the factory's: 8; 16 for MViT, 32 for vivit_b).
        pretrained: path of a 2-D ImageNet checkpoint: a ResNet in torchvision's layout,
            inflated into the backbone by :func:`rsanet.models.load_imagenet_resnet`, or for
            the video transformers with a ViT part (TimeSformer, ViViT) a ViT/DeiT in timm's
            layout, loaded by :func:`rsanet.models.load_vit_checkpoint`.
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
    if pretrained_transform_blocks is not None:
        from rsanet.models.weights import TRANSFORM_BLOCKS

        if pretrained_transform_blocks not in TRANSFORM_BLOCKS:
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
        from rsanet.models.vit import VideoTransformer
        from rsanet.models.vit_weights import load_vit_checkpoint
        from rsanet.models.weights import load_imagenet_resnet

        if isinstance(model, VideoTransformer):
            if pretrained_transform_blocks is not None:
                raise ValueError(f"pretrained_transform_blocks applies to ResNets, not to {name!r}")
            load_vit_checkpoint(model, pretrained)
        else:
            load_imagenet_resnet(
                model, pretrained, transform_blocks=pretrained_transform_blocks or "fresh"
            )
    return model
