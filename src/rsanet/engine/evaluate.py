"""Testing trained checkpoints: ``evaluate(config, checkpoints, clips=K, crops=1|3)``.

Each video is seen as ``clips x crops`` views; a checkpoint's score of a video is the
average softmax over its views, and several checkpoints are ensembled by averaging their
scores (the paper's RSANet EN: the 8-frame and the 16-frame networks). Every checkpoint is
tested on clips of its own length (its ``num_frames``). Writes ``metrics.json``,
``predictions.jsonl`` (one object per video) and ``confusion_matrix.png``.

Faults: the outputs may not be any input (checked before anything is written); each is
replaced atomically (a full disk raises DiskFullError, the previous file intact), stale
temporaries of a killed run are removed; a checkpoint with NaN or infinite weights, and
logits that are NaN or infinite, are errors (:class:`NonFiniteLogitsError`), never results.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rsanet.atomic import (
    atomic_write,
    atomic_write_text,
    refuse_overwrite,
    remove_stale_temporaries,
)
from rsanet.engine.checkpoint import NonFiniteError, describe_nonfinite, nonfinite_entries
from rsanet.engine.config import MAX_CLIP_BYTES, Config, ConfigError
from rsanet.engine.distributed import DistEnv, resolve_device
from rsanet.engine.loaders import build_eval_loader, build_split, check_data_paths
from rsanet.engine.metrics import ClassificationMeter, finite_or_null
from rsanet.engine.trainer import as_config, resolve_precision

#: the files an evaluation writes in its output folder
OUTPUT_FILES = {
    "metrics": "metrics.json",
    "predictions": "predictions.jsonl",
    "confusion_matrix": "confusion_matrix.png",
}


class NonFiniteLogitsError(NonFiniteError):
    """The network gave NaN or infinite logits: no accuracy is computed from them."""


def load_for_eval(path: str | Path, config: Config) -> tuple[nn.Module, dict[str, Any]]:
    """The network that ``rsanet eval`` tests, and the checkpoint dict: a checkpoint's
    network (its EMA weights when it has them and
    ``eval.use_ema``: :func:`rsanet.models.select_weights`, the choice
    :func:`rsanet.load_model`, ``rsanet predict`` and ``rsanet export`` make by default),
    checked against the configuration's model. A weights-only ``.safetensors`` file is
    accepted too."""
    from rsanet.models import (
        create_model,
        load_state_dict_checked,
        read_model_file,
        select_weights,
    )

    checkpoint = read_model_file(path)
    name = checkpoint.get("model")
    if not isinstance(name, str) or "state_dict" not in checkpoint:
        raise ValueError(
            f"{path} is not an rsanet checkpoint (no model name or state_dict); "
            f"top-level keys: {sorted(checkpoint)[:10]}"
        )
    if name != config.model.name:
        raise ConfigError(
            f"{path} holds a {name!r} model, but the configuration is for "
            f"{config.model.name!r}: pass that model's configuration, or --set "
            f"model.name={name}"
        )
    model = create_model(name, **dict(checkpoint.get("model_config", {})))
    weights, _ = select_weights(
        checkpoint, "auto" if config.eval.use_ema else "raw", where=str(path)
    )
    bad = nonfinite_entries(weights)
    if bad:
        raise NonFiniteLogitsError(
            f"{path} holds NaN or infinite weights ({describe_nonfinite(bad)}): its outputs "
            "would be meaningless; test an earlier checkpoint of the run"
        )
    load_state_dict_checked(model, weights, what=f"checkpoint {path}")
    return model.eval(), checkpoint


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    precision: Any = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (N, C) (softmax averaged over the views of each video) and labels (N,) of
    every sample of ``loader``, in order. Batches are (B, 3, T, H, W) or, for several
    views, (B, V, 3, T, H, W). NaN or infinite logits raise :class:`NonFiniteLogitsError`
    naming the first such video."""
    model.eval().to(device)
    scores, labels = [], []
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc="evaluating", unit="batch", leave=False)
    for clips, target in batches:
        clips = clips.to(device)
        views = clips.shape[1] if clips.dim() == 6 else 1
        flat = clips.flatten(0, 1) if clips.dim() == 6 else clips
        with precision.autocast() if precision is not None else contextlib.nullcontext():
            logits = model(flat).float()
        finite = torch.isfinite(logits).view(clips.shape[0], -1).all(dim=1)
        if not bool(finite.all()):
            first = sum(len(s) for s in scores) + int((~finite).nonzero()[0])
            raise NonFiniteLogitsError(
                f"the network's logits are NaN or infinite (first on video {first} of the "
                "split): no accuracy is computed from them"
            )
        probs = logits.softmax(-1).view(clips.shape[0], views, -1).mean(1)
        scores.append(probs.cpu())
        labels.append(torch.as_tensor(target).long().cpu())
    return torch.cat(scores), torch.cat(labels)


def _video_name(dataset: Dataset, index: int) -> str | None:
    records = getattr(dataset, "records", None)
    if records is None:
        return None
    record = records[index]
    return str(getattr(record, "path", record))


def write_predictions(
    path: Path,
    scores: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[str],
    dataset: Dataset | None = None,
) -> Path:
    """One JSON object per video: index, (video), label, prediction, correct, top-5 ids
    and scores."""
    k = min(5, scores.shape[1])
    top_scores, top_ids = scores.topk(k, dim=1)
    lines = []
    for i in range(scores.shape[0]):
        label, pred = int(labels[i]), int(top_ids[i, 0])
        row: dict[str, Any] = {"index": i}
        name = _video_name(dataset, i) if dataset is not None else None
        if name is not None:
            row["video"] = name
        row.update(
            {
                "label": label,
                "label_name": classes[label] if label < len(classes) else None,
                "prediction": pred,
                "prediction_name": classes[pred] if pred < len(classes) else None,
                "correct": label == pred,
                "top5": top_ids[i].tolist(),
                "top5_scores": [round(float(s), 6) for s in top_scores[i]],
            }
        )
        lines.append(json.dumps(row))
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def pair_metrics(confusion: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """For classes in pairs of temporal opposites (2k, 2k + 1; SynthMotion): the % of
    videos predicted in the right pair (``pair_accuracy``) and, per pair, top-1 on its
    videos (``per_pair``, "class 2k / class 2k + 1" -> %, None without videos). A network
    blind to the order of frames reaches at most 50 % on a pair.

    ``confusion``: (classes, classes) counts, true class down, prediction across."""
    counts = confusion.double()
    pairs = counts.shape[0] // 2
    by_pair = counts[: 2 * pairs, : 2 * pairs].reshape(pairs, 2, pairs, 2).sum((1, 3))
    total = float(counts.sum())
    per_pair = {}
    for k in range(pairs):
        videos = float(counts[2 * k : 2 * k + 2].sum())
        right = float(counts[2 * k, 2 * k] + counts[2 * k + 1, 2 * k + 1])
        name = f"{classes[2 * k]} / {classes[2 * k + 1]}"
        per_pair[name] = 100.0 * right / videos if videos else None
    return {
        "pair_accuracy": 100.0 * float(by_pair.diagonal().sum()) / total if total else None,
        "per_pair": per_pair,
    }


def plot_confusion(
    path: Path, confusion: torch.Tensor, classes: Sequence[str], title: str = ""
) -> Path:
    """A row-normalised confusion matrix (true class down, predicted across) as a PNG,
    written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    counts = confusion.double()
    rows = counts.sum(dim=1, keepdim=True).clamp_min(1)
    normalised = (counts / rows).numpy()
    n = len(classes)
    side = min(max(6.0, 0.32 * n + 3), 40.0)
    fig, ax = plt.subplots(figsize=(side, side), dpi=100)
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 60:
        names = [c if len(c) <= 32 else c[:31] + "…" for c in classes]
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if counts[i, j] > 0:
                        ax.text(
                            j,
                            i,
                            int(counts[i, j]),
                            ha="center",
                            va="center",
                            fontsize=6,
                            color="white" if normalised[i, j] > 0.5 else "black",
                        )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    image_bytes = io.BytesIO()
    try:
        fig.savefig(image_bytes, format="png")
    finally:
        plt.close(fig)
    return atomic_write(path, lambda handle: handle.write(image_bytes.getbuffer()))


def evaluate(
    config: Config | Mapping[str, Any] | str | Path,
    checkpoints: Sequence[str | Path],
    *,
    clips: int | None = None,
    crops: int | None = None,
    output_dir: str | Path | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    inputs: Sequence[str | Path] = (),
    prepare: Callable[[nn.Module], nn.Module] | None = None,
) -> dict[str, Any]:
    """Test one checkpoint, or the ensemble of several, on the validation split of
    ``config``'s data with ``clips`` x ``crops`` views per video (default: ``eval.*``).

    Returns ``top1``, ``top5``, ``mean_class`` (FineGym's metric), ``per_class``
    (class name -> accuracy %, None without samples), on SynthMotion ``pair_accuracy`` and
    ``per_pair`` (:func:`pair_metrics`), ``num_samples``, ``num_classes``,
    ``checkpoints``, ``clips``, ``crops`` and ``files`` (the paths written to
    ``output_dir``, by default ``eval/`` beside the first checkpoint). ``prepare`` is
    applied to every loaded model before it runs (e.g. a lower inference precision).

    No output may be an input (a checkpoint, an annotation file, ``inputs``, the YAML file
    ``config`` when it is a path): OverwriteError before anything is written. NaN or
    infinite weights or logits raise :class:`NonFiniteLogitsError` and write nothing.
    """
    if isinstance(config, (str, Path)):
        inputs = [config, *inputs]
    config = as_config(config)
    if not checkpoints:
        raise ConfigError("no checkpoint to evaluate (--checkpoint PATH)")
    clips = config.eval.num_clips if clips is None else int(clips)
    crops = config.eval.num_crops if crops is None else int(crops)
    if clips < 1:
        raise ConfigError(f"clips must be >= 1, got {clips}")
    if crops not in (1, 3):
        raise ConfigError(f"crops must be 1 or 3, got {crops}")
    video_bytes = clips * crops * 4 * 3 * config.data.num_frames * config.data.size**2
    if video_bytes > MAX_CLIP_BYTES:
        raise ConfigError(
            f"the {clips} x {crops} views of a video take {video_bytes / 2**30:.3g} GiB (at "
            f"most {MAX_CLIP_BYTES / 2**30:g} GiB): lower --clips (eval.num_clips) or --crops"
        )
    for path in checkpoints:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no checkpoint file at {str(path)!r}")
    output = Path(output_dir) if output_dir is not None else Path(checkpoints[0]).parent / "eval"
    files = {key: str(output / name) for key, name in OUTPUT_FILES.items()}
    d = config.data
    read = [*checkpoints, *inputs, d.annotations, d.train_annotations, d.val_annotations]
    for path in files.values():
        refuse_overwrite(path, read, what="evaluation output")
    check_data_paths(config.data)
    models = [load_for_eval(path, config) for path in checkpoints]  # every file checked first

    device = resolve_device(config.train.device)
    precision = resolve_precision(
        "fp32"
        if config.train.precision == "fp16" and device.type == "cpu"
        else config.train.precision,
        device,
    )
    env = DistEnv(device=device)
    datasets: dict[int, Dataset] = {}
    total: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    classes: list[str] = []
    for (model, checkpoint), path in zip(models, checkpoints, strict=True):
        frames = int(checkpoint.get("model_config", {}).get("num_frames") or config.data.num_frames)
        if frames not in datasets:
            datasets[frames] = build_split(
                config.data,
                "val",
                train=False,
                seed=config.train.seed,
                num_frames=frames,
                num_clips=clips,
                num_crops=crops,
            )
        dataset = datasets[frames]
        if prepare is not None:
            model = prepare(model)
        classes = list(getattr(dataset, "classes", [])) or list(checkpoint.get("classes", []))
        outputs = getattr(model, "num_classes", None)
        if classes and outputs is not None and outputs != len(classes):
            raise ConfigError(
                f"{path} classifies {outputs} classes but the dataset has "
                f"{len(classes)}: it was trained on other data"
            )
        loader = build_eval_loader(
            dataset,
            batch_size=batch_size or config.eval.batch_size,
            num_workers=config.data.num_workers,
            env=env,
        )
        try:
            scores, target = predict(model, loader, device, precision, progress)
        except NonFiniteLogitsError as error:
            raise NonFiniteLogitsError(f"{path}: {error}") from None
        if labels is not None and not torch.equal(labels, target):
            raise RuntimeError("the ensembled checkpoints saw the videos in different orders")
        labels = target
        total = scores if total is None else total + scores
    assert total is not None and labels is not None
    scores = total / len(models)
    num_classes = scores.shape[1]
    if not classes:
        classes = [str(i) for i in range(num_classes)]

    meter = ClassificationMeter(num_classes)
    meter.update(scores, labels)
    metrics = meter.compute()
    per_class = dict(zip(classes, metrics.pop("per_class"), strict=True))
    metrics.pop("loss")

    if config.data.format == "synthmotion":
        metrics.update(pair_metrics(meter.confusion, classes))

    output.mkdir(parents=True, exist_ok=True)
    for path in files.values():
        remove_stale_temporaries(path)  # left by a killed evaluation
    result = {
        **metrics,
        "per_class": per_class,
        "num_classes": num_classes,
        "checkpoints": [str(p) for p in checkpoints],
        "clips": clips,
        "crops": crops,
        "views": clips * crops,
        "files": files,
    }
    result = finite_or_null(result)
    write_predictions(
        Path(files["predictions"]), scores, labels, classes, datasets[next(iter(datasets))]
    )
    title = (
        f"{' + '.join(Path(p).stem for p in checkpoints)}: top-1 {result['top1']:.1f}%, "
        f"mean-class {result['mean_class']:.1f}%"
    )
    plot_confusion(Path(files["confusion_matrix"]), meter.confusion, classes, title)
    atomic_write_text(Path(files["metrics"]), json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result
