"""Interchange with the authors' code (KimManjin/RSA): their layers and checkpoints."""

from rsanet.compat.official_checkpoint import (
    load_official_checkpoint,
    official_clip_to_ours,
    official_state_dict_to_ours,
)
from rsanet.compat.official_layer import (
    official_layer_state_dict_to_ours,
    rsa_from_official,
    rsa_kwargs_from_official,
)

__all__ = [
    "load_official_checkpoint",
    "official_clip_to_ours",
    "official_layer_state_dict_to_ours",
    "official_state_dict_to_ours",
    "rsa_from_official",
    "rsa_kwargs_from_official",
]
