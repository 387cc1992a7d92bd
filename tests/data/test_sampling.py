"""Samplers: TSN segments, dense clips, K uniformly spaced clips for multi-clip testing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rsanet.data import DenseSampler, TSNSampler, build_sampler


def test_tsn_evaluation_takes_segment_centres():
    sampler = TSNSampler(8, train=False)
    np.testing.assert_array_equal(sampler(80), [[5, 15, 25, 35, 45, 55, 65, 75]])
    np.testing.assert_array_equal(sampler(4), [[0, 0, 1, 1, 2, 2, 3, 3]])  # short: repeats


def test_tsn_training_draws_one_frame_per_segment_reproducibly():
    sampler = TSNSampler(8, train=True)
    draws = np.concatenate([sampler(80) for _ in range(200)])
    segment = np.arange(8) * 10
    assert ((draws >= segment) & (draws < segment + 10)).all()
    assert all(len(np.unique(draws[:, k])) == 10 for k in range(8))  # every offset occurs
    torch.manual_seed(3)
    first = [sampler(123) for _ in range(5)]
    torch.manual_seed(3)
    np.testing.assert_array_equal(first, [sampler(123) for _ in range(5)])
    generator = torch.Generator().manual_seed(3)
    assert sampler(123, generator).shape == (1, 8)


def test_tsn_multi_clip_positions_are_uniform_inside_each_segment():
    clips = TSNSampler(4, train=False, num_clips=2)(40)
    np.testing.assert_array_equal(clips, [[2, 12, 22, 32], [7, 17, 27, 37]])


def test_dense_sampling_clip_length_times_stride():
    train = DenseSampler(4, stride=3, train=True)
    for _ in range(50):
        (clip,) = train(30)
        assert 0 <= clip[0] <= 30 - 10 and (np.diff(clip) == 3).all()
    np.testing.assert_array_equal(DenseSampler(4, 3, train=False)(30), [[10, 13, 16, 19]])
    np.testing.assert_array_equal(DenseSampler(4, 3, train=False)(7), [[0, 3, 6, 2]])  # loops
    np.testing.assert_array_equal(
        DenseSampler(2, 5, train=False, num_clips=3)(26), [[0, 5], [10, 15], [20, 25]]
    )


def test_build_sampler_defaults_and_errors():
    assert build_sampler("dense", 8, train=False).stride == 8
    assert build_sampler("dense", 16, train=False, stride=2).span == 31
    with pytest.raises(ValueError, match="sampling must be one of"):
        build_sampler("random", 8, train=True)
    with pytest.raises(ValueError, match="stride applies to dense"):
        build_sampler("tsn", 8, train=True, stride=2)
    with pytest.raises(ValueError, match="num_frames must be a positive integer"):
        TSNSampler(8, train=True)(0)


@settings(max_examples=60, deadline=None, database=None)
@given(
    frames=st.integers(1, 500),
    length=st.integers(1, 32),
    clips=st.integers(1, 5),
    train=st.booleans(),
    dense=st.booleans(),
    stride=st.integers(1, 9),
)
def test_indices_are_always_valid(frames, length, clips, train, dense, stride):
    sampler = (
        DenseSampler(length, stride, train=train, num_clips=clips)
        if dense
        else TSNSampler(length, train=train, num_clips=clips)
    )
    indices = sampler(frames)
    assert indices.shape == (clips, length) and indices.dtype == np.int64
    assert indices.min() >= 0 and indices.max() < frames
    if not dense:
        assert (np.diff(indices, axis=1) >= 0).all()
        if frames >= length:  # one frame in each segment [k n / T, (k + 1) n / T)
            bounds = np.arange(length + 1) * frames / length
            assert (indices >= np.floor(bounds[:-1])).all() and (indices < bounds[1:]).all()
