"""The training loop: ``train(config, output_dir, resume=None) -> dict``.

One function runs a whole run in this process or, under ``torchrun``, in each of several
processes (DistributedDataParallel). Per epoch it trains, validates, appends a line to
``DIR/metrics.jsonl`` (and TensorBoard scalars to ``DIR/tensorboard``), writes ``DIR/last.pt``
and, on a new best validation score (top-1, or mean-class accuracy with
``train.best_metric: mean_class``), ``DIR/best.pt`` with its validated weights (the EMA
weights with ``train.ema``) to share beside it: ``DIR/best.safetensors`` and
``DIR/best.json`` (:func:`rsanet.models.save_weights_file`). The resolved configuration is
``DIR/config.yaml``.

Exactness: the model is initialised from ``train.seed``; each epoch's data order,
augmentation, dropout and stochastic depth are functions of ``(seed, epoch, rank)``; the
checkpoint holds the optimiser, schedule, scaler, EMA, step and RNG states. On CPU, a run
stopped after an epoch (``train.stop_after_epochs`` or a kill) and resumed ends with weights
bit-identical to an uninterrupted run.

Time budget: with ``train.time_budget_min`` the cosine advances by the larger of its share
of the steps and its share of the time left after the warm-up (the run's wall time; the last
validation's duration is kept for the final one), and the run ends at the step that spends
the budget, validating and saving that partial epoch as its last. A run that fits its
budget is the same as without one; on a slower machine it trains fewer steps and still
anneals.

Faults: outputs never overwrite the run's inputs (checked before anything is written);
every file is replaced atomically, and a full disk stops the run with
:class:`rsanet.atomic.DiskFullError`, the previous checkpoint intact; temporaries left by a
killed save are removed when a run starts or resumes in the folder. A loss, weight or
BatchNorm statistic that becomes NaN or infinite stops the run at that step
(:class:`NonFiniteError`), and no checkpoint holding one is ever written, so ``last.pt`` is
always the last good state.

Bags: a training batch of clips (N, K, C, T, H, W) (``data.untrimmed.bag_size`` K > 1) is
run as N x K windows, and the loss is taken on one window per bag
(:func:`rsanet.engine.bags.select_instances`).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsanet.atomic import (
    DiskFullError,
    atomic_write_text,
    disk_full_error,
    refuse_overwrite,
    remove_stale_temporaries,
)
from rsanet.engine.bags import select_instances
from rsanet.engine.checkpoint import (
    NonFiniteError,
    NonFiniteStateError,
    describe_nonfinite,
    nonfinite_entries,
    read_training_checkpoint,
    rng_state,
    save_training_checkpoint,
    seed_everything,
    set_rng_state,
)
from rsanet.engine.config import (
    Config,
    ConfigError,
    UntrimmedConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from rsanet.engine.distributed import (
    DistEnv,
    all_reduce_sum,
    broadcast_buffers,
    cleanup,
    init_distributed,
)
from rsanet.engine.ema import ModelEMA
from rsanet.engine.loaders import (
    build_eval_loader,
    build_split,
    build_train_loader,
    check_data_paths,
    micro_batch_size,
    start_epoch,
)
from rsanet.engine.metrics import ClassificationMeter, finite_or_null
from rsanet.engine.optim import build_loss, build_optimizer, build_scheduler

#: configuration keys that may change between a run and its resumption without a warning
RESUME_FREE_KEYS = (
    "train.stop_after_epochs",
    "train.num_threads",
    "data.num_workers",
    "log.",
    "eval.",
)


#: the files a run writes in its folder (besides tensorboard/); best.safetensors and
#: best.json are the weights of best.pt to share (the EMA weights with train.ema)
RUN_FILES = (
    "config.yaml",
    "last.pt",
    "best.pt",
    "best.safetensors",
    "best.json",
    "metrics.jsonl",
)


class NonFiniteLossError(NonFiniteError):
    """The loss became NaN or infinite; the message names the step and the checkpoint
    that holds the last good state."""


# -- helpers ------------------------------------------------------------------------------


def as_config(config: Config | Mapping[str, Any] | str | Path) -> Config:
    """A :class:`Config` from a Config, a nested dict or a YAML path."""
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return config_from_dict(config)
    return load_config(config)


@dataclass(frozen=True)
class Precision:
    """Autocast settings: ``dtype`` None means float32."""

    name: str
    dtype: torch.dtype | None
    device_type: str

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16


def resolve_precision(name: str, device: torch.device) -> Precision:
    """fp32, bf16 (CPU or CUDA), fp16 (CUDA only) or auto (CUDA: bf16 when supported,
    else fp16; CPU: fp32)."""
    cuda = device.type == "cuda"
    if name == "auto":
        name = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if name == "fp32":
        return Precision("fp32", None, device.type)
    if name == "bf16":
        if cuda and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.precision=bf16: this GPU has no bfloat16; use fp16")
        return Precision("bf16", torch.bfloat16, device.type)
    if name == "fp16":
        if not cuda:
            raise ConfigError("train.precision=fp16 needs a CUDA device; use bf16 on CPU")
        return Precision("fp16", torch.float16, device.type)
    raise ConfigError(f"train.precision must be fp32, bf16, fp16 or auto, got {name!r}")


#: what each model file of the configuration must be, for the error when it is missing
_MODEL_FILES = {
    "pretrained": (
        "an ImageNet ResNet checkpoint in torchvision's layout, or a ViT/DeiT one in timm's "
        "for the video transformers; set its path, or null to train from scratch"
    ),
    "init_from": (
        "a checkpoint or weights-only file of a trained model of the same name; null to "
        "start from model.pretrained or from scratch"
    ),
}


def check_model(config: Config, *, resuming: bool = False) -> None:
    """Fail before any work on an unknown model name or a missing model file (ImageNet
    weights, a trained model to fine-tune); a resumed run reads neither."""
    from rsanet.models import model_factory

    model_factory(config.model.name)  # UnknownModelError names the close matches
    _context_options(config)  # model options that disagree with the clips' context
    for key, what in _MODEL_FILES.items():
        path = getattr(config.model, key)
        if path and not resuming and not Path(path).expanduser().is_file():
            raise FileNotFoundError(f"model.{key}: no such file: {path!r} ({what})")


def _context_options(config: Config) -> dict[str, Any]:
    """The model options that make a network read the clips' context frames
    (``data.untrimmed.context_frames``), or none; model.options may not say otherwise."""
    untrimmed = config.data.untrimmed
    if untrimmed is None or not untrimmed.context_frames:
        if config.model.options.get("context_frames"):
            raise ConfigError(
                "model.options.context_frames needs clips that hold context frames: set "
                "data.untrimmed.context_frames instead (it sets the model's)"
            )
        return {}
    options = {"context_frames": untrimmed.context_frames, "context_s": untrimmed.context_s}
    for key, value in options.items():
        given = config.model.options.get(key, value)
        if given != value:
            raise ConfigError(
                f"model.options.{key} ({given}) differs from data.untrimmed.{key} ({value}): "
                f"remove model.options.{key}, the clips' data sets it"
            )
    return options


#: settings that are sections of their own, compared key by key (others of that depth,
#: such as model.options, are compared whole)
_SECTIONS = ("data.untrimmed",)


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and (prefix.count(".") < 1 or name in _SECTIONS):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every setting that differs (free keys aside). A setting that
    ``old`` lacks (added to rsanet since it was saved) differs only if ``new`` moves it from
    its default."""
    a, b = _flatten(old), _flatten(new)
    defaults = _flatten(config_to_dict(Config()))
    defaults |= _flatten({"data": {"untrimmed": asdict(UntrimmedConfig())}})
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
        and not k.startswith(RESUME_FREE_KEYS)
        and not (k not in a and k in defaults and b.get(k) == defaults[k])
    ]


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _show_progress(mode: str, env: DistEnv) -> bool:
    if not env.is_main or mode == "never":
        return False
    return mode == "always" or sys.stderr.isatty()


def _anywhere(flag: bool, env: DistEnv) -> bool:
    """Whether ``flag`` is set on any process (every process gets the same answer)."""
    if not env.is_distributed:
        return flag
    return bool(all_reduce_sum(torch.tensor([float(flag)], device=env.device), env) > 0)


def channels_last(clips: torch.Tensor) -> torch.Tensor:
    """Clips (..., C, T, H, W) with each clip stored channels-last (as T, H, W, C): the same
    values, in the memory order that oneDNN's 3-D convolutions run fastest on."""
    flat = clips.reshape(-1, *clips.shape[-4:]).contiguous(memory_format=torch.channels_last_3d)
    return flat.unflatten(0, clips.shape[:-4])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class _Writers:
    """Rank 0's metric files: ``metrics.jsonl`` and TensorBoard (when installed)."""

    def __init__(self, output: Path, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self.path = output / "metrics.jsonl"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn(
                    "tensorboard is not installed: metrics go to metrics.jsonl "
                    "only (pip install tensorboard)",
                    stacklevel=2,
                )
            else:
                self.tb = SummaryWriter(str(output / "tensorboard"))

    def truncate_after(self, epoch: int, step: int) -> None:
        """Drop lines written after the checkpoint that a run resumes from (atomically;
        a line half-written when the disk filled up is dropped too)."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("epoch", 0) <= epoch and record.get("step", 0) <= step:
                kept.append(line)
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def write(self, record: dict[str, Any], scalars: Mapping[str, float], step: int) -> None:
        if not self.enabled:
            return
        try:
            with self.path.open("a") as handle:
                handle.write(json.dumps(finite_or_null(record), allow_nan=False) + "\n")
        except OSError as error:
            raise disk_full_error(
                error,
                self.path,
                "the checkpoints are intact: free some space, then continue with --resume",
            ) from error
        if self.tb is not None:
            for tag, value in scalars.items():
                if value is not None and math.isfinite(value):
                    self.tb.add_scalar(tag, value, step)

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# -- the run ------------------------------------------------------------------------------


def train(
    config: Config | Mapping[str, Any] | str | Path,
    output_dir: str | Path,
    resume: str | Path | bool | None = None,
    *,
    overwrite: bool = False,
    inputs: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Train ``config`` into ``output_dir``.

    ``resume``: True continues from ``output_dir/last.pt``, a path from that checkpoint.
    A fresh run refuses an ``output_dir`` that already holds ``last.pt`` unless
    ``overwrite``. No file the run writes may be one of its inputs (``model.pretrained``,
    the annotation files, ``inputs``, the YAML file ``config`` when it is a path, which may
    only be the run's own ``config.yaml``): OverwriteError before anything is written.
    Returns ``best_metric``, ``best_score`` (its best validation value), ``best_epoch``,
    ``best_top1`` (the validation top-1 of that epoch), ``epochs_completed``, ``steps``,
    ``last`` (the last epoch's metrics), ``wall_time_s`` (this call), ``elapsed_s`` (all
    calls of the run), ``stopped_early`` and the checkpoint paths.
    """
    if isinstance(config, (str, Path)):
        inputs = [config, *inputs]
    config = as_config(config)
    env = init_distributed(config.train.device)
    try:
        return _Run(config, Path(output_dir), env, resume, overwrite, inputs).run()
    finally:
        cleanup(env)


class _Run:
    def __init__(
        self,
        config: Config,
        output: Path,
        env: DistEnv,
        resume: str | Path | bool | None,
        overwrite: bool,
        inputs: Sequence[str | Path] = (),
    ) -> None:
        self.config, self.output, self.env = config, output, env
        self.started = time.perf_counter()
        t = config.train
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.precision = resolve_precision(t.precision, env.device)
        if env.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed clip shapes: pick the fastest kernels
        self.resume_path = self._resume_path(resume, overwrite)
        self._check_outputs(inputs)
        check_model(config, resuming=self.resume_path is not None)
        check_data_paths(config.data)
        micro_batch_size(t.batch_size, env.world_size, t.grad_accum_steps)
        self.checkpoint = read_training_checkpoint(self.resume_path) if self.resume_path else None
        if self.checkpoint is not None:
            self._check_resumable(self.checkpoint)

    # -- setup ----------------------------------------------------------------------------

    def _resume_path(self, resume: str | Path | bool | None, overwrite: bool) -> Path | None:
        last = self.output / "last.pt"
        if resume is True or resume == "":
            if not last.is_file():
                raise FileNotFoundError(
                    f"nothing to resume: {last} does not exist (start the run without --resume)"
                )
            return last
        if resume:
            path = Path(resume)
            if not path.is_file():
                raise FileNotFoundError(f"no checkpoint to resume at {str(path)!r}")
            return path
        if last.exists() and not overwrite:
            raise ConfigError(
                f"{self.output} already holds a run (last.pt): continue it with --resume, or "
                "choose another --output (--overwrite starts afresh there)"
            )
        return None

    def _check_outputs(self, inputs: Sequence[str | Path]) -> None:
        """Refuse a run whose files (:data:`RUN_FILES`) would overwrite one of its inputs.
        The configuration file may be the run's own ``config.yaml`` (it is rewritten with
        the resolved configuration) and the checkpoint resumed from its ``last.pt`` or
        ``best.pt`` (the checkpoints a run replaces as it goes)."""
        d = self.config.data
        resuming = self.resume_path is not None
        pretrained = None if resuming else self.config.model.pretrained
        init_from = None if resuming else self.config.model.init_from
        read = [
            ("model.pretrained", pretrained),
            ("model.init_from", init_from),
            ("data.annotations", d.annotations),
            ("data.train_annotations", d.train_annotations),
            ("data.val_annotations", d.val_annotations),
        ]
        for name in RUN_FILES:
            output = self.output / name
            for what, source in read:
                if source is not None:
                    refuse_overwrite(
                        output, [Path(source).expanduser()], what=f"run file (for {what})"
                    )
            if name != "config.yaml":
                refuse_overwrite(output, inputs, what="run file")
            if name in ("config.yaml", "metrics.jsonl"):
                refuse_overwrite(output, [self.resume_path], what="run file")

    def _check_resumable(self, checkpoint: Mapping[str, Any]) -> None:
        name = checkpoint.get("model")
        if name != self.config.model.name:
            raise ConfigError(
                f"{self.resume_path} holds a {name!r} model, but the configuration trains "
                f"{self.config.model.name!r}: resume with the configuration of that run "
                f"(its config.yaml) or start a new run"
            )
        old = checkpoint.get("config")
        if isinstance(old, Mapping) and self.env.is_main:
            changes = config_differences(old, config_to_dict(self.config))
            if changes:
                print(
                    "rsanet train: warning: resuming with a configuration that differs from "
                    "the checkpoint's: " + "; ".join(changes),
                    file=sys.stderr,
                )
        saved_world = checkpoint.get("world_size")
        if saved_world and saved_world != self.env.world_size and self.env.is_main:
            print(
                f"rsanet train: warning: the run used {saved_world} processes, now "
                f"{self.env.world_size}: the data order differs from an uninterrupted run",
                file=sys.stderr,
            )

    def _build(self) -> None:
        c, env = self.config, self.env
        t = c.train
        seed_everything(t.seed)
        self.train_set = build_split(c.data, "train", train=True, seed=t.seed)
        self.val_set = build_split(c.data, "val", train=False, seed=t.seed)
        self.classes = list(getattr(self.train_set, "classes", []))
        num_classes = c.model.num_classes or len(self.classes)
        if not num_classes:
            raise ConfigError("model.num_classes is not set and the dataset names no classes")
        if self.classes and num_classes != len(self.classes):
            raise ConfigError(
                f"model.num_classes is {num_classes} but the dataset has "
                f"{len(self.classes)} classes"
            )
        self.num_classes = num_classes

        micro = micro_batch_size(t.batch_size, env.world_size, t.grad_accum_steps)
        self.train_loader, self.sampler = build_train_loader(
            self.train_set, batch_size=micro, num_workers=c.data.num_workers, seed=t.seed, env=env
        )
        self.val_loader = build_eval_loader(
            self.val_set, batch_size=c.eval.batch_size, num_workers=c.data.num_workers, env=env
        )
        self.steps_per_epoch = len(self.train_loader) // t.grad_accum_steps
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"one optimiser step needs {t.grad_accum_steps} batches of {micro} clips per "
                f"process; the training set has {len(self.train_set)} samples"
            )

        from rsanet.models import check_state_dict_fits, create_model, init_from_trained

        overrides = dict(c.model.options)
        for key in ("drop_rate", "drop_path_rate"):
            if getattr(c.model, key) is not None:
                overrides[key] = getattr(c.model, key)
        overrides.update(_context_options(c))
        seed_everything(t.seed)  # initialisation independent of dataset construction
        pretrained = None
        if c.model.pretrained and self.checkpoint is None:
            pretrained = str(Path(c.model.pretrained).expanduser())
        try:
            model = create_model(
                c.model.name,
                num_classes=num_classes,
                num_frames=c.data.num_frames,
                pretrained=pretrained,
                **overrides,
            )
        except TypeError as error:
            if "context_frames" not in overrides:
                raise
            raise ConfigError(
                f"data.untrimmed.context_frames: {c.model.name} cannot read context frames "
                f"({error}); the ResNets (rsanet_*, tsm_*, tsn_*, ...) can"
            ) from None
        if self.checkpoint is not None:
            check_state_dict_fits(
                model, self.checkpoint["state_dict"], what=f"checkpoint {self.resume_path}"
            )
        elif c.model.init_from:
            source = str(Path(c.model.init_from).expanduser())
            try:
                report = init_from_trained(model, source)
            except ValueError as error:
                raise ConfigError(f"model.init_from: {error}") from None
            if env.is_main:
                kept = ", ".join(report["kept"]) or "nothing"
                print(
                    f"rsanet train: model.init_from {source}: {len(report['loaded'])} tensors "
                    f"loaded, initialisation kept for {kept}",
                    flush=True,
                )
        model.to(env.device)
        self.model = model
        self.ddp = model
        if env.is_distributed:
            self.ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[env.device.index] if env.device.type == "cuda" else None
            )
        self.optimizer = build_optimizer(model, c.optim)
        self.scheduler = build_scheduler(
            self.optimizer, c.optim, epochs=t.epochs, steps_per_epoch=self.steps_per_epoch
        )
        self.scaler = torch.amp.GradScaler(env.device.type, enabled=self.precision.needs_scaler)
        self.ema = ModelEMA(model, t.ema_decay) if t.ema else None
        self.criterion = build_loss(c.optim)

        self.epoch, self.step, self.elapsed = 0, 0, 0.0
        self.best_score, self.best_top1, self.best_epoch = -math.inf, None, 0
        self.budget_spent, self.closing_s = False, 0.0
        self.cosine_start_s: float | None = None
        self.history: list[dict[str, Any]] = []
        if self.checkpoint is not None:
            self._restore(self.checkpoint)

    def _restore(self, ckpt: Mapping[str, Any]) -> None:
        self.model.load_state_dict(ckpt["state_dict"], strict=False)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            if ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
            else:  # EMA switched on at resumption: start it from the current weights
                self.ema.load_state_dict(self.model.state_dict())
        if ckpt.get("sampler"):
            self.sampler.load_state_dict(ckpt["sampler"])
        if ckpt.get("rng"):
            set_rng_state(ckpt["rng"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.elapsed = float(ckpt.get("elapsed_s", 0.0))
        self.budget_spent = bool(ckpt.get("budget_spent", False))
        self.closing_s = float(ckpt.get("closing_s", 0.0))
        self.cosine_start_s = ckpt.get("cosine_start_s")
        best = ckpt.get("best_score", ckpt.get("best_top1"))  # best_top1 alone: older runs
        self.best_score = -math.inf if best is None else float(best)
        self.best_top1 = ckpt.get("best_top1")
        self.best_epoch = int(ckpt.get("best_epoch", 0))
        metric = self.config.train.best_metric
        saved_metric = (ckpt.get("config") or {}).get("train", {}).get("best_metric", "top1")
        if best is not None and saved_metric != metric:
            # the saved best is a score of another metric: the next validation sets a new one
            print(
                f"rsanet train: train.best_metric changed from {saved_metric} to {metric}: "
                f"best.pt (epoch {self.best_epoch}) is replaced at the next validation",
                flush=True,
            )
            self.best_score, self.best_epoch = -math.inf, 0

    def _report_windows(self) -> None:
        """Untrimmed recordings: print the windows of each set and the session split, and
        write the split to ``DIR/split.json``."""
        for name, dataset in (("train", self.train_set), ("val", self.val_set)):
            if hasattr(dataset, "split_report") and hasattr(dataset, "summary"):
                print(f"rsanet train: {name}: {dataset.summary()}", flush=True)
        report = getattr(self.train_set, "split_report", None)
        if report:
            print(self.train_set.split_summary, flush=True)
            atomic_write_text(self.output / "split.json", json.dumps(report, indent=2) + "\n")

    # -- checkpoints ------------------------------------------------------------------------

    def _save(self, path: Path, metrics: Mapping[str, Any]) -> None:
        try:
            self._write_checkpoint(path, metrics)
            if path.name == "best.pt":
                self._write_weights_file(path.with_suffix(".safetensors"), metrics)
        except DiskFullError as error:
            raise DiskFullError(
                error.errno, f"{error.strerror}; then continue the run with --resume"
            ) from error

    def _write_weights_file(self, path: Path, metrics: Mapping[str, Any]) -> None:
        """The weights just validated (the EMA copy with ``train.ema``), as a weights-only
        safetensors file with its JSON description beside it."""
        from rsanet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
        from rsanet.models import save_weights_file

        size = self.config.data.size
        save_weights_file(
            path,
            self.ema.module if self.ema is not None else self.model,
            weights="ema" if self.ema is not None else "raw",
            classes=self.classes or None,
            input_size=(size, size),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            full_frame=self.config.data.full_frame,
            epoch=self.epoch,
            val_top1=finite_or_null(metrics.get("val_top1")),
        )

    def _write_checkpoint(self, path: Path, metrics: Mapping[str, Any]) -> None:
        save_training_checkpoint(
            path,
            self.model,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            ema=self.ema.state_dict() if self.ema is not None else None,
            epoch=self.epoch,
            step=self.step,
            rng=rng_state(),
            sampler=self.sampler.state_dict(),
            best_score=None if self.best_score == -math.inf else self.best_score,
            best_top1=self.best_top1,
            best_epoch=self.best_epoch,
            elapsed_s=self.elapsed + self._wall(),
            budget_spent=self.budget_spent,
            closing_s=self.closing_s,
            cosine_start_s=self.cosine_start_s,
            classes=self.classes,
            config=config_to_dict(self.config),
            metrics=dict(metrics),
            world_size=self.env.world_size,
        )

    def _wall(self) -> float:
        return time.perf_counter() - self.started

    def _budget_share(self) -> float:
        """The share of ``train.time_budget_min`` this process has spent (0 without one)
        before the step it is about to take. The budget ends early by the time the last
        validation and saves took (the final ones need it again); from the step whose
        learning rate is the cosine's first, the share counts from that moment, so that the
        cosine spans the rest of the budget as it spans the rest of the steps."""
        budget = self.config.train.time_budget_min
        if budget is None:
            return 0.0
        clock = self.elapsed + self._wall()
        if self.cosine_start_s is None and self.step + 1 >= self.scheduler.warmup_steps:
            self.cosine_start_s = clock
        start = self.cosine_start_s or 0.0
        return (clock - start) / max(60.0 * budget - self.closing_s - start, 1e-9)

    # -- one epoch ----------------------------------------------------------------------

    def _layout(self, clips: torch.Tensor) -> torch.Tensor:
        """A batch in the memory order ``train.channels_last`` asks for."""
        return channels_last(clips) if self.config.train.channels_last else clips

    def _train_epoch(self, writers: _Writers) -> dict[str, float]:
        c, env = self.config, self.env
        accum = c.train.grad_accum_steps
        self.ddp.train()
        start_epoch(self.train_loader, self.sampler, seed=c.train.seed, epoch=self.epoch, env=env)
        params = [p for p in self.model.parameters() if p.requires_grad]
        bar = None
        if _show_progress(c.log.progress, env):
            from tqdm import tqdm

            bar = tqdm(
                total=self.steps_per_epoch,
                desc=f"epoch {self.epoch + 1}/{c.train.epochs}",
                unit="step",
                dynamic_ncols=True,
                leave=False,
            )
        batches = iter(self.train_loader)
        began = time.perf_counter()
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, clips (all ranks)
        budget_spent = False
        for index in range(self.steps_per_epoch):
            self.optimizer.zero_grad(set_to_none=True)
            # loss sum, correct, clips of this step and the budget share on this process,
            # kept on the device
            stats = torch.zeros(4, dtype=torch.float64, device=env.device)
            for micro in range(accum):
                clips, labels = next(batches)
                clips = self._layout(clips.to(env.device, non_blocking=True))
                labels = labels.to(env.device, non_blocking=True)
                sync = (
                    self.ddp.no_sync()
                    if env.is_distributed and micro < accum - 1
                    else contextlib.nullcontext()
                )
                with sync:
                    with self.precision.autocast():
                        if clips.dim() == 6:  # (N, K, C, T, H, W): bags of K windows
                            logits = self.ddp(clips.flatten(0, 1)).unflatten(0, clips.shape[:2])
                            logits = select_instances(logits, labels)
                        else:
                            logits = self.ddp(clips)
                    loss = self.criterion(logits.float(), labels)
                    self.scaler.scale(loss / accum).backward()
                with torch.no_grad():
                    stats[0] += loss.detach().double() * labels.numel()
                    stats[1] += (logits.argmax(dim=1) == labels).sum()
                    stats[2] += labels.numel()
            stats[3] = self._budget_share()
            step_stats = all_reduce_sum(stats, env).cpu()  # one synchronisation per step
            totals += step_stats[:3]
            share = float(step_stats[3]) / env.world_size  # the same on every process
            budget_spent = share >= 1.0
            mean_loss = float(step_stats[0] / step_stats[2])
            if not math.isfinite(mean_loss):
                raise NonFiniteLossError(self._nonfinite_message(mean_loss, index))
            if c.optim.clip_grad_norm is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(params, c.optim.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.clock_progress = share
            self.scheduler.step()
            bad = nonfinite_entries(self.model.state_dict())
            if _anywhere(bool(bad), env):  # e.g. a BatchNorm variance overflowed
                raise NonFiniteStateError(
                    self._nonfinite_state_message(bad or ["the weights of another process"], index)
                )
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            lr = self.optimizer.param_groups[0]["lr"]
            every = c.log.every_steps
            if every and self.step % every == 0:
                writers.write(
                    {
                        "event": "step",
                        "epoch": self.epoch + 1,
                        "step": self.step,
                        "loss": mean_loss,
                        "lr": lr,
                    },
                    {"train/loss_step": mean_loss, "train/lr": lr},
                    self.step,
                )
            if bar is not None:
                rate = float(totals[2]) / max(time.perf_counter() - began, 1e-9)
                bar.set_postfix(
                    loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}", clips_s=f"{rate:.1f}", refresh=False
                )
                bar.update()
            if budget_spent:
                break
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - began
        clips = float(totals[2])
        return {
            "loss": float(totals[0]) / clips,
            "top1": 100.0 * float(totals[1]) / clips,
            "samples": int(clips),
            "time_s": seconds,
            "clips_per_s": clips / max(seconds, 1e-9),
            "lr": self.optimizer.param_groups[0]["lr"],
            "budget_spent": budget_spent,
        }

    def _last_good(self) -> str:
        last = self.output / "last.pt"
        return (
            f"the last good checkpoint is {last} (epoch {self.epoch})"
            if self.epoch > 0 and last.exists()
            else "no checkpoint was written yet"
        )

    def _last_good_before_validation(self) -> str:
        last = self.output / "last.pt"
        return (
            f"the last good checkpoint is {last} (epoch {self.epoch - 1})"
            if self.epoch > 1 and last.exists()
            else "no checkpoint was written yet"
        )

    def _nonfinite_message(self, value: float, index: int) -> str:
        return (
            f"loss is {value} at step {self.step + 1} (epoch {self.epoch + 1}, batch "
            f"{index + 1} of {self.steps_per_epoch}): training stopped; "
            f"{self._last_good()}. Lower optim.lr, set optim.clip_grad_norm, or use "
            "train.precision=fp32"
        )

    def _nonfinite_state_message(self, names: list[str], index: int) -> str:
        return (
            f"the weights became NaN or infinite at step {self.step + 1} (epoch "
            f"{self.epoch + 1}, batch {index + 1} of {self.steps_per_epoch}) in "
            f"{describe_nonfinite(names)}: training stopped, nothing saved; "
            f"{self._last_good()}. Lower optim.lr or set optim.clip_grad_norm"
        )

    @torch.no_grad()
    def _validate(self) -> dict[str, Any]:
        env = self.env
        model = self.ema.module if self.ema is not None else self.model
        broadcast_buffers(model, env)
        model.eval()
        meter = ClassificationMeter(self.num_classes)
        loss_fn = nn.CrossEntropyLoss(reduction="sum")
        nonfinite = False
        for clips, labels in self.val_loader:
            clips, labels = self._layout(clips.to(env.device)), labels.to(env.device)
            with self.precision.autocast():
                if clips.dim() == 6:  # (N, views, 3, T, H, W): average the views' softmax
                    n, views = clips.shape[:2]
                    logits = model(clips.flatten(0, 1)).float().view(n, views, -1)
                    scores = logits.softmax(-1).mean(1)
                    loss = nn.functional.nll_loss(
                        scores.clamp_min(1e-12).log(), labels, reduction="sum"
                    )
                else:
                    scores = model(clips).float()
                    loss = loss_fn(scores, labels)
            if not bool(torch.isfinite(scores).all()):
                nonfinite = True
                continue
            meter.update(scores, labels, float(loss))
        if _anywhere(nonfinite, env):
            raise NonFiniteError(
                f"validation after epoch {self.epoch}: the network's outputs are NaN or "
                f"infinite (its weights are finite): training stopped, nothing saved for "
                f"this epoch; {self._last_good_before_validation()}. Lower optim.lr or use "
                "train.precision=fp32"
            )
        meter.all_reduce(env)
        result = meter.compute()
        result.pop("per_class")
        return result

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        c, env = self.config, self.env
        self._build()
        if env.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            removed = [
                p for name in RUN_FILES for p in remove_stale_temporaries(self.output / name)
            ]
            if removed:
                print(
                    f"rsanet train: removed {len(removed)} temporary file(s) left in "
                    f"{self.output} by an interrupted save",
                    file=sys.stderr,
                )
            save_config(c, self.output / "config.yaml")
        writers = _Writers(self.output, env.is_main, c.log.tensorboard)
        if self.checkpoint is not None:
            writers.truncate_after(self.epoch, self.step)
        elif env.is_main and writers.path.exists():
            writers.path.unlink()  # --overwrite: a fresh metrics file
        if env.is_main:
            params = sum(p.numel() for p in self.model.parameters())
            print(
                f"rsanet train: {c.model.name} ({params / 1e6:.2f}M parameters) on "
                f"{c.data.format} ({len(self.train_set)} train / {len(self.val_set)} val, "
                f"{self.num_classes} classes), {env.world_size} process(es) on "
                f"{env.device.type}, {self.precision.name}, {self.steps_per_epoch} steps "
                f"per epoch"
                + (
                    f", a time budget of {c.train.time_budget_min:g} min"
                    if c.train.time_budget_min is not None
                    else ""
                )
                + (f", resuming after epoch {self.epoch}" if self.checkpoint is not None else ""),
                flush=True,
            )
            self._report_windows()
        stop = c.train.stop_after_epochs
        last: dict[str, Any] = {}
        try:
            while (
                self.epoch < c.train.epochs
                and (stop is None or self.epoch < stop)
                and not self.budget_spent
            ):
                train_metrics = self._train_epoch(writers)
                self.epoch += 1
                self.budget_spent = train_metrics["budget_spent"]
                closing = time.perf_counter()
                record = {
                    "event": "epoch",
                    "epoch": self.epoch,
                    "step": self.step,
                    "lr": train_metrics["lr"],
                    "train_loss": train_metrics["loss"],
                    "train_top1": train_metrics["top1"],
                    "train_samples": train_metrics["samples"],
                    "epoch_time_s": train_metrics["time_s"],
                    "clips_per_s": train_metrics["clips_per_s"],
                }
                if self.budget_spent:
                    record["budget_spent"] = True
                validating = (
                    self.epoch % c.train.eval_every == 0
                    or self.epoch == c.train.epochs
                    or self.budget_spent
                )
                if validating:
                    val = self._validate()
                    record.update(
                        {
                            f"val_{k}": v
                            for k, v in val.items()
                            if k in ("top1", "top5", "mean_class", "loss", "num_samples")
                        }
                    )
                    if val[c.train.best_metric] > self.best_score:
                        self.best_score, self.best_epoch = val[c.train.best_metric], self.epoch
                        self.best_top1 = val["top1"]
                        if env.is_main:
                            self._save(self.output / "best.pt", record)
                record["elapsed_s"] = self.elapsed + self._wall()
                if env.is_main:
                    self._save(self.output / "last.pt", record)
                    scalars = {
                        f"{k.replace('_', '/', 1)}": v
                        for k, v in record.items()
                        if k.startswith(("train_", "val_")) and isinstance(v, float)
                    }
                    scalars["train/lr_epoch"] = record["lr"]
                    writers.write(record, scalars, self.epoch)
                    writers.flush()
                    print(self._epoch_line(record), flush=True)
                if validating:  # what the final validation and saves will take again
                    self.closing_s = time.perf_counter() - closing
                self.history.append(record)
                last = record
        finally:
            writers.close()
        wall = self._wall()
        result = {
            "output_dir": str(self.output),
            "best_metric": c.train.best_metric,
            "best_score": None if self.best_score == -math.inf else self.best_score,
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "epochs_completed": self.epoch,
            "steps": self.step,
            "last": last,
            "history": self.history,
            "wall_time_s": wall,
            "elapsed_s": self.elapsed + wall,
            "budget_spent": self.budget_spent,
            "stopped_early": self.epoch < c.train.epochs and not self.budget_spent,
            "checkpoint": str(self.output / "last.pt"),
            "best_checkpoint": str(self.output / "best.pt"),
            "world_size": env.world_size,
        }
        if env.is_main:
            print(self._summary_line(result), flush=True)
        return result

    def _epoch_line(self, r: Mapping[str, Any]) -> str:
        line = (
            f"epoch {r['epoch']}/{self.config.train.epochs}: train loss "
            f"{r['train_loss']:.4f} top-1 {r['train_top1']:.1f}%"
        )
        if "val_top1" in r:
            line += (
                f" | val top-1 {r['val_top1']:.2f}% top-5 {r['val_top5']:.2f}% "
                f"mean-class {r['val_mean_class']:.2f}%"
            )
        line += (
            f" | lr {r['lr']:.3g} | {format_duration(r['epoch_time_s'])}, "
            f"{r['clips_per_s']:.1f} clips/s"
        )
        budget = self.config.train.time_budget_min
        if budget is not None and not r.get("budget_spent"):
            left = max(0.0, 60.0 * budget - r["elapsed_s"])
            line += f" | {format_duration(left)} of the time budget left"
        return line

    def _summary_line(self, r: Mapping[str, Any]) -> str:
        if r["best_score"] is None:
            best = "no validation yet"
        elif r["best_metric"] == "top1":
            best = f"best val top-1 {r['best_score']:.2f}% (epoch {r['best_epoch']})"
        else:
            best = (
                f"best val mean-class {r['best_score']:.2f}% (epoch {r['best_epoch']}, "
                f"top-1 {r['best_top1']:.2f}%)"
            )
        if r["stopped_early"]:
            state = (
                f"stopped after epoch {r['epochs_completed']} of {self.config.train.epochs} "
                "(continue with --resume)"
            )
        elif r["budget_spent"]:
            state = (
                f"time budget of {self.config.train.time_budget_min:g} min spent in epoch "
                f"{r['epochs_completed']} of {self.config.train.epochs}"
            )
        else:
            state = f"{r['epochs_completed']} epochs"
        return (
            f"rsanet train: {best}; {state}, {r['steps']} steps; wall time "
            f"{format_duration(r['wall_time_s'])} (run total "
            f"{format_duration(r['elapsed_s'])}); {self.output}"
        )
