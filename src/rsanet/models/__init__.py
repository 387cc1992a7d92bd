"""Networks for clips (N, 3, T, H, W): TSN ResNets with RSA and baseline transforms.

>>> import rsanet
>>> model = rsanet.create_model("rsanet_tiny", num_classes=10)
>>> rsanet.list_models("rsanet_*")
['rsanet_r18', 'rsanet_r50', 'rsanet_tiny']
"""

from rsanet.models import factories as _factories  # noqa: F401  (registers the models)
from rsanet.models.registry import (
    UnknownModelError,
    create_model,
    is_model,
    list_models,
    model_factory,
    register_model,
)
from rsanet.models.resnet import (
    RSA_R50_POSITIONS,
    BasicBlock,
    Bottleneck,
    DropPath,
    ResNetTSN,
    expand_positions,
    stochastic_depth_rates,
)
from rsanet.models.weights import (
    CheckpointMismatchError,
    ImageNetLoadResult,
    check_state_dict_fits,
    extract_state_dict,
    load_imagenet_resnet,
    load_model,
    load_state_dict_checked,
    read_checkpoint,
    save_checkpoint,
)


def __getattr__(name: str):
    # profiling needs fvcore (an optional dependency): imported on first use
    if name in ("profile_model", "ModelProfile", "StageProfile", "count_macs"):
        from rsanet.models import profile

        return getattr(profile, name)
    raise AttributeError(f"module 'rsanet.models' has no attribute {name!r}")


__all__ = [
    "RSA_R50_POSITIONS",
    "BasicBlock",
    "Bottleneck",
    "CheckpointMismatchError",
    "DropPath",
    "ImageNetLoadResult",
    "ModelProfile",
    "ResNetTSN",
    "StageProfile",
    "UnknownModelError",
    "check_state_dict_fits",
    "count_macs",
    "create_model",
    "expand_positions",
    "extract_state_dict",
    "is_model",
    "list_models",
    "load_imagenet_resnet",
    "load_model",
    "load_state_dict_checked",
    "model_factory",
    "profile_model",
    "read_checkpoint",
    "register_model",
    "save_checkpoint",
    "stochastic_depth_rates",
]
