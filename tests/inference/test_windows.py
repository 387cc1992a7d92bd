"""Sliding windows: the schedule, TSN sampling inside a window, bursts, smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from rsanet.data import TSNSampler
from rsanet.inference import Frame, ScoreSmoother, SlidingWindow, tsn_pick


def frames_at(count: int, fps: float = 25.0, start: int = 0, segment: int = 0) -> list[Frame]:
    image = np.zeros((2, 2, 3), np.uint8)
    return [
        Frame(time=i / fps, image=image, duration=1 / fps, index=i, segment=segment)
        for i in range(start, start + count)
    ]


@pytest.mark.parametrize("count", [8, 30, 48, 50, 75, 250])
@pytest.mark.parametrize("clip_length", [3, 8, 16])
def test_tsn_pick_equals_the_training_sampler(count, clip_length):
    times = [i / 25 for i in range(count)]
    expected = TSNSampler(clip_length, train=False)(count)[0].tolist()
    assert tsn_pick(times, 0.0, count / 25, clip_length) == expected


def test_tsn_pick_takes_the_frame_shown_when_frames_are_missing():
    times = [0.0, 0.04, 0.08, 0.2, 0.6, 0.64]  # the frames between were dropped
    assert tsn_pick(times, 0.0, 0.8, 4) == [2, 3, 3, 5]  # centres 0.1, 0.3, 0.5, 0.7


def run(engine: SlidingWindow, frames: list[Frame]):
    windows = []
    for frame in frames:
        engine.add(frame)
        if engine.due():
            windows.append(engine.take())
    return windows


def test_schedule_of_a_ten_second_video():
    engine = SlidingWindow(2.0, 1.0)
    windows = run(engine, frames_at(250))
    assert [(w.start, w.end) for w in windows] == [pytest.approx((s, s + 2.0)) for s in range(9)]
    assert all(len(w.frames) == 50 for w in windows)
    assert [w.frames[0].index for w in windows] == [25 * s for s in range(9)]
    assert engine.flush() is None  # the last window ends with the video
    sampled = [f.index for f in windows[3].sample(8)]
    assert sampled == (75 + TSNSampler(8, train=False)(50)[0]).tolist()
    assert len(engine) <= 51  # only the last window's frames are held


def test_tail_and_short_videos_are_flushed():
    engine = SlidingWindow(2.0, 1.0)
    run(engine, frames_at(265))  # 10.6 s: windows end at 2..10, the tail is 0.6 s
    tail = engine.flush()
    assert tail is not None and tail.end == pytest.approx(10.6)
    assert tail.start == pytest.approx(8.6)
    short = SlidingWindow(2.0, 1.0)
    assert run(short, frames_at(20)) == []
    window = short.flush()
    assert (window.start, window.end, len(window.frames)) == (0.0, pytest.approx(0.8), 20)


def test_a_burst_gives_the_latest_window_and_counts_the_skipped_ones():
    engine = SlidingWindow(1.0, 0.5)
    for frame in frames_at(100):  # 4 s arrive at once (the analysis was busy)
        engine.add(frame)
    window = engine.take()
    assert window.end == pytest.approx(4.0) and window.start == pytest.approx(3.0)
    assert window.skipped == 6  # scheduled ends 1.0, 1.5, ..., 3.5 were never analysed
    assert not engine.due()


def test_reset_restarts_the_schedule():
    engine = SlidingWindow(1.0, 1.0)
    run(engine, frames_at(20))
    engine.reset()
    windows = run(engine, frames_at(30, start=100))  # frames from 4 s on
    assert len(windows) == 1 and windows[0].start == pytest.approx(4.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="window must be a positive"):
        SlidingWindow(0, 1)
    with pytest.raises(ValueError, match="stride must be a positive"):
        SlidingWindow(1, float("nan"))
    with pytest.raises(ValueError, match="smoothing must be a positive"):
        ScoreSmoother(0)


def test_smoother_averages_the_last_windows():
    smoother = ScoreSmoother(2)
    assert smoother(np.array([1.0, 0.0])).tolist() == [1.0, 0.0]
    assert smoother(np.array([0.0, 1.0])).tolist() == [0.5, 0.5]
    assert smoother(np.array([0.0, 1.0])).tolist() == [0.0, 1.0]
    smoother.reset()
    assert smoother(np.array([0.2, 0.8])).tolist() == [0.2, 0.8]
