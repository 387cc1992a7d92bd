"""Switches for RSA's fused kernels, one per kind, read from the environment at every call.

``RSANET_NATIVE=0`` turns the C++ CPU kernels (:mod:`rsanet.layers.native`) off and
``RSANET_TRITON=0`` the Triton GPU kernels (:mod:`rsanet.layers.gpu`); either way the same
products run as PyTorch operators. Nothing is cached, so setting a variable between two calls
(as ``benchmarks/rsa_layer.py`` does) takes effect at the next call.
"""

from __future__ import annotations

import os

NATIVE_SWITCH = "RSANET_NATIVE"
TRITON_SWITCH = "RSANET_TRITON"


def _switched_on(variable: str) -> bool:
    return os.environ.get(variable, "1") != "0"


def native_enabled() -> bool:
    """False when ``RSANET_NATIVE=0``: the C++ CPU kernels are off."""
    return _switched_on(NATIVE_SWITCH)


def triton_enabled() -> bool:
    """False when ``RSANET_TRITON=0``: the Triton GPU kernels are off."""
    return _switched_on(TRITON_SWITCH)
