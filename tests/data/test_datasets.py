"""build_dataset end to end for every format, multi-clip testing, the bad-sample policy and
reproducible training randomness."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from rsanet.data import (
    BadSampleError,
    SynthMotion,
    VideoDataset,
    build_dataset,
    replacement_index,
)


def _check_sample(dataset, index: int, size: int, frames: int = 8) -> int:
    clip, label = dataset[index]
    assert clip.shape == (3, frames, size, size) and clip.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label < len(dataset.classes)
    assert torch.isfinite(clip).all()
    return label


def test_something_v1_frames_and_v2_webm(something_v1, something_v2):
    v1 = build_dataset("something-v1", something_v1, something_v1 / "frames", size=32)
    assert len(v1) == 2 and len(v1.annotation_errors) == 2
    assert [v1.classes[_check_sample(v1, i, 32)] for i in range(2)] == [
        "Holding something",
        "Pushing something from left to right",
    ]
    v2 = build_dataset("something-v2", something_v2, something_v2 / "videos", split="val", size=32)
    assert v2.classes[_check_sample(v2, 0, 32)] == (
        "Turning the camera left while filming something"
    )


def test_sampling_stays_inside_the_diving48_frame_range(tmp_path, media):
    (tmp_path / "Diving48_vocab.json").write_text(
        json.dumps([["Back", "15som", "05Twis", "FREE"]] * 2)
    )
    (tmp_path / "Diving48_V2_train.json").write_text(
        json.dumps([{"vid_name": "dive", "label": 1, "start_frame": 20, "end_frame": 52}])
    )
    (tmp_path / "rgb").mkdir()
    media.encode(tmp_path / "rgb" / "dive.mp4", media.coded_frames(60))
    dataset = build_dataset("diving48", tmp_path, tmp_path / "rgb", size=32, train=False)
    assert isinstance(dataset, VideoDataset) and _check_sample(dataset, 0, 32) == 1
    frames, _ = dataset.load_frames(0)
    assert [media.frame_index(f) for f in frames[0]] == [22, 26, 30, 34, 38, 42, 46, 50]


def test_finegym_list_and_folder_formats(tmp_path, media):
    (tmp_path / "gym99_categories.txt").write_text(
        "Clabel: 0; set: 1; Glabel: 1; (VT) a\nClabel: 1; set: 1; Glabel: 2; (VT) b\n"
    )
    (tmp_path / "gym99_val_element.txt").write_text("clipA 1\n")
    (tmp_path / "clips").mkdir()
    media.encode(tmp_path / "clips" / "clipA.mp4", media.coded_frames(16))
    gym = build_dataset("finegym", tmp_path, tmp_path / "clips", split="val", size=32)
    assert gym.classes[_check_sample(gym, 0, 32)] == "(VT) b"

    media.write_frames(tmp_path / "data" / "frames_a", media.coded_frames(10))
    media.encode(tmp_path / "data" / "video_b.mp4", media.coded_frames(12))
    (tmp_path / "train.txt").write_text("frames_a 10 0\nvideo_b.mp4 12 1\n")
    (tmp_path / "classes.txt").write_text("first\nsecond\n")
    listed = build_dataset(
        "list", tmp_path / "train.txt", tmp_path / "data", size=32, sampling="dense", stride=1
    )
    assert listed.classes == ["first", "second"]
    assert [_check_sample(listed, i, 32) for i in range(2)] == [0, 1]

    for name, count in (("left", 9), ("right", 11)):
        (tmp_path / "folder" / name).mkdir(parents=True)
        media.encode(tmp_path / "folder" / name / "x.mp4", media.coded_frames(count))
    folder = build_dataset("folder", None, tmp_path / "folder", size=24, num_frames=4)
    assert folder.classes == ["left", "right"]
    assert [_check_sample(folder, i, 24, frames=4) for i in range(2)] == [0, 1]


def test_multi_clip_three_crop_evaluation(coded_video, tmp_path):
    (tmp_path / "val.txt").write_text(f"{coded_video} 120 0\n")
    dataset = build_dataset(
        "list", tmp_path / "val.txt", "/", split="val", size=32, num_clips=2, num_crops=3
    )
    clips, label = dataset[0]
    assert clips.shape == (6, 3, 8, 32, 32) and label == 0
    frames, _ = dataset.load_frames(0)
    assert frames.shape[:2] == (2, 8)
    dense = build_dataset(
        "list", tmp_path / "val.txt", "/", split="val", size=32, sampling="dense", num_clips=4
    )
    assert dense[0][0].shape == (4, 3, 8, 32, 32)


@pytest.fixture
def dataset_with_bad_samples(tmp_path, coded_video, media) -> Path:
    """A list with three good videos and one of each kind of bad one."""
    root = tmp_path / "root"
    root.mkdir()
    for name in ("good0", "good1", "good2"):
        media.encode(root / f"{name}.mp4", media.coded_frames(24))
    (root / "zero.mp4").write_bytes(b"")
    (root / "noise.mp4").write_bytes(np.random.default_rng(1).bytes(2048))
    data = coded_video.read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])
    media.encode(root / "short.mp4", media.coded_frames(3))
    lines = [
        "good0.mp4 24 0",
        "zero.mp4 10 1",
        "good1.mp4 24 1",
        "noise.mp4 10 2",
        "missing.mp4 10 2",
        "cut.mp4 120 0",
        "short.mp4 3 1",
        "good2.mp4 24 2",
        "good2.mp4 twelve 2",
    ]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_skip_policy_reports_and_replaces_deterministically(dataset_with_bad_samples, caplog):
    folder = dataset_with_bad_samples
    with caplog.at_level(logging.WARNING, logger="rsanet.data"):
        dataset = build_dataset("list", folder / "train.txt", folder / "root", size=32, seed=7)
    assert len(dataset) == 8  # the malformed line is reported and dropped
    assert any(
        "train.txt:9" in r.message and "num_frames 'twelve'" in r.message for r in caplog.records
    )
    good = {0, 2, 7}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rsanet.data"):
        labels = [dataset[i][1] for i in range(len(dataset))]
    for index in set(range(8)) - good:  # the replacement is a pure function of the seed
        current, attempt = index, 0
        while current not in good:
            attempt += 1
            current = replacement_index(7, index, attempt, 8)
        assert labels[index] == dataset.records[current].label
    reasons = {Path(bad.path).name: bad.reason for bad in dataset.bad_samples.entries}
    assert set(reasons) == {"zero.mp4", "noise.mp4", "missing.mp4", "cut.mp4", "short.mp4"}
    assert reasons["zero.mp4"].startswith("empty file")
    assert reasons["noise.mp4"].startswith("cannot open")
    assert reasons["missing.mp4"].startswith("missing")
    assert reasons["cut.mp4"].startswith("cannot open as a video: truncated")
    assert reasons["short.mp4"].startswith("too short: 3 frames, at least 8")
    assert dataset.bad_samples.count >= 5
    assert any("missing.mp4" in r.message and "replaced by" in r.message for r in caplog.records)
    again = build_dataset("list", folder / "train.txt", folder / "root", size=32, seed=7)
    assert [again[i][1] for i in range(8)] == labels


def test_raise_policy_and_a_dataset_with_nothing_readable(dataset_with_bad_samples):
    folder = dataset_with_bad_samples
    (folder / "ok.txt").write_text("good0.mp4 24 0\nzero.mp4 10 1\n")
    strict = build_dataset(
        "list", folder / "ok.txt", folder / "root", size=32, bad_sample_policy="raise"
    )
    _check_sample(strict, 0, 32)
    with pytest.raises(BadSampleError, match=r"zero.mp4: empty file \(0 bytes\)"):
        strict[1]
    with pytest.raises(ValueError, match=r"train.txt:9: num_frames 'twelve'"):
        build_dataset("list", folder / "train.txt", folder / "root", bad_sample_policy="raise")
    (folder / "bad.txt").write_text("zero.mp4 10 1\nmissing.mp4 10 0\n")
    hopeless = build_dataset("list", folder / "bad.txt", folder / "root", size=32, max_attempts=3)
    with pytest.raises(RuntimeError, match="4 bad samples in a row.*rsanet data check"):
        hopeless[0]


def test_training_randomness_follows_the_torch_seed(coded_video, tmp_path):
    (tmp_path / "train.txt").write_text(f"{coded_video} 120 0\n" * 4)
    dataset = build_dataset("list", tmp_path / "train.txt", "/", size=32, flip_mode="skip")
    torch.manual_seed(5)
    first = dataset[0][0]
    torch.manual_seed(5)
    assert torch.equal(first, dataset[0][0])
    assert not torch.equal(first, dataset[0][0])  # the next draw differs

    def epoch() -> torch.Tensor:
        loader = DataLoader(
            dataset,
            batch_size=2,
            num_workers=2,
            shuffle=True,
            generator=torch.Generator().manual_seed(11),
        )
        return torch.cat([clips for clips, _ in loader])

    assert torch.equal(epoch(), epoch())


def test_flip_swap_through_build_dataset(something_v2):
    flipped = build_dataset(
        "something-v2",
        something_v2,
        something_v2 / "videos",
        size=32,
        flip_mode="swap",
        flip_prob=1.0,
    )
    original = build_dataset("something-v2", something_v2, something_v2 / "videos", size=32)
    assert original[1][1] == 1 and flipped[1][1] == 3  # right to left -> left to right
    assert flipped[0][1] == original[0][1] == 0  # "Holding something" keeps its label
    skipping = build_dataset(
        "something-v2",
        something_v2,
        something_v2 / "videos",
        size=32,
        flip_mode="skip",
        flip_prob=1.0,
    )
    assert skipping[1][1] == 1


def test_build_dataset_synthmotion_and_option_errors(something_v2):
    synth = build_dataset("synthmotion", split="val", size=32, num_videos=28, seed=1)
    assert isinstance(synth, SynthMotion) and len(synth) == 28
    _check_sample(synth, 3, 32)
    assert build_dataset("synthmotion", size=32).num_videos == 14_000
    with pytest.raises(TypeError, match=r"unknown options \['num_video'\]"):
        build_dataset("synthmotion", num_video=3)
    with pytest.raises(TypeError, match=r"something-v2: unknown options \['frame_rate'\]"):
        build_dataset("something-v2", something_v2, frame_rate=3)
    with pytest.raises(ValueError, match="unknown format 'kinetics'"):
        build_dataset("kinetics", "x")
    with pytest.raises(ValueError, match="bad_sample_policy must be one of"):
        build_dataset("synthmotion", bad_sample_policy="ignore")
