"""SynthMotion: deterministic from (seed, split, index), pairs of temporal opposites, and
solvable from frame order only."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch

from rsanet.data import (
    SYNTHMOTION_CLASSES,
    SynthMotion,
    build_dataset,
    opposite,
    play_backwards,
    render_video,
    resolve_flip_pairs,
    write_synthmotion,
)
from rsanet.data.synthmotion_checks import rotation_direction_accuracy


def test_classes_are_pairs_of_temporal_opposites():
    classes = SynthMotion(1).classes
    assert len(classes) >= 12 and len(classes) % 2 == 0
    assert classes == list(SYNTHMOTION_CLASSES)
    assert [SynthMotion.opposite(label) for label in range(4)] == [1, 0, 3, 2]
    assert torch.equal(opposite(torch.tensor([4, 5])), torch.tensor([5, 4]))
    assert (classes[0], classes[1]) == ("moving something left", "moving something right")
    pairs = resolve_flip_pairs(classes, SynthMotion.flip_pairs)
    assert {classes[a] for a in pairs} == {
        "moving something left",
        "moving something right",
        "rotating something clockwise",
        "rotating something anticlockwise",
        "turning the camera left",
        "turning the camera right",
    }


def test_videos_are_a_function_of_seed_split_and_index():
    first = SynthMotion(30, seed=3)
    again = SynthMotion(30, seed=3)
    for index in (0, 13, 29):
        clip, label = first[index]
        assert label == index % 14
        assert torch.equal(clip, again[index][0])
    assert not np.array_equal(first.frames(5), SynthMotion(30, seed=4).frames(5))
    train = np.stack([first.frames(i) for i in range(30)])
    val = np.stack([SynthMotion(30, seed=3, split="val").frames(i) for i in range(30)])
    # no validation frame appears in training (frames differ by far more than noise)
    gaps = np.abs(val[:, None, 0].astype(int) - train[None, :, 0].astype(int)).mean((2, 3, 4))
    assert gaps.min() > 10
    with pytest.raises(IndexError):
        first.frames(30)
    with pytest.raises(ValueError, match="split must be one of"):
        SynthMotion(3, split="test")


def test_clip_format_and_normalisation():
    dataset = SynthMotion(14, num_frames=8, size=64)
    clips = torch.stack([dataset[i][0] for i in range(14)])
    assert clips.shape == (14, 3, 8, 64, 64) and clips.dtype == torch.float32
    assert -1.0 < clips.mean().item() < 1.0 and 0.5 < clips.std().item() < 2.0
    raw = dataset.frames(0)
    assert raw.shape == (8, 64, 64, 3) and raw.dtype == np.uint8
    assert SynthMotion(2, num_frames=16, size=112)[1][0].shape == (3, 16, 112, 112)


def test_the_opposite_class_is_the_same_scene_played_backwards():
    for label in range(0, 14, 2):
        forward = render_video(0, "train", 40 + label, label, 8, 48)
        backward = render_video(0, "train", 40 + label, label + 1, 8, 48)
        np.testing.assert_array_equal(backward, forward[::-1])
        assert not np.array_equal(forward, forward[::-1])  # the frames do change over time
    dataset = SynthMotion(20, size=32)
    clip, label = dataset[6]
    reversed_clip, reversed_label = play_backwards(clip, label)
    assert reversed_label == 7
    expected, _ = dataset.transform(dataset.frames(6, label=7), 7)
    assert torch.equal(reversed_clip, expected)


@contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy 2-core machine: avoid OpenMP spinning
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _pooled(count: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Videos (N, T, 8 * 8 * 3): 32 x 32 frames averaged over 4 x 4 blocks; labels."""
    videos = np.stack([render_video(0, split, i, i % 14, 8, 32) for i in range(count)])
    pooled = torch.from_numpy(videos).float().div(255).view(count, 8, 8, 4, 8, 4, 3)
    return pooled.mean((3, 5)).reshape(count, 8, -1), torch.arange(count) % 14


def _within_pair_accuracy(
    train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor
) -> float:
    """Test accuracy of a 14-way MLP between the two classes of each sample's pair."""
    torch.manual_seed(0)
    mean, std = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mean) / std, (test - mean) / std
    model = torch.nn.Sequential(
        torch.nn.Linear(train.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 14)
    )
    optimiser = torch.optim.Adam(model.parameters(), 3e-3, weight_decay=1e-4)
    for _ in range(200):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(train), y_train).backward()
        optimiser.step()
    with torch.no_grad():
        logits = model(test)
    rows, first = torch.arange(len(y_test)), y_test - y_test % 2
    says_second = logits[rows, first + 1] > logits[rows, first]
    return (says_second.long() == y_test % 2).float().mean().item()


def test_without_frame_order_a_model_is_at_chance_within_each_pair():
    """The same model and data: statistics over time (mean, std, min, max: blind to frame
    order) stay at chance between a class and its opposite; adding one order-aware
    statistic (the correlation of each pixel with time) separates them."""
    with _one_thread():
        train, y_train = _pooled(1400, "train")
        test, y_test = _pooled(700, "val")

        def order_free(videos: torch.Tensor) -> torch.Tensor:
            return torch.cat([videos.mean(1), videos.std(1), videos.amin(1), videos.amax(1)], 1)

        def with_order(videos: torch.Tensor) -> torch.Tensor:
            trend = (videos * torch.linspace(-1, 1, videos.shape[1])[None, :, None]).mean(1)
            return torch.cat([order_free(videos), trend], 1)

        shuffled = train[:, torch.randperm(8)]  # frame order carries nothing order-free
        assert torch.allclose(order_free(shuffled), order_free(train), atol=1e-6)
        blind = _within_pair_accuracy(order_free(train), y_train, order_free(test), y_test)
        seeing = _within_pair_accuracy(with_order(train), y_train, with_order(test), y_test)
    assert abs(blind - 0.5) < 0.06  # 700 test videos: chance +- 3 standard deviations
    assert seeing > 0.7


@pytest.mark.parametrize("fmt", ["frames", "mp4"])
def test_written_to_disk_and_read_back_through_the_list_format(tmp_path, fmt):
    paths = write_synthmotion(tmp_path, 4, num_val_videos=2, num_frames=8, size=32, format=fmt)
    lines = paths["train"].read_text().splitlines()
    assert len(lines) == 4 and len(paths["val"].read_text().splitlines()) == 2
    path, frames, label = lines[3].split()
    assert (int(frames), int(label)) == (8, 3)
    assert (tmp_path / path).exists()
    dataset = build_dataset("list", paths["train"], tmp_path, size=32, train=False, resize=32)
    assert dataset.classes == list(SYNTHMOTION_CLASSES)
    assert len(resolve_flip_pairs(dataset.classes, SynthMotion.flip_pairs)) == 6
    frames_read, label_read = dataset.load_frames(3)
    assert label_read == 3
    rendered = render_video(0, "train", 3, 3, 8, 32)
    error = np.abs(frames_read[0].astype(int) - rendered.astype(int)).mean()
    assert error < 12  # lossy coding, same video
    clip, _ = dataset[3]
    assert clip.shape == (3, 8, 32, 32)


@pytest.mark.parametrize(
    ("size", "num_frames", "flip"), [(48, 8, False), (48, 8, True), (32, 4, False)]
)
def test_the_rotation_direction_shows_in_the_pixels(size, num_frames, flip):
    """A model-free estimate (rotation matching of consecutive frames) tells clockwise from
    anticlockwise; a horizontal flip turns one into the other, as the ``swap`` flip mode
    assumes."""
    with _one_thread():
        accuracy = rotation_direction_accuracy(40, num_frames=num_frames, size=size, flip=flip)
    assert accuracy >= 0.95


def test_the_turn_shows_where_the_networks_first_look_at_time():
    """The networks' first temporal layer sees a quarter of the frame's resolution. There
    the turn of the (larger) rotating object still reads from the pixels; at the size of the
    other objects it mostly does not, and no network learned that pair."""
    with _one_thread():
        larger = rotation_direction_accuracy(40, downsample=4)
        common = rotation_direction_accuracy(40, downsample=4, rotating_object_scale=1.0)
    assert larger >= 0.95
    assert common <= 0.9


def test_a_subset_of_pairs_keeps_the_full_data_sets_videos():
    full = SynthMotion(42, num_frames=4, size=32, split="val")
    rotation = SynthMotion(4, num_frames=4, size=32, split="val", pairs=[2])
    assert rotation.classes == ["rotating something clockwise", "rotating something anticlockwise"]
    assert [rotation[i][1] for i in range(4)] == [0, 1, 0, 1]
    for index, full_index in enumerate([4, 5, 18, 19]):
        np.testing.assert_array_equal(rotation.frames(index), full.frames(full_index))
    # another class of the pair: the same scene played backwards
    np.testing.assert_array_equal(rotation.frames(0, label=1), full.frames(4, label=5))

    two = SynthMotion(4, num_frames=4, size=32, split="val", pairs=[5, 0])
    assert two.classes == [SYNTHMOTION_CLASSES[i] for i in (10, 11, 0, 1)]
    np.testing.assert_array_equal(two.frames(2), full.frames(0))
    np.testing.assert_array_equal(two.frames(1), full.frames(11))

    for bad in ([7], [], [1, 1]):
        with pytest.raises(ValueError, match="pairs must be distinct pair numbers"):
            SynthMotion(4, pairs=bad)


def test_a_subset_of_pairs_through_build_dataset_flips_by_name():
    """The flip mode finds the mirror classes by name in the subset's own labels."""
    dataset = build_dataset(
        "synthmotion",
        split="train",
        size=32,
        num_frames=4,
        flip_mode="swap",
        num_videos=4,
        pairs=[2],
        flip_prob=1.0,
    )
    assert dataset.classes[0] == "rotating something clockwise"
    flipped = [dataset[i][1] for i in range(4)]
    assert flipped == [1, 0, 1, 0]  # every clip mirrored: clockwise <-> anticlockwise
    with pytest.raises(TypeError, match="unknown options"):
        build_dataset("synthmotion", split="val", pair=[2])
