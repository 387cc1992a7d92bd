"""Training and evaluation: typed configurations, the training loop (single process or
``torchrun``), checkpoints with exact resume, and multi-view / ensemble testing.

>>> from rsanet.engine import load_config, train, evaluate
>>> config = load_config("configs/synthmotion_rsanet.yaml", ["train.epochs=2"])
>>> result = train(config, "runs/demo")                          # doctest: +SKIP
>>> evaluate(config, ["runs/demo/best.pt"], clips=1)["top1"]    # doctest: +SKIP
"""

from rsanet.atomic import atomic_save
from rsanet.engine.checkpoint import (
    NonFiniteError,
    NonFiniteStateError,
    read_training_checkpoint,
)
from rsanet.engine.config import (
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    LogConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    UntrimmedConfig,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    override_config,
    parse_override,
    save_config,
    valid_keys,
)
from rsanet.engine.distributed import DistEnv, init_distributed
from rsanet.engine.ema import ModelEMA

# importing the submodule rsanet.engine.evaluate binds the package attribute ``evaluate``
# to the module; this from-import then rebinds it to the function
from rsanet.engine.evaluate import NonFiniteLogitsError, evaluate, plot_confusion, predict
from rsanet.engine.metrics import ClassificationMeter, topk_correct
from rsanet.engine.optim import (
    WarmupCosine,
    build_loss,
    build_optimizer,
    build_scheduler,
    param_groups,
)
from rsanet.engine.trainer import NonFiniteLossError, resolve_precision, train

__all__ = [
    "ClassificationMeter",
    "Config",
    "ConfigError",
    "DataConfig",
    "DistEnv",
    "EvalConfig",
    "LogConfig",
    "ModelConfig",
    "ModelEMA",
    "NonFiniteError",
    "NonFiniteLogitsError",
    "NonFiniteLossError",
    "NonFiniteStateError",
    "OptimConfig",
    "TrainConfig",
    "UntrimmedConfig",
    "WarmupCosine",
    "atomic_save",
    "build_loss",
    "build_optimizer",
    "build_scheduler",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "evaluate",
    "init_distributed",
    "load_config",
    "override_config",
    "param_groups",
    "parse_override",
    "plot_confusion",
    "predict",
    "read_training_checkpoint",
    "resolve_precision",
    "save_config",
    "topk_correct",
    "train",
    "valid_keys",
]
