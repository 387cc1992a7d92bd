"""rsanet: Relational Self-Attention (NeurIPS 2021) for motion-centric video understanding.

The top-level names are imported lazily so that ``import rsanet`` stays cheap:
``rsanet.create_model``, ``rsanet.list_models`` and ``rsanet.load_model`` come from
:mod:`rsanet.models`.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "create_model": "rsanet.models",
    "list_models": "rsanet.models",
    "load_model": "rsanet.models",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rsanet' has no attribute {name!r}")
