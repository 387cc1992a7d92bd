"""Clip transforms: shapes and layouts, crops, normalisation, flips with their label modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsanet.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SOMETHING_FLIP_PAIRS,
    CenterCrop,
    Compose,
    MultiScaleCrop,
    Normalize,
    RandomFrameCrop,
    RandomHorizontalFlip,
    ResizeShortSide,
    ThreeCrop,
    build_transforms,
    denormalize,
    read_something_v1_labels,
    read_something_v2_labels,
    resolve_flip_pairs,
)


def _ramp(frames: int = 4, height: int = 60, width: int = 80) -> np.ndarray:
    """(T, H, W, 3) uint8: x in red, y in green, t in blue."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    return np.stack([x % 256, y % 256, t * 10], axis=-1).astype(np.uint8)


def test_compose_turns_thwc_uint8_into_cthw_float():
    frames = _ramp()
    clip, label = Compose([])(frames, 3)
    assert clip.shape == (3, 4, 60, 80) and clip.dtype == torch.float32 and label == 3
    assert clip[0, 2, 5, 7].item() == pytest.approx(7 / 255)
    assert clip[1, 2, 5, 7].item() == pytest.approx(5 / 255)
    assert clip[2, 2, 5, 7].item() == pytest.approx(20 / 255)
    views, _ = Compose([])(np.stack([frames, frames]), 0)
    assert views.shape == (2, 3, 4, 60, 80)
    with pytest.raises(ValueError, match=r"expected frames \(T, H, W, C\)"):
        Compose([])(frames[..., :2], 0)


def test_normalize_uses_imagenet_statistics_and_inverts():
    frames = np.full((2, 4, 4, 3), 128, np.uint8)
    clip, _ = Compose([Normalize()])(frames)
    expected = [(128 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    np.testing.assert_allclose(clip[:, 0, 0, 0].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(denormalize(clip).numpy(), 128 / 255, rtol=1e-5)


def test_resize_short_side_and_centre_crop_take_the_middle():
    frames = _ramp(height=60, width=80)
    clip, _ = Compose([ResizeShortSide(30)])(frames)
    assert clip.shape == (3, 4, 30, 40)
    clip, _ = Compose([CenterCrop(20)])(frames)
    assert clip.shape == (3, 4, 20, 20)
    assert round(clip[0, 0, 0, 0].item() * 255) == 30  # left = (80 - 20) / 2
    assert round(clip[1, 0, 0, 0].item() * 255) == 20  # top = (60 - 20) / 2
    with pytest.raises(ValueError, match="smaller than the crop"):
        Compose([CenterCrop(100)])(frames)


def test_three_crop_covers_the_long_side_view_major():
    frames = _ramp(height=60, width=80)
    views, _ = Compose([ThreeCrop(60)])(np.stack([frames, frames[::-1]]))
    assert views.shape == (6, 3, 4, 60, 60)
    lefts = [round(v[0, 0, 0, 0].item() * 255) for v in views]
    assert lefts == [0, 10, 20, 0, 10, 20]
    assert [round(v[2, 0, 0, 0].item() * 255) for v in views] == [0, 0, 0, 30, 30, 30]
    tall, _ = Compose([ThreeCrop(60)])(_ramp(height=80, width=60))
    assert [round(v[1, 0, 0, 0].item() * 255) for v in tall] == [0, 10, 20]


def test_multi_scale_crop_uses_tsn_scales_and_one_box_per_clip():
    crop = MultiScaleCrop(32, generator=torch.Generator().manual_seed(0))
    sides = {round(s * 60) for s in (1, 0.875, 0.75, 0.66)} | {
        int(s * 60) for s in (1, 0.875, 0.75, 0.66)
    }
    seen = set()
    for _ in range(300):
        top, left, height, width = crop.params(60, 80)
        assert height in sides and width in sides and 0 <= top <= 60 - height
        assert 0 <= left <= 80 - width
        seen.add((height, width))
    # scale pairs at most one step apart: 4 + 2 * 3 = 10 aspect combinations
    assert len(seen) == 10 and (60, int(0.66 * 60)) not in seen
    frames = np.repeat(_ramp(frames=1), 5, axis=0)  # five identical frames
    clip, _ = Compose([crop])(frames)
    assert clip.shape == (3, 5, 32, 32)
    assert all(torch.equal(clip[:, 0], clip[:, t]) for t in range(5))


def test_flip_modes_for_direction_bearing_labels():
    frames = _ramp(frames=2, height=8, width=10)
    pairs = {1: 2, 2: 1}

    def run(mode: str, label: int) -> tuple[bool, int]:
        clip, new_label = Compose([RandomHorizontalFlip(1.0, mode, pairs)])(frames, label)
        return round(clip[0, 0, 0, 0].item() * 255) == 9, new_label  # x = 9 now on the left

    assert run("none", 1) == (False, 1) and run("none", 0) == (False, 0)
    assert run("skip", 1) == (False, 1) and run("skip", 0) == (True, 0)
    assert run("swap", 1) == (True, 2) and run("swap", 2) == (True, 1)
    assert run("swap", 0) == (True, 0)
    never = RandomHorizontalFlip(0.0, "swap", pairs)
    assert Compose([never])(frames, 1)[1] == 1
    torch.manual_seed(0)
    half = RandomHorizontalFlip(0.5, "swap", pairs)
    swapped = sum(Compose([half])(frames, 1)[1] == 2 for _ in range(400))
    assert 150 < swapped < 250
    with pytest.raises(ValueError, match="flip mode must be one of"):
        RandomHorizontalFlip(0.5, "mirror")


def test_flip_pairs_are_resolved_by_name_from_each_label_file(something_v1, something_v2):
    v1 = read_something_v1_labels(something_v1 / "something-something-v1-labels.csv")
    v2 = read_something_v2_labels(something_v2 / "something-something-v2-labels.json")
    pairs_v1, pairs_v2 = resolve_flip_pairs(v1), resolve_flip_pairs(v2)
    assert pairs_v1 != pairs_v2  # same names, different ids
    for classes, pairs in ((v1, pairs_v1), (v2, pairs_v2)):
        named = {(classes[a], classes[b]) for a, b in pairs.items()}
        present = {pair for pair in SOMETHING_FLIP_PAIRS if "Pulling" not in pair[0]}
        assert len(present) == 2  # the fixture has no "Pulling ..." classes: left out
        assert named == present | {(b, a) for a, b in present}
    assert resolve_flip_pairs(
        [
            "Holding something",
            "pushing [something] from LEFT to right",
            "Pushing something from right to left",
        ]
    ) == {1: 2, 2: 1}


def test_build_transforms_train_and_evaluation_shapes():
    frames = _ramp(frames=8, height=100, width=176)  # a Something-Something V1 frame
    torch.manual_seed(0)
    train = build_transforms(train=True, size=64, flip_mode="swap", flip_pairs={0: 1})
    clip, label = train(frames, 0)
    assert clip.shape == (3, 8, 64, 64) and label in (0, 1)
    single = build_transforms(train=False, size=64)
    assert single(frames, 5)[0].shape == (3, 8, 64, 64)
    three = build_transforms(train=False, size=64, num_crops=3)
    views, _ = three(np.stack([frames, frames]), 5)
    assert views.shape == (6, 3, 8, 64, 64)
    with pytest.raises(ValueError, match="num_crops=3 is for evaluation"):
        build_transforms(train=True, size=64, num_crops=3)
    with pytest.raises(ValueError, match="flip_mode must be one of"):
        build_transforms(train=True, size=64, flip_mode="always")


def test_uint8_resize_matches_float_resize():
    frames = np.random.default_rng(0).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    as_uint8, _ = Compose([ResizeShortSide(20)])(frames)
    as_float, _ = Compose([ResizeShortSide(20)])(torch.from_numpy(frames).float() / 255)
    assert (as_uint8 - as_float).abs().max().item() < 1.5 / 255


def test_full_frame_keeps_every_corner_of_the_picture():
    """Evaluation squeezes the whole frame; a centre crop would lose the sides, where a fixed
    camera's event can just as well happen. Training crops keep >= 90 % of each side."""
    frames = _ramp(frames=2, height=60, width=80)
    frames[:, :, :4] = 255  # a bright band at the left edge
    whole = build_transforms(train=False, size=32, full_frame=True, mean=(0, 0, 0), std=(1, 1, 1))
    clip, _ = whole(frames)
    assert clip.shape == (3, 2, 32, 32)
    assert clip[:, :, :, 0].min() > 0.9  # the left edge is still there
    cropped, _ = build_transforms(train=False, size=32, mean=(0, 0, 0), std=(1, 1, 1))(frames)
    assert cropped[:, :, :, 0].max() < 0.9  # ... which the centre crop cuts away
    crop = RandomFrameCrop(32, generator=torch.Generator().manual_seed(0))
    for _ in range(50):
        top, left, height, width = crop.params(60, 80)
        assert 54 <= height <= 60 and 72 <= width <= 80
        assert 0 <= top <= 60 - height and 0 <= left <= 80 - width
    torch.manual_seed(0)
    train = build_transforms(train=True, size=32, full_frame=True, flip_mode="skip")
    assert train(frames, 0)[0].shape == (3, 2, 32, 32)
    assert "RandomFrameCrop" in repr(train) and "MultiScaleCrop" not in repr(train)
    with pytest.raises(ValueError, match="num_crops must be 1"):
        build_transforms(train=False, size=32, full_frame=True, num_crops=3)
    with pytest.raises(ValueError, match="min_scale"):
        RandomFrameCrop(32, min_scale=0)
