"""RSA's operators as functions, each one ``rsanet::`` custom op (see ``docs/layers.md``).

- :func:`l2_normalize`, :func:`l2_normalize_last`: queries, keys and values normalised;
- :func:`neighbourhood_filter`: K_H1, F and V_G, channels filtered over their neighbourhoods;
- :func:`aggregate_neighbourhoods`: the re-associated order's per-position products;
- :func:`latent_kernel`, :func:`official_products`: the authors' order's;
- :func:`unfold_channels_last`, :func:`fold_channels_last_`: neighbourhoods and their adjoint.

Which code computes each of them (C++, Triton, PyTorch operators, or plain operators for an
exporter) is decided by :func:`rsanet.layers.backends.choose_backend`.
"""

from rsanet.layers.ops.aggregate import aggregate_neighbourhoods
from rsanet.layers.ops.filter import neighbourhood_filter
from rsanet.layers.ops.neighbourhoods import (
    Scratch,
    fold_channels_last_,
    frames_per_chunk,
    unfold_channels_last,
)
from rsanet.layers.ops.normalize import NORM_EPS, l2_normalize, l2_normalize_last
from rsanet.layers.ops.official import latent_kernel, official_products

__all__ = [
    "NORM_EPS",
    "Scratch",
    "aggregate_neighbourhoods",
    "fold_channels_last_",
    "frames_per_chunk",
    "l2_normalize",
    "l2_normalize_last",
    "latent_kernel",
    "neighbourhood_filter",
    "official_products",
    "unfold_channels_last",
]
