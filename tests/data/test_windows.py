"""Training windows of untrimmed recordings: labels by overlap, the positive ratio,
determinism per (seed, epoch), key moments as positives, hard negatives from a window-scores
file, the validation grid, time-based decoding, bad recordings, and the split by session."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from rsanet.data import (
    NORMAL_CLASS,
    EventInterval,
    UntrimmedAnnotations,
    UntrimmedVideo,
    UntrimmedWindows,
    WindowSampler,
    build_untrimmed_dataset,
    class_coverage,
    hard_negative_windows,
    key_moment_label,
    key_moments,
    open_video,
    read_untrimmed,
    session_key,
    split_by_session,
    window_label,
)
from rsanet.inference.windows import tsn_centres, tsn_pick
from support.untrimmed import BRIGHT, intervals_csv, recording


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """6 s recordings at 10 fps: ``fight.mp4`` with a fight from 1 s to 4 s (the square
    moves then), ``quiet.mp4`` without events, in ``intervals.csv``; ``split.csv`` adds
    ``fight2.mp4`` (a fight from 2 s to 5 s) and ``quiet2.mp4``."""
    folder = tmp_path_factory.mktemp("untrimmed")
    recording(folder / "fight.mp4", [(1.0, 4.0)])
    recording(folder / "quiet.mp4")
    recording(folder / "fight2.mp4", [(2.0, 5.0)])
    recording(folder / "quiet2.mp4")
    rows = [("fight.mp4", "fight", 1.0, 4.0), ("quiet.mp4",)]
    intervals_csv(folder / "intervals.csv", rows)
    intervals_csv(folder / "split.csv", [*rows, ("fight2.mp4", "fight", 2.0, 5.0), ("quiet2.mp4",)])
    return folder


def windows(annotations, **options):
    defaults = {"num_frames": 4, "window_s": 1.0, "windows_per_epoch": 20, "seed": 3}
    return UntrimmedWindows(annotations, **{**defaults, **options})


def test_window_label_by_overlap():
    events = [EventInterval("fight", 2.0, 4.0), EventInterval("fall", 3.5, 5.0)]
    assert window_label(events, 2.0, 2.0, 0.5) == ("fight", 1.0)
    assert window_label(events, 1.0, 2.0, 0.5) == ("fight", 0.5)  # at the threshold
    assert window_label(events, 0.8, 2.0, 0.5) == (None, pytest.approx(0.4))  # ambiguous
    assert window_label(events, 0.0, 2.0, 0.5) == (NORMAL_CLASS, 0.0)  # touches at 2.0 only
    assert window_label(events, 4.0, 2.0, 0.5) == ("fall", 0.5)
    # overlapping events of one class count once
    same = [EventInterval("fight", 0.0, 1.5), EventInterval("fight", 1.0, 2.0)]
    assert class_coverage(same, 0.0, 4.0) == {"fight": 0.5}


def test_training_windows_follow_overlap_and_ratio(recordings):
    data = read_untrimmed("intervals", recordings / "intervals.csv")
    dataset = windows(data, positive_fraction=0.25, min_overlap=0.6)
    assert dataset.classes == [NORMAL_CLASS, "fight"]
    assert len(dataset) == 20 and dataset.counts() == {"normal": 15, "fight": 5}
    for index, window in enumerate(dataset.windows):
        video = dataset.videos[window.video]
        assert 0 <= window.start_s <= 6.0 - 1.0
        coverage = class_coverage(video.events, window.start_s, 1.0).get("fight", 0.0)
        if window.label:
            assert coverage >= 0.6 and window.overlap == pytest.approx(coverage)
        else:
            assert coverage == 0
        # the decoded frames show the square exactly when their time is inside the event
        frames, label = dataset.load_frames(index)
        assert frames.shape == (1, 4, 32, 32, 3) and label == window.label
        times = dataset.frame_times(window)
        inside = [any(e.start_s <= t < e.end_s for e in video.events) for t in times]
        bright = [(frame >= BRIGHT - 30).any() for frame in frames[0]]
        # frames are the nearest at 10 fps: only those near an edge may fall either way
        near_edge = [min(abs(t - 1.0), abs(t - 4.0)) < 0.1 for t in times]
        assert all(b == i for b, i, e in zip(bright, inside, near_edge, strict=True) if not e)
    clip, label = dataset[0]
    assert tuple(clip.shape) == (3, 4, 32, 32) and clip.dtype.is_floating_point
    only_positive = windows(data, positive_fraction=1.0)
    assert all(w.label == 1 for w in only_positive.windows)


def test_windows_are_a_function_of_seed_and_epoch(recordings):
    data = read_untrimmed("intervals", recordings / "intervals.csv")
    first, second = windows(data), windows(data)
    assert first.windows == second.windows
    first.set_epoch(1)
    assert first.windows != second.windows
    second.set_epoch(2)
    second.set_epoch(1)  # a resumed run draws epoch 1 again: the same windows
    assert first.windows == second.windows
    assert windows(data, seed=4).windows != windows(data).windows
    starts = {round(w.start_s, 6) for w in first.windows}
    assert len(starts) > 15  # random start times, not a grid


def test_class_sampling_balances_rare_classes():
    """Nine fights and one fall: drawn per event, falls are a tenth of the positives; drawn
    per class, half. The default (per event) draws exactly as before."""
    videos = [
        UntrimmedVideo(f"fight{i}.mp4", (EventInterval("fight", 2.0, 6.0),)) for i in range(9)
    ]
    videos.append(UntrimmedVideo("fall.mp4", (EventInterval("fall", 2.0, 6.0),)))
    classes = [NORMAL_CLASS, "fight", "fall"]

    def falls(sampling: str) -> float:
        sampler = WindowSampler(
            videos,
            [10.0] * len(videos),
            classes,
            window_s=2.0,
            positive_fraction=1.0,
            windows_per_epoch=2000,
            positive_sampling=sampling,
        )
        drawn = sampler.epoch(0)
        return sum(w.label == 2 for w in drawn) / len(drawn)

    assert falls("event") == pytest.approx(0.1, abs=0.03)
    assert falls("class") == pytest.approx(0.5, abs=0.04)
    with pytest.raises(ValueError, match="positive_sampling must be one of event, class"):
        WindowSampler(videos, [10.0] * 10, classes, window_s=2.0, positive_sampling="video")


def test_bags_hold_windows_of_one_event_spread_over_it():
    """bag_size 4: a positive bag is four windows of one event, one start in each quarter
    of the range of starts; a negative bag four normal windows; the draw is a function of
    (seed, epoch), and bag_size 1 is the single-window plan."""
    videos = [
        UntrimmedVideo(f"cam{i}.mp4", (EventInterval("fight", i + 2, i + 12),)) for i in range(5)
    ]
    common = {"window_s": 2.0, "windows_per_epoch": 50, "positive_fraction": 0.5, "seed": 7}
    sampler = WindowSampler(videos, [30.0] * 5, [NORMAL_CLASS, "fight"], bag_size=4, **common)
    drawn = sampler.epoch(0)
    assert len(drawn) == 200 and drawn == sampler.epoch(0) and drawn != sampler.epoch(1)
    bags = [drawn[i : i + 4] for i in range(0, 200, 4)]
    positives = [bag for bag in bags if bag[0].label]
    assert len(positives) == 25
    for bag in positives:
        assert len({w.video for w in bag}) == 1 and all(w.label == 1 for w in bag)
        event = videos[bag[0].video].events[0]
        low, high = event.start_s - 1.0, event.end_s - 1.0  # half a window may stick out
        quarter = (high - low) / 4
        for part, window in enumerate(bag):
            assert low + part * quarter <= window.start_s <= low + (part + 1) * quarter
    assert all(w.label == 0 for bag in bags if not bag[0].label for w in bag)
    with pytest.raises(ValueError, match="bag_size must be a positive integer"):
        WindowSampler(videos, [30.0] * 5, [NORMAL_CLASS, "fight"], bag_size=0, **common)
    # bag_size 1 draws the windows it drew before bags existed (pinned then), so that the
    # recorded single-window runs stay reproducible
    single = WindowSampler(videos, [30.0] * 5, [NORMAL_CLASS, "fight"], **common).epoch(3)
    assert [(w.video, round(w.start_s, 6)) for w in single[:4]] == [
        (3, 11.283324),
        (0, 16.593413),
        (1, 10.751921),
        (0, 18.226362),
    ]


def dumping_and_fall() -> UntrimmedVideo:
    """A 30 s recording: dumping 4-12 s whose bag goes down 7-8.5 s (the walks around it
    are no action), a fall at 20.2-20.7 s inside fainting 20-28 s, and an action in no
    event."""
    return UntrimmedVideo(
        "cam.mp4",
        (EventInterval("dumping", 4.0, 12.0), EventInterval("fainting", 20.0, 28.0)),
        actions=(
            EventInterval("throwing", 7.0, 8.5, "person_1"),
            EventInterval("falldown", 20.2, 20.7, "person_1"),
            EventInterval("walking", 15.0, 16.0, "person_3"),  # in no event: ignored
        ),
    )


def test_key_moments_are_the_actions_inside_each_event():
    video = dumping_and_fall()
    assert key_moments(video) == (
        EventInterval("dumping", 7.0, 8.5),
        EventInterval("fainting", 20.2, 20.7),
    )
    # from the first action to the last, any actor, clipped to the event
    second = EventInterval("falldown", 27.5, 29.0, "person_2")
    longer = replace(video, actions=(*video.actions, second))
    assert key_moments(longer)[1] == EventInterval("fainting", 20.2, 28.0)
    bare = UntrimmedVideo("cam.mp4", (EventInterval("fight", 1.0, 3.0),))
    assert key_moments(bare) == bare.events  # no action: the whole event


def test_key_moment_labels():
    video = dumping_and_fall()
    moments = key_moments(video)
    assert key_moment_label(moments, video.events, 6.5, 2.0, 0.5) == ("dumping", 0.75)
    assert key_moment_label(moments, video.events, 7.5, 2.0, 0.5) == (
        "dumping",
        0.5,
    )  # min_overlap of it
    assert key_moment_label(moments, video.events, 7.6, 2.0, 0.5) == (
        None,
        1.0,
    )  # the walk away: left out
    assert key_moment_label(moments, video.events, 4.0, 2.0, 0.5)[0] is None  # the walk in
    # a 0.5 s fall counts when the window holds all of it, not when it cuts it
    assert key_moment_label(moments, video.events, 19.0, 2.0, 0.5) == ("fainting", 0.25)
    assert key_moment_label(moments, video.events, 20.4, 2.0, 0.5)[0] is None
    assert key_moment_label(moments, video.events, 14.0, 2.0, 0.5) == (NORMAL_CLASS, 0.0)
    assert key_moment_label(moments, video.events, 2.0, 2.0, 0.5) == (
        NORMAL_CLASS,
        0.0,
    )  # touches at 4.0
    assert window_label(video.events, 4.0, 2.0, 0.5) == ("dumping", 1.0)  # whole events


def test_training_on_key_moments():
    """positive_spans="actions": every positive window covers its event's key moment
    enough, normal windows stay away from the whole events, and the validation grid is
    labelled the same way."""
    video = dumping_and_fall()
    classes = [NORMAL_CLASS, "dumping", "fainting"]
    common = {"window_s": 2.0, "windows_per_epoch": 400, "positive_sampling": "class"}
    sampler = WindowSampler([video], [30.0], classes, positive_spans="actions", **common)
    drawn = sampler.epoch(0)
    positives = [w for w in drawn if w.label]
    assert {w.label for w in positives} == {1, 2} and len(positives) == 200
    for window in positives:
        start, end = window.start_s, window.start_s + 2.0
        if window.label == 1:  # 1 s of the 1.5 s setting down
            assert min(8.5, end) - max(7.0, start) >= 1.0 - 1e-9
        else:  # the whole fall
            assert start <= 20.2 + 1e-9 and 20.7 <= end + 1e-9
    for window in drawn:
        if not window.label:
            assert not class_coverage(video.events, window.start_s, 2.0)
    grid = sampler.grid(0.5)
    labelled = {w.start_s: w.label for w in grid}
    assert labelled[7.0] == 1 and labelled[19.0] == 2 and labelled[14.0] == 0
    assert 10.0 not in labelled and 24.0 not in labelled  # event time around the moments
    whole = WindowSampler([video], [30.0], classes, **common)
    assert {w.start_s: w.label for w in whole.grid(0.5)}[10.0] == 1
    assert sampler.shortened_events == 2
    with pytest.raises(ValueError, match="positive_spans must be one of events, actions"):
        WindowSampler([video], [30.0], classes, positive_spans="moments", **common)


def test_a_bag_is_one_item(recordings):
    data = read_untrimmed("intervals", recordings / "intervals.csv")
    dataset = windows(data, bag_size=3, positive_fraction=0.5)
    assert len(dataset) == 20 and len(dataset.windows) == 60
    assert "60 windows in 20 bags of 3" in dataset.summary()
    for index in range(len(dataset)):
        frames, label = dataset.load_frames(index)
        assert frames.shape == (3, 4, 32, 32, 3)
        assert label == dataset.windows[3 * index].label
    clip, _ = dataset[0]
    assert tuple(clip.shape) == (3, 3, 4, 32, 32)
    grid = windows(data, bag_size=3, train=False)  # validation stays one window per item
    assert grid.bag_size == 1 and tuple(grid[0][0].shape) == (3, 4, 32, 32)


def test_validation_grid(recordings):
    data = read_untrimmed("intervals", recordings / "intervals.csv")
    grid = windows(data, train=False, stride_s=0.5, min_overlap=0.6)
    starts = [(grid.videos[w.video].path.endswith("fight.mp4"), w.start_s) for w in grid.windows]
    # fight.mp4: 0.5 s (0.5 covered) is neither normal nor a fight at min_overlap 0.6
    assert (True, 0.5) not in starts and (True, 0.0) in starts and (True, 1.0) in starts
    assert len([s for s in starts if not s[0]]) == 11  # 0, 0.5, ... 5.0
    grid.set_epoch(5)
    assert grid.windows == windows(data, train=False, stride_s=0.5, min_overlap=0.6).windows
    assert all(w.start_s % 0.5 == 0 for w in grid.windows)


def test_read_seconds_matches_frame_indices(recordings):
    times = [k / 10 + 0.02 for k in range(0, 60, 7)]
    with open_video(recordings / "fight.mp4") as by_time:
        frames = by_time.read_seconds(times)
    with open_video(recordings / "fight.mp4") as by_index:
        expected = by_index.read(list(range(0, 60, 7)))
    assert np.array_equal(frames, expected)


def test_read_seconds_takes_the_frame_shown_at_each_time(recordings):
    """The frame starting at or before each time, as a stream's windows pick it (the nearest
    frame would be one later for 0.08 s into a frame of 0.1 s): training reads the frames
    inference will show the network. Before the first frame, the first one."""
    times = [k / 10 + 0.08 for k in range(0, 50, 7)] + [0.0, 0.3]
    with open_video(recordings / "fight.mp4") as by_time:
        frames = by_time.read_seconds(times)
    with open_video(recordings / "fight.mp4") as by_index:
        expected = by_index.read([*range(0, 50, 7), 0, 3])
    assert np.array_equal(frames, expected)
    stream_picks = tsn_pick([k / 10 for k in range(60)], 1.0, 3.0, 16)
    with open_video(recordings / "fight.mp4") as by_time:
        frames = by_time.read_seconds(tsn_centres(1.0, 3.0, 16))
    with open_video(recordings / "fight.mp4") as by_index:
        assert np.array_equal(frames, by_index.read(stream_picks))


def test_bad_recordings_are_skipped_not_fatal(recordings, tmp_path):
    recording(tmp_path / "fight.mp4", [(1.0, 4.0)])
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    (tmp_path / "unprobed.mp4").write_bytes(b"not a video at all")
    csv = intervals_csv(
        tmp_path / "intervals.csv",
        [
            ("fight.mp4", "fight", 1.0, 4.0),
            ("broken.mp4", "fight", 1.0, 3.0, 6.0),  # a duration: found bad when decoded
            ("unprobed.mp4", None, None, None),  # no duration: found bad when probed
        ],
    )
    data = read_untrimmed("intervals", csv)
    dataset = windows(data, positive_fraction=0.5)
    assert [v.path.rsplit("/", 1)[1] for v in dataset.videos] == ["fight.mp4", "broken.mp4"]
    assert any("unprobed.mp4" in bad.path for bad in dataset.annotation_errors)
    for index in range(len(dataset)):
        clip, label = dataset[index]
        assert tuple(clip.shape) == (3, 4, 32, 32)
    assert dataset.bad_samples.count > 0
    assert any(bad.path.endswith("broken.mp4") for bad in dataset.bad_samples.entries)

    strict = windows(data, positive_fraction=0.5, bad_sample_policy="raise")
    index = next(i for i, w in enumerate(strict.windows) if w.video == 1)
    with pytest.raises(ValueError, match="broken.mp4"):
        strict[index]


def test_impossible_epochs_are_clear_errors(recordings):
    data = read_untrimmed("intervals", recordings / "intervals.csv")
    with pytest.raises(ValueError, match="no event can be a positive window"):
        windows(data, window_s=5.0, min_overlap=0.9)
    only_fight = UntrimmedAnnotations([data.videos[0]], data.classes)
    with pytest.raises(ValueError, match="no normal windows|free of events"):
        windows(only_fight, window_s=4.0)
    normal = UntrimmedAnnotations(data.videos, ["Normal"])
    with pytest.raises(ValueError, match="class named 'normal'"):
        windows(normal)


def aihub_like() -> UntrimmedAnnotations:
    """12 sessions x 3 cameras x 2 seasons of AI Hub-like names (no files needed)."""
    videos = []
    for s in range(12):
        label = ("assault", "fight", "theft")[s % 3]
        for cam in (1, 2, 3):
            for season in ("spring", "summer"):
                name = f"{s}-1_cam0{cam}_{label}01_place0{s % 4}_day_{season}"
                videos.append(
                    UntrimmedVideo(
                        f"/data/{label}/{name}.mp4",
                        (EventInterval(label, 10.0, 20.0),),
                        (label,),
                        60.0,
                        metadata={"session": f"{s}-1", "camera": f"cam0{cam}", "season": season},
                    )
                )
    return UntrimmedAnnotations(videos, ["assault", "fight", "theft"])


def test_split_keeps_sessions_together():
    data = aihub_like()
    split = split_by_session(data, val_fraction=0.25, seed=1)
    train_sessions = {session_key(v) for v in split.train.videos}
    val_sessions = {session_key(v) for v in split.val.videos}
    assert not train_sessions & val_sessions
    assert len(split.train.videos) + len(split.val.videos) == len(data.videos)
    assert len(split.val.videos) % 6 == 0  # whole sessions: 3 cameras x 2 seasons
    assert len(split.val.videos) >= 0.25 * len(data.videos)
    report = split.report
    assert report["sessions"] == {"train": len(train_sessions), "val": len(val_sessions)}
    assert set(report["events"]["val"]) == {"assault", "fight", "theft"}  # every class
    assert report["missing_in_val"] == [] and report["val_sessions"] == sorted(val_sessions)
    assert json.loads(json.dumps(report)) == report
    text = split.summary()
    assert "sessions" in text and "fight events" in text
    assert split_by_session(data, 0.25, seed=1).report == report  # deterministic
    assert split.train.classes == split.val.classes == data.classes


def test_split_by_video_name_without_sessions(recordings):
    data = read_untrimmed("intervals", recordings / "intervals.csv")
    split = split_by_session(data, val_fraction=0.5, seed=0)
    assert {session_key(v) for v in data.videos} == {"fight", "quiet"}
    assert len(split.train.videos) == len(split.val.videos) == 1
    with pytest.raises(ValueError, match="at least two"):
        split_by_session(UntrimmedAnnotations(data.videos[:1], data.classes), 0.5)


def test_build_from_plain_values(recordings):
    annotations = str(recordings / "split.csv")
    common = {"num_frames": 4, "size": 32, "window_s": 1.0, "windows_per_epoch": 8}
    common |= {"val_fraction": 0.5}
    train = build_untrimmed_dataset("intervals", annotations, split="train", **common)
    val = build_untrimmed_dataset("intervals", annotations, split="val", **common)
    assert train.split_report["videos"] == {"train": 2, "val": 2}
    assert train.split_report["events"]["val"] == {"fight": 1, "normal": 1}
    assert train.classes == val.classes == [NORMAL_CLASS, "fight"]
    assert train.split_report == val.split_report and train.split_summary
    assert {v.path for v in train.videos}.isdisjoint(v.path for v in val.videos)
    assert tuple(train[0][0].shape) == (3, 4, 32, 32)
    with pytest.raises(TypeError, match="unknown options"):
        build_untrimmed_dataset("intervals", annotations, stride=2, **common)
    per_file = build_untrimmed_dataset(
        "intervals", annotations, split="val", val_annotations=annotations, **common
    )
    assert per_file.split_report is None and len(per_file.videos) == 4


def _window_scores(path, videos: list[str], hardness: dict[tuple[int, float], float]) -> None:
    """A window-scores file as ``rsanet eval-events`` writes it: 2 s windows every second
    over 30 s of each of ``videos``, classes normal and fight; the fight score is 0.1 but
    for the windows ``hardness`` names by (video, end)."""
    ends = np.arange(2.0, 31.0)
    video = np.repeat(np.arange(len(videos)), len(ends))
    fight = np.array(
        [
            hardness.get((int(v), float(e)), 0.1)
            for v, e in zip(video, np.tile(ends, len(videos)), strict=True)
        ]
    )
    np.savez_compressed(
        path,
        classes=np.array(["normal", "fight"]),
        videos=np.array(videos),
        durations=np.full(len(videos), 30.0),
        video=video.astype(np.int32),
        starts=np.tile(ends - 2.0, len(videos)),
        ends=np.tile(ends, len(videos)),
        scores=np.stack([1 - fight, fight], axis=1).astype(np.float32),
        event_video=np.array([], np.int32),
        event_label=np.array([], str),
        event_span=np.zeros((0, 2)),
    )


def test_hard_negatives_are_the_training_recordings_most_event_like_normal_windows(tmp_path):
    """Of the file's windows in the training recordings that no event touches, the top
    fraction by fight score, hardest first, re-centred to the training window. A window
    inside the fight, and one of a recording the training set does not have, never are."""
    cam0, cam1, other = (str(tmp_path / name) for name in ("cam0.mp4", "cam1.mp4", "val.mp4"))
    videos = [
        UntrimmedVideo(cam0, (EventInterval("fight", 10.0, 15.0),)),
        UntrimmedVideo(cam1, ()),
    ]
    scores = tmp_path / "window_scores.npz"
    hard = {(0, 12.0): 0.99, (2, 20.0): 0.98, (1, 20.0): 0.9, (0, 25.0): 0.8, (1, 5.0): 0.7}
    _window_scores(scores, [cam0, cam1, other], hard)
    # normal windows: cam0's 29 less the 6 overlapping (10, 15), and cam1's 29: 52
    assert len(hard_negative_windows(scores, videos, 2.0, top=1.0)) == 52
    assert hard_negative_windows(scores, videos, 2.0, top=0.05) == [
        (1, 18.0),
        (0, 23.0),
        (1, 3.0),
    ]
    assert hard_negative_windows(scores, videos, 4.0, top=0.02) == [(1, 17.0)]  # centred
    with pytest.raises(ValueError, match="none of its 1 recordings is among the 2 training"):
        _window_scores(tmp_path / "val.npz", [other], {})
        hard_negative_windows(tmp_path / "val.npz", videos, 2.0)
    (tmp_path / "bad.npz").write_text("not an archive")
    with pytest.raises(ValueError, match=r"bad.npz: not a window-scores file.*eval-events"):
        hard_negative_windows(tmp_path / "bad.npz", videos, 2.0)
    with pytest.raises(ValueError, match=r"hard_negative_top must be in \(0, 1\]"):
        hard_negative_windows(scores, videos, 2.0, top=0.0)


def test_hard_negatives_make_up_their_fraction_of_the_normal_samples():
    """Half of the 50 normal samples come from the hard windows (those touching an event
    are dropped); without hard negatives an epoch is drawn exactly as before."""
    videos = [
        UntrimmedVideo(f"cam{i}.mp4", (EventInterval("fight", 10.0, 15.0),)) for i in range(3)
    ]
    classes = [NORMAL_CLASS, "fight"]
    common = {"window_s": 2.0, "windows_per_epoch": 100, "seed": 5}
    hard = [(0, 3.0), (1, 20.0), (2, 11.0)]  # the last is inside the fight
    sampler = WindowSampler(
        videos, [30.0] * 3, classes, hard_negatives=hard, hard_negative_fraction=0.5, **common
    )
    assert sampler.hard_negatives == [(0, 3.0), (1, 20.0)]
    drawn = sampler.epoch(2)
    assert drawn == sampler.epoch(2)
    normal = [w for w in drawn if w.label == 0]
    picked = [w for w in normal if (w.video, w.start_s) in sampler.hard_negatives]
    assert len(normal) == 50 and len(picked) == 25
    assert {(w.video, w.start_s) for w in picked} == {(0, 3.0), (1, 20.0)}
    plain = WindowSampler(videos, [30.0] * 3, classes, **common)
    assert plain.epoch(2) == WindowSampler(
        videos, [30.0] * 3, classes, hard_negatives=(), hard_negative_fraction=0.5, **common
    ).epoch(2)
    only_inside = WindowSampler(
        videos,
        [30.0] * 3,
        classes,
        hard_negatives=[(2, 11.0)],
        hard_negative_fraction=0.5,
        **common,
    )
    with pytest.raises(ValueError, match="none of the hard negatives is a normal window"):
        only_inside.epoch(0)
    with pytest.raises(ValueError, match=r"hard_negative_fraction must be in \[0, 1\]"):
        WindowSampler(videos, [30.0] * 3, classes, hard_negative_fraction=2.0, **common)


def test_hard_negatives_reach_the_training_windows_only(recordings, tmp_path):
    """Through the dataset: the training epoch draws from the file's windows and its summary
    says so; the validation grid ignores them."""
    annotations = read_untrimmed("intervals", recordings / "intervals.csv", recordings)
    paths = [str(video.path) for video in annotations.videos]
    scores = tmp_path / "window_scores.npz"
    _window_scores(scores, paths, {})
    train = windows(annotations, hard_negatives=scores, hard_negative_top=1.0)
    assert "50% of normal samples from" in train.summary()
    assert train.sampler.hard_negatives
    grid = windows(annotations, hard_negatives=scores, train=False, stride_s=1.0)
    assert grid.sampler.hard_negative_fraction == 0.0 and not grid.sampler.hard_negatives
