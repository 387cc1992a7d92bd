"""Typed run configuration: dataclasses read from YAML, overridable key by key.

A configuration has six sections (:class:`ModelConfig`, :class:`DataConfig`,
:class:`OptimConfig`, :class:`TrainConfig`, :class:`EvalConfig`, :class:`LogConfig`); every
field has a type and a default, so a YAML file names only what differs: from the defaults,
or from the files its ``_base_`` key names (MMAction2's convention). Unknown keys, wrong
types and out-of-range values raise :class:`ConfigError` naming the dotted key (with the
closest valid name for a misspelt one) before any work starts.

>>> config = load_config("configs/synthmotion_rsanet.yaml", ["optim.lr=0.01"])
>>> config.optim.lr
0.01
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration that cannot be used: the message names the key and the fix."""


class _NotFinite(ConfigError):
    """A float key given NaN or an infinity (reported as is, not as a type mismatch)."""


#: the most intra-op threads or loader workers per process that a configuration may ask for
MAX_WORKERS = 1024
#: the largest clip (3 x data.num_frames x data.size², float32) a run accepts, in bytes
MAX_CLIP_BYTES = 2**31


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


@dataclass
class ModelConfig:
    """The network: a name of :func:`rsanet.models.list_models` and its overrides."""

    name: str = "rsanet_r50"
    #: classifier outputs; None takes the dataset's class count
    num_classes: int | None = None
    #: path of an image checkpoint inflated into the backbone: an ImageNet ResNet in
    #: torchvision's layout, or for the video transformers a ViT/DeiT in timm's layout
    pretrained: str | None = None
    #: a trained rsanet checkpoint (or weights-only file) of the same network to start from:
    #: every tensor that fits is loaded, the classifier of another class count is new
    #: (fine-tuning, as MMAction2's load_from)
    init_from: str | None = None
    #: head dropout and the largest stochastic-depth rate; None keeps the model's default
    drop_rate: float | None = None
    drop_path_rate: float | None = None
    #: any other keyword argument of the model's constructor
    options: dict[str, Any] = field(default_factory=dict)


#: formats of untrimmed recordings, trained on windows (:data:`rsanet.data.UNTRIMMED_FORMATS`)
UNTRIMMED_FORMATS = ("aihub-cctv", "ucf-crime", "xd-violence", "intervals")


@dataclass
class UntrimmedConfig:
    """Windows of untrimmed recordings (``data.format`` one of :data:`UNTRIMMED_FORMATS`),
    read by :func:`rsanet.data.build_untrimmed_dataset`."""

    #: seconds per window (``data.num_frames`` frames spread evenly over it)
    window_s: float = 4.0
    #: the fraction of a window an event must cover for the window to be a positive
    min_overlap: float = 0.5
    #: the fraction of each training epoch's windows that are positives (the rest normal)
    positive_fraction: float = 0.5
    #: training windows drawn per epoch
    windows_per_epoch: int = 1000
    #: positives drawn per event ("event") or per class, then event ("class": rare classes
    #: are seen as often as common ones)
    positive_sampling: str = field(default="event", metadata=_choices("event", "class"))
    #: windows per training sample: 1, or a bag of several windows of one event (or of
    #: normal time) of which the loss takes one (multiple-instance learning); an epoch is
    #: then windows_per_epoch bags, and train.batch_size counts bags
    bag_size: int = 1
    #: what makes a window positive: the events' whole intervals ("events"), or their key
    #: moments, the annotated actions inside each event ("actions": the bag set down, not
    #: the walks around it); the rest of an event's time then gives no window
    positive_spans: str = field(default="events", metadata=_choices("events", "actions"))
    #: a window-scores file (the window_scores.npz of `rsanet eval-events` run with a
    #: trained network on the training recordings): its hardest normal windows are trained
    #: on more often (null: normal windows drawn uniformly)
    hard_negatives: str | None = None
    #: with hard_negatives, the fraction of normal samples drawn from them
    hard_negative_fraction: float = 0.5
    #: with hard_negatives, which windows are hard: this top fraction of the file's normal
    #: windows by their highest event-class score
    hard_negative_top: float = 0.1
    #: seconds between validation windows (null: window_s, windows side by side)
    val_stride_s: float | None = None
    #: without data.val_annotations: the fraction of recordings (whole sessions) validated on
    val_fraction: float = 0.2
    #: the seed of the session split (independent of train.seed)
    split_seed: int = 0
    #: of each clip's data.num_frames, this many show the scene's recent past: spread over
    #: the context_s seconds before the window, before the window's own frames. A network
    #: that reads them is built with them (ResNetTSN's stem subtracts their per-pixel
    #: median from each window frame); the streams of rsanet predict and serve keep that
    #: much history. 0: every frame is the window's
    context_frames: int = 0
    #: seconds before each window that its context frames cover
    context_s: float = 8.0


@dataclass
class DataConfig:
    """The dataset, read by :func:`rsanet.data.build_dataset`."""

    format: str = "synthmotion"
    #: annotation folder holding the standard split files, or one file for both splits
    #: (None for in-memory formats such as synthmotion)
    annotations: str | None = None
    #: the split files themselves, when they are not the standard names of a folder
    train_annotations: str | None = None
    val_annotations: str | None = None
    #: folder of the videos or frame folders
    root: str | None = None
    num_frames: int = 8
    sampling: str = field(default="tsn", metadata=_choices("tsn", "dense"))
    size: int = 224
    #: the whole frame squeezed to size x size, no crop (fixed cameras: an event can happen
    #: anywhere in view); false: crops of the short side, as TSN/TSM/RSA
    full_frame: bool = False
    flip_mode: str = field(default="none", metadata=_choices("none", "skip", "swap"))
    bad_sample_policy: str = field(default="skip", metadata=_choices("skip", "raise"))
    #: DataLoader worker processes per training process
    num_workers: int = 0
    #: format options given to both splits, then those of each split
    options: dict[str, Any] = field(default_factory=dict)
    train_options: dict[str, Any] = field(default_factory=dict)
    val_options: dict[str, Any] = field(default_factory=dict)
    #: windows of untrimmed recordings; null takes the defaults for those formats
    untrimmed: UntrimmedConfig | None = None


@dataclass
class OptimConfig:
    """Optimiser, learning-rate schedule and loss."""

    name: str = field(default="sgd", metadata=_choices("sgd", "adamw"))
    #: peak learning rate (reached at the end of the warm-up)
    lr: float = 0.02
    momentum: float = 0.9
    nesterov: bool = True
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 5e-4
    #: no weight decay on normalisation parameters and biases
    no_decay_norm_bias: bool = True
    label_smoothing: float = 0.1
    #: largest global gradient norm (None: no clipping)
    clip_grad_norm: float | None = 100.0
    schedule: str = field(default="cosine", metadata=_choices("cosine", "constant"))
    #: linear warm-up from ~0 to lr over this many epochs, applied per optimiser step
    warmup_epochs: float = 5.0
    #: learning rate at the end of the cosine
    min_lr: float = 0.0


@dataclass
class TrainConfig:
    """The training loop."""

    epochs: int = 50
    #: clips per optimiser step, over all processes and accumulation steps together
    batch_size: int = 64
    #: micro-batches whose gradients are summed before each optimiser step
    grad_accum_steps: int = 1
    #: fp32, bf16 (CPU or CUDA), fp16 (CUDA, with a gradient scaler) or auto
    #: (bf16 on CUDA when supported, else fp16; fp32 on CPU)
    precision: str = field(default="fp32", metadata=_choices("fp32", "bf16", "fp16", "auto"))
    #: hand the network its clips in channels-last memory order (stored as N, T, H, W, C):
    #: oneDNN's 3-D convolutions run faster on them on a CPU, and the RSA layers keep that
    #: order; the same numbers up to rounding
    channels_last: bool = False
    device: str = field(default="auto", metadata=_choices("auto", "cpu", "cuda"))
    seed: int = 0
    #: validate every this many epochs (and after the last one)
    eval_every: int = 1
    #: the validation metric best.pt is chosen by: top1, or mean_class (the mean of the
    #: per-class accuracies; for untrimmed recordings, where most windows show no event and
    #: top-1 rewards calling everything normal)
    best_metric: str = field(default="top1", metadata=_choices("top1", "mean_class"))
    #: keep an exponential moving average of the weights, used for validation
    ema: bool = False
    ema_decay: float = 0.999
    #: stop (as if killed) once this many epochs are complete; the schedule still spans
    #: ``epochs``, so ``--resume`` continues exactly where an uninterrupted run would be
    stop_after_epochs: int | None = None
    #: the run's wall-time budget in minutes (None: none). The learning-rate schedule then
    #: advances by the larger of the steps done and the time spent, and training ends once
    #: the budget is spent (after up to ``epochs``), so the cosine still reaches its end.
    #: The clock decides the steps: such a run is not reproducible step for step
    time_budget_min: float | None = None
    #: intra-op threads per process (None: torch's default)
    num_threads: int | None = None


@dataclass
class EvalConfig:
    """Testing: views per video and batch size."""

    num_clips: int = 1
    num_crops: int = field(default=1, metadata={"choices": (1, 3)})
    batch_size: int = 8
    #: use a checkpoint's EMA weights when it has them
    use_ema: bool = True


@dataclass
class LogConfig:
    """Progress bars and metric files."""

    progress: str = field(default="auto", metadata=_choices("auto", "always", "never"))
    tensorboard: bool = True
    #: write the training loss and learning rate every this many optimiser steps (0: never)
    every_steps: int = 10


@dataclass
class Config:
    """A whole run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)


# -- type checking ------------------------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _section(hint: Any) -> Any:
    """The dataclass of a section field, ``Section`` or ``Section | None``, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else None
    return hint if dataclasses.is_dataclass(hint) else None


def valid_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of ``cls``: ``model``, ``model.name``, ... ``log.every_steps``."""
    keys = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        keys.append(key)
        section = _section(_hints(cls)[f.name])
        if section is not None:
            keys.extend(valid_keys(section, key + "."))
    return keys


def _unknown(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown key {key!r}{hint}")


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is not None:
        return str(hint).replace("typing.", "")
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type ``hint`` (ints are accepted as floats)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except _NotFinite:
                raise
            except ConfigError as error:
                if _section(hint) is not None and isinstance(value, Mapping):
                    raise  # a section given as a map: its own key or value is wrong
                errors.append(error)
        raise ConfigError(f"{key}: expected {_type_name(hint)}, got {_describe(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):
                raise _NotFinite(f"{key} must be a finite number, got {number}")
            return number
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, (list, tuple)):
            return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, Mapping):
            return {str(k): v for k, v in value.items()}
    elif dataclasses.is_dataclass(hint):
        if isinstance(value, Mapping):
            return dataclass_from_dict(hint, value, key + ".")
        if value is None:
            return hint()
    else:  # pragma: no cover - every field type is handled above
        raise TypeError(f"{key}: unsupported field type {hint!r}")
    raise ConfigError(f"{key}: expected {_type_name(hint)}, got {_describe(value)}")


def _check_choice(f: dataclasses.Field, value: Any, key: str) -> None:
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}{hint}"
        )


def dataclass_from_dict(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """An instance of the dataclass ``cls`` from a mapping, every key and type checked."""
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"{prefix.rstrip('.') or 'configuration'}: expected a mapping, got {_describe(values)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in fields:
            raise _unknown(key)
        kwargs[name] = _coerce(value, hints[name], key)
        _check_choice(fields[name], kwargs[name], key)
    return cls(**kwargs)


# -- YAML and overrides -------------------------------------------------------------------


def config_from_dict(values: Mapping[str, Any] | None) -> Config:
    """A :class:`Config` from nested dicts (missing keys take their defaults), validated."""
    config = dataclass_from_dict(Config, values or {})
    validate(config)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """Nested plain dicts (YAML- and JSON-friendly) of ``config``."""
    return dataclasses.asdict(config)


BASE_KEY = "_base_"


def _merged(base: dict[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``: maps merge key by key, anything else (lists included)
    replaces the base's value."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _read_yaml(path: str | Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping of the YAML file ``path``, with the files named by its ``_base_`` key
    (one path or a list, relative to ``path``'s folder) read first and ``path``'s values
    merged over them: a variant of a configuration names only what it changes."""
    path = Path(path)
    if not path.is_file():
        where = f" (the {BASE_KEY} of {str(chain[-1])!r})" if chain else ""
        raise FileNotFoundError(f"no configuration file at {str(path)!r}{where}")
    if path.resolve() in chain:
        loop = " -> ".join(str(p) for p in [*chain, path.resolve()])
        raise ConfigError(f"{path}: its {BASE_KEY} files name each other in a loop: {loop}")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML text file (it is not UTF-8 text)") from None
    if values is None or values == {}:
        # not the defaults: they would start a full training run nobody asked for
        raise ConfigError(
            f"{path} is empty: a configuration names at least the model and the data "
            "(start from one of configs/, e.g. configs/synthmotion_rsanet.yaml)"
        )
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(values).__name__}")
    bases = values.pop(BASE_KEY, None)
    if bases is None:
        return values
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(
            f"{path}: {BASE_KEY} must be a file name or a list of them (relative to the "
            f"file's folder), got {bases!r}"
        )
    merged: dict[str, Any] = {}
    for base in bases:
        merged = _merged(merged, _read_yaml(path.parent / base, (*chain, path.resolve())))
    return _merged(merged, values)


def parse_override(text: str) -> tuple[str, Any, str]:
    """``"optim.lr=0.01"`` -> ``("optim.lr", 0.01, "0.01")``: the key, the value read as
    YAML (numbers, true/false, null, [lists], {maps}) and the raw text."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. optim.lr=0.01), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value, raw


def _set_path(values: dict[str, Any], key: str, value: Any, raw: str) -> None:
    """Put ``value`` at the dotted ``key`` of the nested dict ``values`` (creating the
    intermediate maps), checking that the key exists in :class:`Config`."""
    parts = key.split(".")
    cls: Any = Config
    node = values
    for depth, part in enumerate(parts):
        here = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if cls is None:  # inside a free-form dict field (e.g. data.options)
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
            continue
        hints = _hints(cls)
        if part not in hints:
            raise _unknown(here)
        hint = hints[part]
        hint = _section(hint) or hint
        if last:
            if dataclasses.is_dataclass(hint):
                raise ConfigError(
                    f"{here} is a section: set one of its keys, e.g. "
                    f"{here}.{dataclasses.fields(hint)[0].name}=..."
                )
            if (hint is str or hint == (str | None)) and value is not None:
                # a string field keeps the text as typed: "001" stays "001", not 1
                value = value if isinstance(value, str) else raw.strip()
            node[part] = value
            return
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
        if dataclasses.is_dataclass(hint):
            cls = hint
        elif typing.get_origin(hint) is dict:
            cls = None
        else:
            raise ConfigError(f"{here} is a {_type_name(hint)}, it has no key {parts[depth + 1]!r}")


def apply_overrides(values: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides to the nested dict ``values`` (in place, returned)."""
    for text in overrides:
        key, value, raw = parse_override(text)
        _set_path(values, key, value, raw)
    return values


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read the YAML file ``path`` (None: the defaults; an empty file is a ConfigError),
    apply ``--set`` style overrides
    (``["optim.lr=0.01", "data.num_frames=16"]``), type-check and validate."""
    values = _read_yaml(path) if path is not None else {}
    apply_overrides(values, overrides)
    return config_from_dict(values)


def override_config(config: Config, overrides: Sequence[str]) -> Config:
    """A copy of ``config`` with the overrides applied."""
    return config_from_dict(apply_overrides(config_to_dict(config), overrides))


def dump_config(config: Config) -> str:
    """``config`` as YAML text (sections in declaration order)."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=False)


def save_config(config: Config, path: str | Path) -> Path:
    """Write ``config`` as YAML to ``path`` (atomically); returns the path."""
    from rsanet.atomic import atomic_write_text

    return atomic_write_text(path, dump_config(config))


# -- validation ---------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(config: Config) -> None:
    """Range checks across fields; raises ConfigError naming the key."""
    m, d, o, t, e, lg = (
        config.model,
        config.data,
        config.optim,
        config.train,
        config.eval,
        config.log,
    )
    _require(bool(m.name), "model.name must name a model (see rsanet.models.list_models())")
    _require(
        not (m.pretrained and m.init_from),
        "model.pretrained and model.init_from are both set: init_from loads a whole trained "
        "model over the ImageNet weights, so set only one",
    )
    _require(
        m.num_classes is None or m.num_classes >= 1,
        f"model.num_classes must be >= 1 or null, got {m.num_classes}",
    )
    for key in ("drop_rate", "drop_path_rate"):
        rate = getattr(m, key)
        _require(rate is None or 0.0 <= rate < 1.0, f"model.{key} must be in [0, 1), got {rate}")
    _require(d.num_frames >= 1, f"data.num_frames must be >= 1, got {d.num_frames}")
    _require(d.size >= 1, f"data.size must be >= 1, got {d.size}")
    clip_bytes = 4 * 3 * d.num_frames * d.size**2
    _require(
        clip_bytes <= MAX_CLIP_BYTES,
        f"one clip of data.num_frames={d.num_frames} frames of data.size={d.size} pixels "
        f"takes {clip_bytes / 2**30:.3g} GiB (at most {MAX_CLIP_BYTES / 2**30:g} GiB): lower "
        "data.num_frames or data.size",
    )
    _require(
        0 <= d.num_workers <= MAX_WORKERS,
        f"data.num_workers must be in 0..{MAX_WORKERS}, got {d.num_workers}",
    )
    _require(
        not (d.full_frame and e.num_crops != 1),
        f"data.full_frame shows the whole frame, so eval.num_crops must be 1, got {e.num_crops}",
    )
    _validate_untrimmed(d, e)
    _require(o.lr > 0, f"optim.lr must be > 0, got {o.lr}")
    _require(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    _require(0 <= o.momentum < 1, f"optim.momentum must be in [0, 1), got {o.momentum}")
    _require(
        len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas),
        f"optim.betas must be two numbers in [0, 1), got {o.betas}",
    )
    _require(
        0 <= o.label_smoothing < 1,
        f"optim.label_smoothing must be in [0, 1), got {o.label_smoothing}",
    )
    _require(
        o.clip_grad_norm is None or o.clip_grad_norm > 0,
        f"optim.clip_grad_norm must be > 0 or null, got {o.clip_grad_norm}",
    )
    _require(o.warmup_epochs >= 0, f"optim.warmup_epochs must be >= 0, got {o.warmup_epochs}")
    _require(o.min_lr >= 0, f"optim.min_lr must be >= 0, got {o.min_lr}")
    _require(o.min_lr <= o.lr, f"optim.min_lr ({o.min_lr}) exceeds optim.lr ({o.lr})")
    _require(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
    _require(
        o.warmup_epochs <= t.epochs,
        f"optim.warmup_epochs ({o.warmup_epochs}) exceeds train.epochs ({t.epochs})",
    )
    _require(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
    _require(
        t.grad_accum_steps >= 1, f"train.grad_accum_steps must be >= 1, got {t.grad_accum_steps}"
    )
    _require(
        t.batch_size % t.grad_accum_steps == 0,
        f"train.batch_size ({t.batch_size}) must be a multiple of train.grad_accum_steps "
        f"({t.grad_accum_steps})",
    )
    _require(t.eval_every >= 1, f"train.eval_every must be >= 1, got {t.eval_every}")
    _require(0 < t.ema_decay < 1, f"train.ema_decay must be in (0, 1), got {t.ema_decay}")
    _require(
        t.stop_after_epochs is None or 1 <= t.stop_after_epochs <= t.epochs,
        f"train.stop_after_epochs must be in 1..train.epochs ({t.epochs}) or null, "
        f"got {t.stop_after_epochs}",
    )
    _require(
        t.time_budget_min is None or t.time_budget_min > 0,
        f"train.time_budget_min must be > 0 minutes or null, got {t.time_budget_min}",
    )
    _require(
        t.num_threads is None or 1 <= t.num_threads <= MAX_WORKERS,
        f"train.num_threads must be in 1..{MAX_WORKERS} or null, got {t.num_threads}",
    )
    _require(-(2**63) <= t.seed < 2**63, f"train.seed must fit in 64 bits, got {t.seed}")
    _require(e.num_clips >= 1, f"eval.num_clips must be >= 1, got {e.num_clips}")
    _require(e.batch_size >= 1, f"eval.batch_size must be >= 1, got {e.batch_size}")
    _require(lg.every_steps >= 0, f"log.every_steps must be >= 0, got {lg.every_steps}")


def _validate_untrimmed(d: DataConfig, e: EvalConfig) -> None:
    if d.format not in UNTRIMMED_FORMATS:
        _require(
            d.untrimmed is None,
            f"data.untrimmed applies to the untrimmed formats ({', '.join(UNTRIMMED_FORMATS)}), "
            f"not {d.format!r}: remove data.untrimmed or change data.format",
        )
        return
    u = d.untrimmed or UntrimmedConfig()
    _require(
        d.sampling == "tsn",
        f"data.sampling must be tsn for {d.format} (data.num_frames frames spread evenly over "
        f"data.untrimmed.window_s), got {d.sampling!r}: remove data.sampling",
    )
    _require(
        e.num_clips == 1,
        f"eval.num_clips must be 1 for {d.format} (each window is one clip; set "
        f"data.untrimmed.val_stride_s for more windows), got {e.num_clips}",
    )
    _require(
        u.window_s > 0,
        f"data.untrimmed.window_s must be > 0 seconds, got {u.window_s} (e.g. 4.0)",
    )
    _require(
        0 < u.min_overlap <= 1,
        f"data.untrimmed.min_overlap must be in (0, 1] (the fraction of a window an event "
        f"covers), got {u.min_overlap} (e.g. 0.5)",
    )
    _require(
        0 <= u.positive_fraction <= 1,
        f"data.untrimmed.positive_fraction must be in [0, 1], got {u.positive_fraction} "
        "(e.g. 0.5: half the windows show an event)",
    )
    _require(
        u.windows_per_epoch >= 1,
        f"data.untrimmed.windows_per_epoch must be >= 1, got {u.windows_per_epoch}",
    )
    _require(
        u.bag_size >= 1,
        f"data.untrimmed.bag_size must be >= 1, got {u.bag_size} (1: one window per sample)",
    )
    _require(
        0 <= u.hard_negative_fraction <= 1,
        "data.untrimmed.hard_negative_fraction must be in [0, 1] (the share of normal samples "
        f"drawn from the hard negatives), got {u.hard_negative_fraction}",
    )
    _require(
        0 < u.hard_negative_top <= 1,
        "data.untrimmed.hard_negative_top must be in (0, 1] (the share of the file's normal "
        f"windows taken as hard), got {u.hard_negative_top} (e.g. 0.1)",
    )
    _require(
        u.val_stride_s is None or u.val_stride_s > 0,
        f"data.untrimmed.val_stride_s must be > 0 seconds or null (window_s), got {u.val_stride_s}",
    )
    _require(
        0 < u.val_fraction < 1,
        f"data.untrimmed.val_fraction must be in (0, 1), got {u.val_fraction} (e.g. 0.2); "
        "or give data.train_annotations and data.val_annotations",
    )
    _require(
        0 <= u.context_frames < d.num_frames,
        f"data.untrimmed.context_frames must be in [0, data.num_frames) (num_frames={d.num_frames}"
        f" counts them too: e.g. 4 of 20 leaves 16 for the window), got {u.context_frames}",
    )
    _require(
        u.context_s > 0,
        f"data.untrimmed.context_s must be > 0 seconds, got {u.context_s} (e.g. 8.0)",
    )
