"""Networks for clips (N, 3, T, H, W): TSN ResNets with RSA and baseline transforms, and
the video transformers TimeSformer, ViViT, MViT and UniFormer.

>>> import rsanet
>>> model = rsanet.create_model("rsanet_tiny", num_classes=10)
>>> rsanet.list_models("rsanet_*")
['rsanet_r18', 'rsanet_r50', 'rsanet_tiny']
"""

from rsanet.models import factories as _factories  # noqa: F401  (registers the models)
from rsanet.models.builder import (
    WEIGHTS,
    create_model,
    init_from_trained,
    load_model,
    read_model_file,
    select_weights,
)
from rsanet.models.mvit import MultiScaleBlock, MViT, PoolingAttention
from rsanet.models.registry import (
    UnknownModelError,
    is_model,
    list_models,
    model_factory,
    register_model,
    similar_model_names,
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
from rsanet.models.safetensors_file import (
    WeightsFileError,
    is_weights_file,
    read_weights_file,
    save_weights_file,
    weights_file_paths,
)
from rsanet.models.timesformer import DividedBlock, TimeSformer
from rsanet.models.uniformer import (
    GlobalBlock,
    LocalBlock,
    UniFormer,
    UniFormerLoadResult,
    load_uniformer_checkpoint,
)
from rsanet.models.vit import PatchEmbed3d, ViTEncoder, resize_pos_embed
from rsanet.models.vit_weights import ViTLoadResult, inflate_patch_kernel, load_vit_checkpoint
from rsanet.models.vivit import ViViTFactorisedEncoder
from rsanet.models.weights import (
    CheckpointMismatchError,
    ImageNetLoadResult,
    check_state_dict_fits,
    extract_state_dict,
    load_imagenet_resnet,
    load_state_dict_checked,
    read_checkpoint,
    save_checkpoint,
    tensor_shape,
)


def __getattr__(name: str):
    # profiling needs fvcore (an optional dependency): imported on first use
    if name in ("profile_model", "ModelProfile", "StageProfile", "count_macs"):
        from rsanet.models import profile

        return getattr(profile, name)
    raise AttributeError(f"module 'rsanet.models' has no attribute {name!r}")


__all__ = [
    "RSA_R50_POSITIONS",
    "WEIGHTS",
    "BasicBlock",
    "Bottleneck",
    "CheckpointMismatchError",
    "DividedBlock",
    "DropPath",
    "GlobalBlock",
    "ImageNetLoadResult",
    "LocalBlock",
    "MViT",
    "ModelProfile",
    "MultiScaleBlock",
    "PatchEmbed3d",
    "PoolingAttention",
    "ResNetTSN",
    "StageProfile",
    "TimeSformer",
    "UniFormer",
    "UniFormerLoadResult",
    "UnknownModelError",
    "ViTEncoder",
    "ViTLoadResult",
    "ViViTFactorisedEncoder",
    "WeightsFileError",
    "check_state_dict_fits",
    "count_macs",
    "create_model",
    "expand_positions",
    "extract_state_dict",
    "inflate_patch_kernel",
    "is_model",
    "is_weights_file",
    "list_models",
    "load_imagenet_resnet",
    "load_model",
    "load_state_dict_checked",
    "load_uniformer_checkpoint",
    "load_vit_checkpoint",
    "model_factory",
    "profile_model",
    "read_checkpoint",
    "read_model_file",
    "read_weights_file",
    "register_model",
    "resize_pos_embed",
    "save_checkpoint",
    "save_weights_file",
    "select_weights",
    "init_from_trained",
    "similar_model_names",
    "stochastic_depth_rates",
    "tensor_shape",
    "weights_file_paths",
]
