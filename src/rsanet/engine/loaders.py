"""Datasets and data loaders of a run, built from :class:`~rsanet.engine.config.DataConfig`.

Training order is a function of ``(seed, epoch)``: the sampler permutes with
``seed + epoch``, a dataset with ``set_epoch`` (the windows of untrimmed recordings) draws
that epoch's samples, and the loader's generator (from which DataLoader draws the seed of each
worker: torch, numpy and ``random`` in worker ``i`` get ``base + i``) is reseeded from
``(seed, epoch, rank)`` at the start of each epoch by :func:`start_epoch`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from rsanet.engine.config import UNTRIMMED_FORMATS, ConfigError, DataConfig, UntrimmedConfig
from rsanet.engine.distributed import (
    DistEnv,
    ResumableDistributedSampler,
    ShardSampler,
    derived_seed,
)

#: formats generated in memory (no annotation file or video folder)
IN_MEMORY_FORMATS = ("synthmotion",)


def check_data_paths(data: DataConfig) -> None:
    """ConfigError / FileNotFoundError, before any work, when the data paths of a
    file-based format are missing."""
    if data.format in IN_MEMORY_FORMATS:
        return
    per_split = data.train_annotations is not None and data.val_annotations is not None
    if data.format in UNTRIMMED_FORMATS:
        given = [k for k in ("train_annotations", "val_annotations") if getattr(data, k)]
        if len(given) == 1:
            raise ConfigError(
                f"data.{given[0]} is set but not the other: give both data.train_annotations "
                "and data.val_annotations, or neither (data.annotations is then split by "
                "session, see data.untrimmed.val_fraction)"
            )
        if data.format == "aihub-cctv" and data.annotations is None and data.root is None:
            raise ConfigError(
                "data.annotations (or data.root) must be the AI Hub data folder holding the "
                "class folders, for format 'aihub-cctv'"
            )
    if (
        data.annotations is None
        and not per_split
        and data.format != "folder"
        and not (data.format == "aihub-cctv" and data.root is not None)
    ):
        raise ConfigError(
            f"data.annotations must be set for format {data.format!r} (the folder of the "
            "standard split files), or data.train_annotations and data.val_annotations"
        )
    for key in ("annotations", "train_annotations", "val_annotations", "root"):
        value = getattr(data, key)
        if value is not None and not Path(value).expanduser().exists():
            raise FileNotFoundError(f"data.{key}: no such file or folder: {value!r}")
    if data.format == "folder" and data.root is None and data.annotations is None:
        raise ConfigError("data.root must be set for format 'folder'")


def build_split(
    data: DataConfig,
    split: str,
    *,
    train: bool,
    seed: int = 0,
    num_frames: int | None = None,
    num_clips: int = 1,
    num_crops: int = 1,
) -> Dataset:
    """The ``split`` ("train" or "val") of ``data`` through :func:`rsanet.data.build_dataset`
    (``options`` then ``train_options`` / ``val_options`` as format options); for the
    untrimmed formats, windows through :func:`rsanet.data.build_untrimmed_dataset`."""
    views = {"num_frames": num_frames, "num_clips": num_clips, "num_crops": num_crops}
    from rsanet.data import build_dataset

    check_data_paths(data)
    options = {**data.options, **(data.train_options if split == "train" else data.val_options)}
    if data.format in UNTRIMMED_FORMATS:
        return _build_untrimmed(data, split, options, train=train, seed=seed, **views)
    annotations = (
        data.train_annotations if split == "train" else data.val_annotations
    ) or data.annotations
    annotations = str(Path(annotations).expanduser()) if annotations else None
    root = str(Path(data.root).expanduser()) if data.root else None
    try:
        return build_dataset(
            data.format,
            annotations,
            root,
            split=split,
            num_frames=num_frames or data.num_frames,
            sampling=data.sampling,
            size=data.size,
            full_frame=data.full_frame,
            train=train,
            flip_mode=data.flip_mode,
            bad_sample_policy=data.bad_sample_policy,
            seed=seed,
            num_clips=num_clips,
            num_crops=num_crops,
            **options,
        )
    except TypeError as error:  # unknown format options
        raise ConfigError(f"data options: {error}") from None


def _path(value: str | None) -> str | None:
    return str(Path(value).expanduser()) if value else None


def _build_untrimmed(
    data: DataConfig,
    split: str,
    options: dict,
    *,
    train: bool,
    seed: int,
    num_frames: int | None,
    num_clips: int,
    num_crops: int,
) -> Dataset:
    """Windows of untrimmed recordings: ``data.train_annotations`` / ``val_annotations``
    when both are given, else ``data.annotations`` (or ``data.root``) split by session."""
    from rsanet.data import build_untrimmed_dataset

    if num_clips != 1:
        raise ConfigError(
            f"{data.format}: each window is one clip, so one clip per video (got {num_clips}); "
            "set data.untrimmed.val_stride_s for more windows"
        )
    u = data.untrimmed or UntrimmedConfig()
    per_split = data.train_annotations is not None and data.val_annotations is not None
    annotations = _path(data.train_annotations if per_split else data.annotations)
    try:
        return build_untrimmed_dataset(
            data.format,
            annotations,
            _path(data.root),
            split=split,
            val_annotations=_path(data.val_annotations) if per_split else None,
            num_frames=num_frames or data.num_frames,
            size=data.size,
            full_frame=data.full_frame,
            train=train,
            flip_mode=data.flip_mode,
            bad_sample_policy=data.bad_sample_policy,
            seed=seed,
            num_crops=num_crops,
            window_s=u.window_s,
            min_overlap=u.min_overlap,
            positive_fraction=u.positive_fraction,
            windows_per_epoch=u.windows_per_epoch,
            positive_sampling=u.positive_sampling,
            bag_size=u.bag_size,
            positive_spans=u.positive_spans,
            hard_negatives=_path(u.hard_negatives),
            hard_negative_fraction=u.hard_negative_fraction,
            hard_negative_top=u.hard_negative_top,
            val_stride_s=u.val_stride_s,
            val_fraction=u.val_fraction,
            split_seed=u.split_seed,
            context_frames=u.context_frames,
            context_s=u.context_s,
            **options,
        )
    except TypeError as error:  # unknown format options
        raise ConfigError(f"data options: {error}") from None
    except ValueError as error:  # windows that cannot be drawn, a split that cannot be made
        raise ConfigError(f"data ({data.format}): {error}") from None


def micro_batch_size(batch_size: int, world_size: int, accum_steps: int) -> int:
    """Clips per forward pass of one process: the global ``batch_size`` split over the
    processes and the accumulation steps (which must divide it)."""
    parts = world_size * accum_steps
    if batch_size % parts:
        raise ConfigError(
            f"train.batch_size ({batch_size}) must be a multiple of the number of processes "
            f"({world_size}) x train.grad_accum_steps ({accum_steps})"
        )
    return batch_size // parts


def build_train_loader(
    dataset: Dataset, *, batch_size: int, num_workers: int, seed: int, env: DistEnv
) -> tuple[DataLoader, ResumableDistributedSampler]:
    """The shuffled training loader of this process (incomplete last batches dropped)."""
    sampler = ResumableDistributedSampler(
        dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=seed, drop_last=True
    )
    if len(sampler) < batch_size:
        raise ConfigError(
            f"the training set has {len(dataset)} samples: {len(sampler)} per process, fewer "
            f"than one batch of {batch_size} (lower train.batch_size)"
        )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=True,
        pin_memory=env.device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler


def build_eval_loader(
    dataset: Dataset, *, batch_size: int, num_workers: int, env: DistEnv
) -> DataLoader:
    """This process's shard of an evaluation set, in order."""
    sampler = ShardSampler(len(dataset), num_replicas=env.world_size, rank=env.rank)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=env.device.type == "cuda",
    )


def start_epoch(
    loader: DataLoader, sampler: ResumableDistributedSampler, *, seed: int, epoch: int, env: DistEnv
) -> None:
    """Make epoch ``epoch`` a function of ``(seed, epoch, rank)``: the sampler's
    permutation, the workers' seeds, and (for in-process loading, dropout and stochastic
    depth) the global torch, numpy and ``random`` generators."""
    from rsanet.engine.checkpoint import seed_everything

    sampler.set_epoch(epoch)
    draw = getattr(loader.dataset, "set_epoch", None)
    if draw is not None:  # datasets whose samples depend on the epoch (untrimmed windows)
        draw(epoch)
    loader.generator.manual_seed(derived_seed(seed, epoch, env.rank, 1))
    seed_everything(derived_seed(seed, epoch, env.rank, 0))
