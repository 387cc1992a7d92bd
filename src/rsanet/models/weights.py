"""Weights in and out: ImageNet initialisation, our checkpoints, and fit checking.

* :func:`load_imagenet_resnet` inflates a 2-D ResNet checkpoint (torchvision layout) into a
  TSN ResNet: every 2-D kernel (O, I, kh, kw) becomes (O, I, 1, kh, kw); blocks holding a
  transform keep their own initialisation, as in the authors' code.
* :func:`save_checkpoint` / :func:`read_checkpoint`: our checkpoint format,
  ``{"format": "rsanet", "format_version": 1, "model": name, "model_config": kwargs,
  "state_dict": ..., **extra}`` (e.g. ``classes``, ``epoch``), from which the model is
  rebuilt with no other argument by :func:`rsanet.models.load_model` (in
  :mod:`rsanet.models.builder`, which also reads the weights-only safetensors files).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn

from rsanet.atomic import atomic_save
from rsanet.models.resnet import DEFAULT_TRANSFORM

CHECKPOINT_FORMAT = "rsanet"
CHECKPOINT_VERSION = 1
_RESERVED = {"format", "format_version", "model", "model_config", "state_dict"}
#: how many mismatching keys an error message names
_SHOWN = 5


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys or shapes do not fit the model (the message names them)."""


# -- reading ---------------------------------------------------------------------------

#: the first bytes of a checkpoint in torch's legacy (pre-1.6, non-zip) format
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
#: file signatures that are certainly not checkpoints: (offset, bytes, what the file is)
_SIGNATURES = (
    (4, b"ftyp", "an MP4/MOV video"),
    (0, b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
    (0, b"RIFF", "a RIFF file (AVI video or WAV audio)"),
    (0, b"\x00\x00\x01\xba", "an MPEG video"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"\x89PNG", "a PNG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"%PDF", "a PDF document"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"\x93NUMPY", "a NumPy array (.npy)"),
    (0, b"\x89HDF", "an HDF5 file"),
)


class NotACheckpointError(ValueError):
    """A file that is not a PyTorch checkpoint at all: empty, truncated or damaged, a video,
    a text file, a TorchScript export (the message says which)."""


def _not_a_checkpoint(path: Path) -> str | None:
    """Why the file at ``path`` cannot be a checkpoint written by ``torch.save``, judged
    from its first bytes (and, for a zip archive, its member names); None when it looks
    like one."""
    import zipfile

    try:
        with path.open("rb") as handle:
            head = handle.read(256)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if not head:
        return "is empty (0 bytes), not a checkpoint (a save interrupted before it began?)"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return (
                "is truncated or damaged (a zip archive without its directory): not a "
                "complete checkpoint, e.g. a save that was interrupted or a partial copy"
            )
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return (
                "is a TorchScript export (rsanet export --format torchscript), not a "
                "checkpoint: load it with torch.jit.load, or use the checkpoint it was "
                "exported from"
            )
        if not any(n.endswith("data.pkl") for n in names):
            return "is a zip archive, not a PyTorch checkpoint (it has no data.pkl)"
        return None
    if head.startswith(_LEGACY_MAGIC):
        return None
    if path.suffix.lower() == ".safetensors" or (len(head) > 9 and head[8:10] == b'{"'):
        return (
            "is a safetensors weights file, not a PyTorch checkpoint: load it with "
            "rsanet.load_model(path) (its JSON description beside it)"
        )
    for offset, signature, what in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return f"is {what}, not a PyTorch checkpoint"
    if head[:1] == head[188:189] == b"\x47":  # a sync byte every 188 bytes
        return "is an MPEG transport stream (a video), not a PyTorch checkpoint"
    if head[:1] == b"\x80":
        return (
            "is a plain Python pickle, not a checkpoint written by torch.save "
            "(rsanet.models.save_checkpoint writes ours)"
        )
    if head[:1] == b"\x08" and path.suffix.lower() == ".onnx":
        return "is an ONNX model, not a PyTorch checkpoint (predict with --backend onnxruntime)"
    try:
        head[:200].decode("utf-8")
    except UnicodeDecodeError:
        return f"is not a PyTorch checkpoint (its first bytes are {head[:8].hex(' ')})"
    return "is a text file, not a PyTorch checkpoint"


def read_checkpoint(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint as a dict: ``source`` is a dict already or the path of a file saved by
    ``torch.save`` (read with ``weights_only=True`` onto the CPU).

    A file that is not a checkpoint at all (empty, truncated, a video, text, a TorchScript
    export) raises :class:`NotACheckpointError` saying what it is; the advice to load with
    ``weights_only=False`` is given only for a real checkpoint holding foreign objects."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}")
    reason = _not_a_checkpoint(path)
    if reason is not None:
        raise NotACheckpointError(f"{path} {reason}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        foreign = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if foreign is None:
            raise NotACheckpointError(
                f"{path} is damaged: it looks like a PyTorch checkpoint but its contents "
                f"cannot be read ({_first_line(error)})"
            ) from None
        raise ValueError(
            f"{path} holds objects other than tensors and plain containers (e.g. "
            f"{foreign.group(1)}), which are not loaded for safety; if you trust the file, "
            "load it with torch.load(path, weights_only=False) and pass the dict instead"
        ) from error
    except (RuntimeError, OSError, EOFError, KeyError, IndexError, ValueError) as error:
        raise NotACheckpointError(
            f"{path} is truncated or damaged: not a readable PyTorch checkpoint "
            f"({type(error).__name__}: {_first_line(error)})"
        ) from None
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a checkpoint dict")
    return dict(loaded)


def _first_line(error: BaseException) -> str:
    """The first line of an error's message, at most 160 characters."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:160]


def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: its ``state_dict`` (or ``model``) entry when it has
    one, else the checkpoint itself; a DataParallel ``module.`` prefix is removed."""
    for key in ("state_dict", "model"):
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            checkpoint = inner
            break
    state = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"checkpoint has no tensors (top-level keys: {sorted(checkpoint)[:10]})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


# -- fit checking ----------------------------------------------------------------------


def tensor_shape(t: torch.Tensor) -> tuple[int, ...]:
    """A tensor's shape as a plain tuple, as the fit-checking messages print it."""
    return tuple(t.shape)


def check_state_dict_fits(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    what: str = "checkpoint",
    ignore_missing: tuple[str, ...] = ("num_batches_tracked",),
) -> None:
    """Raise CheckpointMismatchError naming the first mismatching keys (with the shape
    in the checkpoint and in the model), the first missing and the first unexpected
    keys, unless ``state_dict`` fits ``model`` exactly (missing keys ending in
    ``ignore_missing`` are tolerated)."""
    ours = model.state_dict()
    name = getattr(model, "model_name", type(model).__name__)
    shapes = [
        f"{k}: {what} {tensor_shape(v)} vs model {tensor_shape(ours[k])}"
        for k, v in state_dict.items()
        if k in ours and tensor_shape(v) != tensor_shape(ours[k])
    ]
    missing = [k for k in ours if k not in state_dict and not k.endswith(ignore_missing)]
    unexpected = [k for k in state_dict if k not in ours]
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): " + "; ".join(shapes[:_SHOWN]))
    if missing:
        problems.append(
            f"{len(missing)} key(s) missing from the {what}, e.g. "
            + ", ".join(f"{k} {tensor_shape(ours[k])}" for k in missing[:_SHOWN])
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected key(s) in the {what}, e.g. "
            + ", ".join(f"{k} {tensor_shape(state_dict[k])}" for k in unexpected[:_SHOWN])
        )
    if problems:
        raise CheckpointMismatchError(f"{what} does not fit {name}: " + " | ".join(problems))


def load_state_dict_checked(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str = "checkpoint"
) -> None:
    """``model.load_state_dict(state_dict)`` after :func:`check_state_dict_fits`."""
    check_state_dict_fits(model, state_dict, what=what)
    model.load_state_dict(state_dict, strict=False)


# -- ImageNet initialisation -----------------------------------------------------------


#: How :func:`load_imagenet_resnet` treats a block whose 3x3 convolution is a transform.
TransformBlocks = Literal["fresh", "imagenet-except-transform"]
TRANSFORM_BLOCKS: tuple[str, ...] = get_args(TransformBlocks)


@dataclass
class ImageNetLoadResult:
    """What :func:`load_imagenet_resnet` did.

    loaded: model keys filled from the checkpoint.
    not_loaded: model keys left as initialised (the transform blocks or transforms, the
        classifier).
    unused: checkpoint keys not used (the 2-D classifier, the skipped blocks or 3x3
        convolutions).
    """

    loaded: list[str] = field(default_factory=list)
    not_loaded: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def _replaced_prefixes(model: nn.Module, transform_blocks: TransformBlocks) -> list[str]:
    """Key prefixes left alone in a model's transform blocks: the whole block
    ``layer{s}.{i}.`` (``"fresh"``) or only its ``layer{s}.{i}.conv2.``."""
    if transform_blocks not in TRANSFORM_BLOCKS:
        raise ValueError(
            f"transform_blocks must be one of {', '.join(map(repr, TRANSFORM_BLOCKS))}, "
            f"got {transform_blocks!r}"
        )
    blocks = getattr(model, "named_blocks", None)
    if blocks is None:
        return []
    suffix = "." if transform_blocks == "fresh" else ".conv2."
    return [f"{name}{suffix}" for name, b in blocks() if b.transform != DEFAULT_TRANSFORM]


def load_imagenet_resnet(
    model: nn.Module,
    source: str | Path | Mapping[str, Any],
    *,
    skip_prefixes: tuple[str, ...] = ("fc.",),
    transform_blocks: TransformBlocks = "fresh",
) -> ImageNetLoadResult:
    """Initialise a TSN ResNet's backbone from a 2-D ImageNet ResNet checkpoint.

    ``source`` is the path of a state dict in torchvision's layout (``conv1.weight``,
    ``layer1.0.conv1.weight``, ..., ``fc.weight``) or the dict itself. 2-D kernels
    (O, I, kh, kw) are inflated to (O, I, 1, kh, kw); BatchNorm parameters and statistics
    are copied. The classifier (``skip_prefixes``) is left alone, and so are the blocks
    whose 3x3 convolution is a transform (RSA, self-attention, 3x3x3, TSM ...):

    * ``transform_blocks="fresh"`` (default, the authors' initialisation): every key of
      such a block (``layer{s}.{i}.*``, its ``downsample`` too if it has one) keeps the
      model's initialisation. With ``zero_init_residual`` (the default) its last BatchNorm
      has zero scale, so the block starts as the identity on its shortcut. The authors'
      loader skips blocks by position, and their transforms are never in a block with a
      downsample (always block 1 or later); ours skips a transform block whole wherever
      it is.
    * ``transform_blocks="imagenet-except-transform"`` (ours, not the authors'): only the
      replaced 3x3 convolution (``layer{s}.{i}.conv2.*``) keeps its initialisation; the
      block's other convolutions and BatchNorms are ImageNet's.

    Everything else must fit, or CheckpointMismatchError names the first misfits with
    both shapes.
    """
    replaced = tuple(_replaced_prefixes(model, transform_blocks))
    state = extract_state_dict(read_checkpoint(source))
    ours = model.state_dict()
    skipped = tuple(skip_prefixes) + replaced

    result = ImageNetLoadResult()
    mismatched, unexpected, to_load = [], [], {}
    for key, tensor in state.items():
        if key.startswith(skipped):
            result.unused.append(key)
            continue
        if key not in ours:
            unexpected.append(f"{key} {tensor_shape(tensor)}")
            continue
        target = ours[key]
        if tensor.dim() == 4 and target.dim() == 5:
            tensor = tensor.unsqueeze(2)  # (O, I, kh, kw) -> (O, I, 1, kh, kw)
        if tensor.shape != target.shape:
            mismatched.append(
                f"{key}: checkpoint {tensor_shape(state[key])} vs model {tensor_shape(target)}"
            )
            continue
        to_load[key] = tensor.to(target.dtype)
    missing = [
        f"{k} {tensor_shape(v)}"
        for k, v in ours.items()
        if k not in to_load and not k.startswith(skipped) and not k.endswith("num_batches_tracked")
    ]
    load_partial_state_dict(
        model,
        to_load,
        result,
        "ImageNet checkpoint",
        mismatched=mismatched,
        missing=missing,
        unexpected=unexpected,
    )
    return result


def load_partial_state_dict(
    model: nn.Module,
    to_load: dict[str, torch.Tensor],
    result: Any,
    what: str,
    *,
    mismatched: list[str],
    missing: list[str],
    unexpected: list[str],
) -> None:
    """Load ``to_load`` (a subset of the model's keys) into ``model`` and fill
    ``result.loaded`` / ``result.not_loaded``, or raise CheckpointMismatchError naming the
    first misfits (``what`` names the checkpoint kind) before changing any weight."""
    name = getattr(model, "model_name", type(model).__name__)
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): " + "; ".join(mismatched[:_SHOWN]))
    if missing:
        problems.append(
            f"{len(missing)} key(s) missing from the checkpoint, e.g. "
            + ", ".join(missing[:_SHOWN])
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected key(s) in the checkpoint, e.g. "
            + ", ".join(unexpected[:_SHOWN])
        )
    if problems:
        raise CheckpointMismatchError(f"{what} does not fit {name}: " + " | ".join(problems))
    model.load_state_dict(to_load, strict=False)
    result.loaded = sorted(to_load)
    result.not_loaded = [k for k in model.state_dict() if k not in to_load]


# -- our checkpoints -------------------------------------------------------------------


def model_config(model: nn.Module) -> dict[str, Any]:
    """``model.rsanet_config`` (set by ``create_model``): the name and its kwargs."""
    config = getattr(model, "rsanet_config", None)
    if not isinstance(config, Mapping) or "name" not in config:
        raise ValueError(
            "the model has no rsanet_config: build it with rsanet.create_model(name, ...) "
            "so that its checkpoint records how to rebuild it"
        )
    return dict(config)


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> Path:
    """Write ``model`` (name, configuration, weights) and ``extra`` entries (e.g.
    ``classes=[...]``, ``epoch=3``) to ``path`` atomically (temporary file, then
    ``os.replace``). Returns the path."""
    clash = _RESERVED & set(extra)
    if clash:
        raise ValueError(f"extra entries may not be named {sorted(clash)}")
    config = model_config(model)
    name = config.pop("name")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model": name,
        "model_config": config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    return atomic_save(payload, path)
