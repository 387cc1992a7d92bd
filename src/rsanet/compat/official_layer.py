"""The authors' RSA layer (KimManjin/RSA, ``ops/rsa.py``) as our :class:`~rsanet.layers.RSA`.

Their constructor takes ``d_in, d_out, nh, dk, dv, dd, kernel_size, stride, kernel_type,
feat_type`` (0 for dk/dv/dd means: dv = d_out // nh, dk = dv, dd = dk) and stores
``projection.weight``, ``H1.weight`` (a grouped convolution, groups = dk), ``H2.weight``,
``G.weight``, ``P1`` and ``I``. Ours keeps the same projection and output channel order, so
the conversion only renames and reshapes parameters.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from rsanet.layers.rsa import RSA

OFFICIAL_TYPES = {"V": "basic", "R": "relational", "VplusR": "basic+relational"}
OFFICIAL_KEYS = (
    "d_in",
    "d_out",
    "nh",
    "dk",
    "dv",
    "dd",
    "kernel_size",
    "stride",
    "kernel_type",
    "feat_type",
)
#: official parameter name -> ours
PARAMETER_NAMES = {
    "projection.weight": "projection.weight",
    "H1.weight": "relational_kernel_weight",
    "H2.weight": "latent_weight",
    "G.weight": "relational_context_weight",
    "P1": "basic_kernel_weight",
    "I": "context_mixing",
}


def rsa_kwargs_from_official(official_kwargs: Mapping) -> dict:
    """Our ``RSA`` keyword arguments for the official constructor arguments."""
    unknown = set(official_kwargs) - set(OFFICIAL_KEYS)
    if unknown:
        raise ValueError(
            f"unknown official RSA arguments {sorted(unknown)}; "
            f"expected some of {list(OFFICIAL_KEYS)}"
        )
    kw = {
        "nh": 1,
        "dk": 16,
        "dv": 0,
        "dd": 0,
        "kernel_size": (3, 7, 7),
        "stride": (1, 1, 1),
        "kernel_type": "V",
        "feat_type": "V",
        **official_kwargs,
    }
    for name in ("kernel_type", "feat_type"):
        if kw[name] not in OFFICIAL_TYPES:
            raise ValueError(
                f"official {name} must be one of {list(OFFICIAL_TYPES)}, got {kw[name]!r}"
            )
    nh = kw["nh"]
    dv = kw["dv"] or kw["d_out"] // nh
    dk = kw["dk"] or dv
    dd = kw["dd"] or dk
    if kw["feat_type"] == "VplusR" and dv != dk:
        # their I is dk x dk and is added to a dv x dv matrix: their forward fails
        raise ValueError(f"official feat_type='VplusR' needs dv == dk, got dv={dv}, dk={dk}")
    stride = kw["stride"]
    spatial = 2 if max(stride if isinstance(stride, (tuple, list)) else (stride,)) > 1 else 1
    return {
        "in_channels": kw["d_in"],
        "out_channels": nh * dv,
        "num_heads": nh,
        "key_channels": dk,
        "value_channels": dv,
        "latent_channels": dd,
        "kernel_size": tuple(kw["kernel_size"]),
        "stride": spatial,  # they always pool by 2
        "kernel": OFFICIAL_TYPES[kw["kernel_type"]],
        "context": OFFICIAL_TYPES[kw["feat_type"]],
    }


def official_layer_state_dict_to_ours(
    state_dict: Mapping[str, torch.Tensor], layer: RSA, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Rename and reshape one official RSA layer's parameters (keys under ``prefix``) to
    ``layer``'s state dict keys (without prefix). Raises naming the first misfit."""
    ours = layer.state_dict()
    converted = {}
    for official, name in PARAMETER_NAMES.items():
        key = prefix + official
        if name not in ours:
            if key in state_dict:
                raise ValueError(f"{key} has no place in {layer.extra_repr()}")
            continue
        if key not in state_dict:
            raise ValueError(
                f"missing official RSA parameter {key} "
                f"(expected shape for ours: {tuple(ours[name].shape)})"
            )
        tensor = state_dict[key]
        if tensor.numel() != ours[name].numel():
            raise ValueError(
                f"official {key} has shape {tuple(tensor.shape)}, "
                f"which does not fit our {name} {tuple(ours[name].shape)}"
            )
        if official == "I" and tensor.shape[-1] != ours[name].shape[-1]:
            raise ValueError(
                f"official {key} has shape {tuple(tensor.shape)}, ours {tuple(ours[name].shape)}"
            )
        converted[name] = tensor.reshape(ours[name].shape)
    return converted


def rsa_from_official(official_kwargs: Mapping, state_dict: Mapping[str, torch.Tensor]) -> RSA:
    """Our RSA with the official layer's arguments and weights; identical outputs."""
    layer = RSA(**rsa_kwargs_from_official(official_kwargs))
    layer.load_state_dict(official_layer_state_dict_to_ours(state_dict, layer))
    return layer
