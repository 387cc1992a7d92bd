"""Weights to share: a ``.safetensors`` file of tensors and a JSON description beside it.

``NAME.safetensors`` holds the network's weights only (the `safetensors` format: a JSON
header and raw tensor bytes; reading it runs no pickle, so a file from anywhere is safe to
load). ``NAME.json`` says how to use them::

    {"format": "rsanet-safetensors", "format_version": 1,
     "model": "rsanet_tiny", "model_config": {"num_classes": 4, "num_frames": 8, ...},
     "weights": "ema",                   # the weights held: "ema" or "raw"
     "classes": ["fighting", ...],
     "num_frames": 8, "input_size": [224, 224],   # clip: frames, height, width
     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
     "safetensors": "NAME.safetensors", "sha256": "..."}

``model`` and ``model_config`` rebuild the network with :func:`rsanet.create_model`; the
``sha256`` of the tensor file ties the pair together (a JSON beside the tensors of another
export is an error, not a silent mismatch). Both files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from rsanet.atomic import atomic_write, atomic_write_text, remove_stale_temporaries
from rsanet.models.weights import model_config

SAFETENSORS_FORMAT = "rsanet-safetensors"
SAFETENSORS_VERSION = 1
#: which weights a file holds: the exponential moving average, or the trained weights
WEIGHT_KINDS = ("ema", "raw")
_EXPORT_HINT = "export it again with: rsanet export CHECKPOINT --format safetensors --out FILE"


class WeightsFileError(ValueError):
    """A safetensors weights file or its JSON description that is missing, damaged or
    does not belong to the other (the message names the file and the fix)."""


def weights_file_paths(path: str | Path) -> tuple[Path, Path]:
    """``(NAME.safetensors, NAME.json)`` for a path naming either file."""
    path = Path(path)
    if path.suffix.lower() in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def is_weights_file(path: str | Path) -> bool:
    """Whether ``path`` names a weights-only file by its suffix: ``*.safetensors``, or the
    ``*.json`` describing one (a checkpoint is never JSON)."""
    return Path(path).suffix.lower() in (".safetensors", ".json")


def to_json_value(value: Any, where: str) -> Any:
    """``value`` as JSON (tuples become lists, mapping keys strings); ValueError naming
    ``where`` for anything JSON cannot hold."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [to_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(
        f"{where} is a {type(value).__name__}, which a JSON description cannot hold: build "
        "the model with plain values (numbers, strings, lists, dicts) to share its weights"
    )


def from_json_config(value: Any) -> Any:
    """A model configuration read from JSON, with its lists as tuples again (the model
    constructors take sequences; checkpoints record tuples)."""
    if isinstance(value, dict):
        return {k: from_json_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(from_json_config(v) for v in value)
    return value


def save_weights_file(
    path: str | Path,
    model: nn.Module,
    *,
    weights: str = "raw",
    classes: Sequence[str] | None = None,
    num_frames: int | None = None,
    input_size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **extra: Any,
) -> tuple[Path, Path]:
    """Write the weights of ``model`` (built by :func:`rsanet.create_model`) to
    ``NAME.safetensors`` and its description to ``NAME.json`` (``path`` names either or the
    stem), each atomically; returns both paths.

    ``weights`` records which weights these are (``"ema"``: ``model`` is the EMA copy, or
    ``"raw"``); ``num_frames`` defaults to the model's; ``input_size`` is (height, width)
    of the frames the model takes, ``mean``/``std`` the normalisation of pixels in [0, 1];
    ``extra`` entries (plain values) are added to the JSON."""
    from safetensors.torch import save

    if weights not in WEIGHT_KINDS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_KINDS)}, got {weights!r}")
    tensors_path, json_path = weights_file_paths(path)
    # own contiguous copies: safetensors refuses tensors that share memory (tied weights)
    config = model_config(model)
    model_name = config.pop("name")
    if num_frames is None:
        num_frames = getattr(model, "num_frames", None)
    state_dict = model.state_dict()
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    data = save(tensors, metadata={"format": SAFETENSORS_FORMAT})
    description = {
        "format": SAFETENSORS_FORMAT,
        "format_version": SAFETENSORS_VERSION,
        "model": str(model_name),
        "model_config": to_json_value(config, "model_config"),
        "weights": weights,
        "classes": None if classes is None else [str(c) for c in classes],
        "num_frames": None if num_frames is None else int(num_frames),
        "input_size": None if input_size is None else [int(s) for s in input_size],
        "mean": None if mean is None else [float(m) for m in mean],
        "std": None if std is None else [float(s) for s in std],
        **to_json_value(extra, "extra"),
        "safetensors": tensors_path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    text = json.dumps(description, indent=2) + "\n"
    for target in (tensors_path, json_path):
        remove_stale_temporaries(target)  # left beside the file by a killed save
    atomic_write(tensors_path, lambda handle: handle.write(data))
    atomic_write_text(json_path, text)
    return tensors_path, json_path


def _description(json_path: Path, tensors_path: Path) -> dict[str, Any]:
    if not json_path.is_file():
        raise WeightsFileError(
            f"{json_path} is missing: {tensors_path.name} holds only tensors, and the JSON "
            "beside it names the model, its configuration and classes; copy the JSON that "
            f"came with it next to it, or {_EXPORT_HINT}"
        )
    try:
        description = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise WeightsFileError(
            f"{json_path} is not valid JSON ({error}): the description of {tensors_path.name} "
            f"is damaged; {_EXPORT_HINT}"
        ) from None
    except OSError as error:
        raise WeightsFileError(f"{json_path} cannot be read ({error.strerror or error})") from None
    if not isinstance(description, dict) or description.get("format") != SAFETENSORS_FORMAT:
        raise WeightsFileError(
            f"{json_path} is not the description of an rsanet weights file (no "
            f'"format": "{SAFETENSORS_FORMAT}"); {_EXPORT_HINT}'
        )
    version = description.get("format_version", SAFETENSORS_VERSION)
    if not isinstance(version, int) or version > SAFETENSORS_VERSION:
        raise WeightsFileError(
            f"{json_path} has format_version {version!r}, newer than this rsanet "
            f"({SAFETENSORS_VERSION}): upgrade rsanet"
        )
    problems = []
    if not isinstance(description.get("model"), str):
        problems.append('"model" (the model name) is missing')
    if not isinstance(description.get("model_config", {}), dict):
        problems.append('"model_config" is not an object')
    if description.get("weights", "raw") not in WEIGHT_KINDS:
        problems.append(f'"weights" must be one of {", ".join(WEIGHT_KINDS)}')
    if problems:
        raise WeightsFileError(f"{json_path}: {'; '.join(problems)}; {_EXPORT_HINT}")
    return description


def read_weights_file(path: str | Path) -> dict[str, Any]:
    """A weights-only file as a checkpoint-like dict: ``model``, ``model_config``,
    ``state_dict`` (the tensors), ``weights`` (``"ema"`` or ``"raw"``) and the other
    entries of the JSON (``classes``, ``num_frames``, ``input_size``, ``mean``, ``std``).
    ``path`` names the ``.safetensors`` file or its ``.json``. No pickle is involved.

    A missing or damaged file, or a pair that does not belong together, raises
    :class:`WeightsFileError` (a missing tensor file FileNotFoundError) naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    tensors_path, json_path = weights_file_paths(path)
    if not tensors_path.is_file():
        raise FileNotFoundError(
            f"no weights file at {str(tensors_path)!r} (the tensors {json_path.name} "
            f"describes); {_EXPORT_HINT}"
        )
    description = _description(json_path, tensors_path)
    try:
        data = tensors_path.read_bytes()
    except OSError as error:
        raise WeightsFileError(
            f"{tensors_path} cannot be read ({error.strerror or error})"
        ) from None
    expected = description.get("sha256")
    if isinstance(expected, str) and hashlib.sha256(data).hexdigest() != expected:
        raise WeightsFileError(
            f"{tensors_path} does not match {json_path.name} (its sha256 differs from the "
            "one recorded): the file is damaged or truncated, or the two come from different "
            f"exports; {_EXPORT_HINT}"
        )
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        reason = " ".join(str(error).split())[:200]
        raise WeightsFileError(
            f"{tensors_path} is not a readable safetensors file ({reason}); {_EXPORT_HINT}"
        ) from None
    entries = {
        k: v for k, v in description.items() if k not in ("model_config", "sha256", "safetensors")
    }
    return {
        **entries,
        "model_config": from_json_config(description.get("model_config", {})),
        "state_dict": tensors,
        "weights": description.get("weights", "raw"),
    }
