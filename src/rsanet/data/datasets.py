"""Datasets: annotations + frame source + sampler + transforms, with the bad-sample policy.

:func:`build_dataset` builds any benchmark from plain values (a YAML config can drive it).
Every dataset returns ``(clip, label)``: clip (3, T, H, W) float32, or (K * crops, 3, T, H, W)
for multi-clip testing; label an int; ``.classes`` names the labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from rsanet.data.annotations import FILE_FORMATS, FORMATS, VideoRecord, read_annotations
from rsanet.data.decoding import BACKENDS, open_video
from rsanet.data.errors import (
    BadSample,
    BadSampleError,
    BadSampleLog,
    ReplacesBadSamples,
    check_policy,
)
from rsanet.data.sampling import DenseSampler, TSNSampler, build_sampler
from rsanet.data.synthmotion import ROTATING_OBJECT_SCALE, SYNTHMOTION_FLIP_PAIRS, SynthMotion
from rsanet.data.transforms import (
    FLIP_MODES,
    MULTI_SCALE_CROP_SCALES,
    SOMETHING_FLIP_PAIRS,
    Compose,
    Normalize,
    RandomHorizontalFlip,
    build_transforms,
    resolve_flip_pairs,
)

#: errors of decoders and image libraries that mean "this file is bad", not "this code is"
_DATA_ERRORS = (OSError, ValueError, RuntimeError, EOFError)


class VideoDataset(ReplacesBadSamples, Dataset):
    """Clips of annotated videos or frame folders.

    ``sampler`` maps a frame count to indices (K, T); ``transform(frames (K, T, H, W, 3)
    uint8, label) -> (clip, label)`` (default: normalisation only). A sample that cannot be
    read (missing, empty, truncated, undecodable, fewer than ``min_frames`` frames) is
    reported with its path and reason, counted in ``bad_samples``, and then replaced by
    sample :func:`~rsanet.data.errors.replacement_index` ``(seed, index, attempt)``
    (``bad_sample_policy="skip"``, at most ``max_attempts`` times) or raised (``"raise"``).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        classes: Sequence[str],
        *,
        sampler: TSNSampler | DenseSampler,
        transform: Callable | None = None,
        backend: str = "pyav",
        bad_sample_policy: str = "skip",
        seed: int = 0,
        min_frames: int = 1,
        frame_template: str | None = None,
        decode_threads: int = 1,
        max_attempts: int = 10,
        annotation_errors: Iterable[BadSample] = (),
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if not records:
            raise ValueError("no samples: the annotations have no usable rows")
        self.records = list(records)
        self.classes = list(classes)
        self.sampler = sampler
        self.transform = transform if transform is not None else Compose([Normalize()])
        self.backend, self.decode_threads = backend, decode_threads
        self.policy = check_policy(bad_sample_policy)
        self.seed, self.min_frames, self.max_attempts = seed, max(1, min_frames), max_attempts
        self.frame_template = frame_template
        self.annotation_errors = list(annotation_errors)
        self.bad_samples = BadSampleLog()

    def __len__(self) -> int:
        return len(self.records)

    def load_frames(
        self, index: int, generator: torch.Generator | None = None
    ) -> tuple[np.ndarray, int]:
        """Sampled frames (K, T, H, W, 3) uint8 of sample ``index`` and its label; raises
        :class:`BadSampleError` when the sample cannot be read."""
        record = self.records[index]
        try:
            source = open_video(
                record.path,
                backend=self.backend,
                threads=self.decode_threads,
                frame_template=self.frame_template,
                num_frames=record.num_frames,
            )
            try:
                total = source.num_frames()
                start = min(record.start_frame, total)
                end = total if record.end_frame is None else min(record.end_frame, total)
                if end - start < self.min_frames:
                    raise BadSampleError(
                        record.path,
                        f"too short: {end - start} frames, at least "
                        f"{self.min_frames} needed (min_frames= to accept it)",
                    )
                indices = self.sampler(end - start, generator) + start
                frames = source.read(indices.reshape(-1))
            finally:
                source.close()
        except BadSampleError:
            raise
        except _DATA_ERRORS as error:
            raise BadSampleError(
                record.path, f"unreadable: {type(error).__name__}: {error}"
            ) from None
        return frames.reshape(*indices.shape, *frames.shape[1:]), record.label

    def __repr__(self) -> str:
        return (
            f"VideoDataset({len(self)} samples, {len(self.classes)} classes, "
            f"{self.sampler!r}, backend={self.backend!r}, policy={self.policy!r})"
        )


#: options of build_dataset that are not options of the annotation reader
_LOADING_OPTIONS = {
    "backend",
    "frame_template",
    "min_frames",
    "stride",
    "decode_threads",
    "flip_pairs",
    "flip_prob",
    "scales",
    "resize",
    "max_attempts",
}
#: annotation-reader options by format
_READER_OPTIONS = {
    "something-v1": {"labels", "class_order", "allow_outside_root"},
    "something-v2": {"labels", "video_ext", "allow_outside_root"},
    "diving48": {"labels", "video_ext", "allow_outside_root"},
    "finegym": {"labels", "video_ext", "allow_outside_root"},
    "list": {"labels", "allow_outside_root"},
    "folder": {"allow_outside_root"},
}
_SYNTH_OPTIONS = {"num_videos", "flip_pairs", "flip_prob", "pairs", "rotating_object_scale"}
#: SynthMotion videos per split when ``num_videos`` is not given (1000 / 100 per class)
SYNTHMOTION_DEFAULT_VIDEOS = {"train": 14_000, "val": 1_400}


def build_dataset(
    format: str,
    annotations: str | None = None,
    root: str | None = None,
    *,
    split: str = "train",
    num_frames: int = 8,
    sampling: str = "tsn",
    size: int = 224,
    train: bool | None = None,
    flip_mode: str = "none",
    bad_sample_policy: str = "skip",
    seed: int = 0,
    num_clips: int = 1,
    num_crops: int = 1,
    full_frame: bool = False,
    **format_options,
) -> Dataset:
    """Any benchmark from plain values.

    ``format``: one of :data:`~rsanet.data.annotations.FORMATS`; ``annotations``: the split
    file, or the folder of the standard split files; ``root``: the videos or frame folders
    (default: the annotations' folder). ``train`` (default ``split == "train"``) selects
    random sampling and augmentation (multi-scale crop, flip by ``flip_mode``); evaluation
    uses segment centres / centred clips and a centre crop, or ``num_clips`` uniformly
    spaced clips x ``num_crops`` (1 or 3) crops stacked as (K * crops, 3, T, size, size).
    ``full_frame``: the whole frame squeezed to size x size instead of crops of its short
    side (:func:`~rsanet.data.transforms.build_transforms`; synthmotion renders whole clips).

    ``format_options``: ``labels`` (class-name file), ``allow_outside_root`` (accept rows
    that lead outside ``root``; by default they are malformed rows), ``video_ext``,
    ``class_order`` (something-v1: ``sorted`` ids as TSN/TSM/RSA, or ``file``), ``backend``
    (``pyav``, ``decord``, ``torchcodec``, ``auto``), ``frame_template`` (e.g. ``"{:05d}.jpg"``),
    ``min_frames`` (default ``num_frames``: shorter videos are bad samples), ``stride``
    (dense sampling), ``decode_threads``, ``flip_prob`` (0.5), ``flip_pairs`` (extra pairs of
    class names a flip swaps), ``scales``, ``resize``, ``max_attempts``; synthmotion:
    ``num_videos`` (default 14000 train / 1400 val; ``size`` is the rendered size), ``pairs``
    (only these pairs, e.g. ``[2]``), ``rotating_object_scale``.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; one of {', '.join(FORMATS)}")
    if flip_mode not in FLIP_MODES:
        raise ValueError(f"flip_mode must be one of {', '.join(FLIP_MODES)}, got {flip_mode!r}")
    check_policy(bad_sample_policy)
    train = split == "train" if train is None else bool(train)
    extra_pairs = tuple(tuple(pair) for pair in format_options.get("flip_pairs", ()))
    flip_prob = float(format_options.get("flip_prob", 0.5))

    if format == "synthmotion":
        unknown = set(format_options) - _SYNTH_OPTIONS
        if unknown:
            raise TypeError(
                f"synthmotion: unknown options {sorted(unknown)}; "
                f"accepted: {sorted(_SYNTH_OPTIONS)}"
            )
        if num_clips != 1 or num_crops != 1 or sampling != "tsn":
            raise ValueError(
                "synthmotion renders whole clips: num_clips=1, num_crops=1 and sampling='tsn' only"
            )
        count = format_options.get("num_videos", SYNTHMOTION_DEFAULT_VIDEOS.get(split, 1400))
        scale = format_options.get("rotating_object_scale", ROTATING_OBJECT_SCALE)
        dataset = SynthMotion(
            int(count),
            num_frames=num_frames,
            size=size,
            seed=seed,
            split=split,
            pairs=format_options.get("pairs"),
            rotating_object_scale=float(scale),
        )
        steps: list = []
        if train and flip_mode != "none":
            pairs = resolve_flip_pairs(dataset.classes, SYNTHMOTION_FLIP_PAIRS + extra_pairs)
            steps.append(RandomHorizontalFlip(flip_prob, flip_mode, pairs))
        dataset.transform = Compose([*steps, Normalize()])
        return dataset

    accepted = _READER_OPTIONS[format] | _LOADING_OPTIONS
    unknown = set(format_options) - accepted
    if unknown:
        raise TypeError(
            f"{format}: unknown options {sorted(unknown)}; accepted: {sorted(accepted)}"
        )
    reader_options = {k: v for k, v in format_options.items() if k in _READER_OPTIONS[format]}
    if root is not None and not Path(root).expanduser().is_dir():
        raise FileNotFoundError(
            f"data root {root} is not a folder (check root=, --root or data.root)"
        )
    result = read_annotations(
        format, annotations, root, split=split, policy=bad_sample_policy, **reader_options
    )
    if not result.records:
        raise ValueError(
            f"no samples: all {len(result.bad)} rows of {result.source} are malformed, "
            f"the first: {result.bad[0]}"
        )
    sampler = build_sampler(
        sampling, num_frames, train=train, num_clips=num_clips, stride=format_options.get("stride")
    )
    pairs = resolve_flip_pairs(
        result.classes, SOMETHING_FLIP_PAIRS + SYNTHMOTION_FLIP_PAIRS + extra_pairs
    )
    transform = build_transforms(
        train=train,
        size=size,
        flip_mode=flip_mode,
        flip_pairs=pairs,
        flip_prob=flip_prob,
        num_crops=num_crops,
        scales=format_options.get("scales", MULTI_SCALE_CROP_SCALES),
        resize=format_options.get("resize"),
        full_frame=full_frame,
    )
    return VideoDataset(
        result.records,
        result.classes,
        sampler=sampler,
        transform=transform,
        backend=format_options.get("backend", "pyav"),
        bad_sample_policy=bad_sample_policy,
        seed=seed,
        min_frames=int(format_options.get("min_frames", num_frames)),
        frame_template=format_options.get("frame_template"),
        decode_threads=int(format_options.get("decode_threads", 1)),
        max_attempts=int(format_options.get("max_attempts", 10)),
        annotation_errors=result.bad,
    )


__all__ = ["FILE_FORMATS", "VideoDataset", "build_dataset"]
