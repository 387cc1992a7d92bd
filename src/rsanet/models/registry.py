"""Named model factories, timm style: ``@register_model`` on a small function per model,
:func:`model_factory` to look one up and :func:`list_models` to see them.

This module is a leaf: it imports nothing from the rest of :mod:`rsanet.models`. The
built-in factories register themselves when :mod:`rsanet.models.factories` is imported
(``import rsanet.models`` does it); building a model and loading weights into it is the
job of :mod:`rsanet.models.builder` (:func:`rsanet.models.create_model`).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any

_MODELS: dict[str, Callable[..., Any]] = {}


class UnknownModelError(ValueError):
    """A model name that no factory is registered under."""


def register_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``fn`` under its ``__name__`` (once: a second registration is an error)."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"a model named {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally filtered by a shell-style
    ``pattern`` such as ``"*_tiny"``."""
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def is_model(name: str) -> bool:
    """Whether a factory is registered under ``name``."""
    return name in _MODELS


def similar_model_names(name: str, count: int = 3) -> list[str]:
    """Up to ``count`` registered names close to ``name`` (for "did you mean" hints)."""
    return difflib.get_close_matches(str(name), _MODELS, n=count)


def model_factory(name: str) -> Callable[..., Any]:
    """The factory registered under ``name``; UnknownModelError suggests close names and
    lists the known ones."""
    if name not in _MODELS:
        close = similar_model_names(name)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint}; known models: {', '.join(sorted(_MODELS))}"
        )
    return _MODELS[name]
