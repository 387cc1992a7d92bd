"""One inference loop for all cameras: the windows due from two cameras go through ONE
forward of batch 2, and more than ``max_batch`` due windows through several; each camera
keeps its own smoothing and rules; a backend of a fixed batch size is fed in chunks; a
camera that cannot be reached is reported while the other carries on."""

from __future__ import annotations

import numpy as np
import torch

from rsanet.inference import AlertRule, Predictor
from rsanet.inference.stream import Backoff, FrameRing
from rsanet.serve.batching import (
    CPU_MAX_BATCH,
    GPU_MAX_BATCH,
    InferenceLoop,
    default_max_batch,
    forward_windows,
)
from rsanet.serve.cameras import LIVE, UNREACHABLE, Camera
from rsanet.serve.config import CameraConfig
from support.inference import CLASSES
from support.serve import StubBackend, frames, paced_opener, stub_predictor, wait_for


def fed_camera(name: str, predictor: Predictor, count: int, rules=None) -> Camera:
    """A camera whose ring holds ``count`` frames already (no reader thread)."""
    camera = Camera(
        CameraConfig(name, "rtsp://x/s"), predictor, window=1.0, stride=0.5,
        rules=rules, opener=lambda: iter(()),
    )  # fmt: skip
    camera.ring = FrameRing(2.0, max_frames=500)
    for frame in frames(count):
        camera.ring.put(frame)
    return camera


def test_two_cameras_one_forward():
    predictor = stub_predictor()
    rules = [AlertRule("fighting", 0.5, cooldown=0)]
    door = fed_camera("door", predictor, 30, rules)
    yard = fed_camera("yard", predictor, 30)
    seen = []
    loop = InferenceLoop(predictor, [door, yard], on_result=lambda c, r: seen.append((c.name, r)))
    assert loop.step() == 2
    assert predictor.backend.batches == [2] and loop.forwards == 1 and loop.batch_sizes == [2]
    assert [name for name, _ in seen] == ["door", "yard"]
    for _, result in seen:
        assert result.top[0][0] == "fighting" and result.top[0][1] > 0.9
    assert door.status == LIVE and door.latest is seen[0][1]
    assert door.alerts.update(seen[0][1])[0].label == "fighting"
    assert loop.step() == 0  # nothing due until new frames come
    assert predictor.backend.batches == [2]


def test_only_the_cameras_with_a_window_due_are_batched():
    predictor = stub_predictor()
    door = fed_camera("door", predictor, 30)
    yard = fed_camera("yard", predictor, 5)  # 0.2 s: no window yet
    loop = InferenceLoop(predictor, [door, yard])
    assert loop.step() == 1 and predictor.backend.batches == [1]


def test_due_windows_go_through_forwards_of_at_most_max_batch():
    """Five cameras due at once, at most two windows a forward: three forwards, each
    reported, and every camera gets its scores."""
    predictor = stub_predictor()
    cameras = [fed_camera(f"cam{i}", predictor, 30) for i in range(5)]
    seen, forwards = [], []
    loop = InferenceLoop(
        predictor,
        cameras,
        on_result=lambda camera, result: seen.append(camera.name),
        on_forward=forwards.append,
        max_batch=2,
    )
    assert loop.step() == 5
    assert predictor.backend.batches == [2, 2, 1] == forwards == loop.batch_sizes
    assert loop.forwards == 3 and seen == [f"cam{i}" for i in range(5)]
    assert default_max_batch("cpu") == CPU_MAX_BATCH < GPU_MAX_BATCH == default_max_batch("cuda:0")


def test_a_fixed_batch_backend_is_fed_in_chunks():
    class Fixed(StubBackend):
        input_shape = (1, 3, 4, 32, 32)

    predictor = Predictor(Fixed(), CLASSES, num_frames=4, size=32, smoothing=1)
    windows = []
    for _ in range(3):
        camera = fed_camera("c", predictor, 30)
        camera.ring.close()
        windows.append(camera.poll())
    scores, _ = forward_windows(predictor, windows)
    assert predictor.backend.batches == [1, 1, 1] and len(scores) == 3


def test_batched_scores_equal_one_by_one_scores():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 32 * 32, 4))
    predictor = Predictor(model.eval(), CLASSES, num_frames=4, size=32, smoothing=1)
    windows = []
    for count in (30, 40):
        camera = fed_camera("c", predictor, count)
        windows.append(camera.poll())
    together, _ = forward_windows(predictor, windows)
    alone = [forward_windows(predictor, [window])[0][0] for window in windows]
    np.testing.assert_allclose(np.stack(together), np.stack(alone), atol=1e-5)


def test_a_network_with_context_gets_the_second_before_each_window():
    """A camera of a network that reads the scene's recent past keeps that much history,
    and the batch's clips hold those frames first."""

    class Clips(StubBackend):
        def __call__(self, clip):
            self.clips = clip
            return super().__call__(clip)

    predictor = Predictor(
        Clips(), CLASSES, num_frames=6, size=32, smoothing=1, context_frames=2, context_s=1.0
    )
    camera = fed_camera("door", predictor, 75)  # 3 s at 25 frames per second
    window = camera.poll()
    assert camera.engine.history_s == 1.0 and len(window.past) == 25  # the second before it
    forward_windows(predictor, [window])
    first_two = predictor.window_clip(window)[:2]
    assert all(window.start - 1.0 <= frame.time < window.start for frame in first_two)
    expected = predictor.clip([frame.image for frame in predictor.window_clip(window)])
    assert torch.equal(predictor.backend.clips, expected)


def test_non_finite_logits_skip_that_window_only():
    class Broken(StubBackend):
        def __call__(self, clip):
            logits = super().__call__(clip)
            logits[0, 0] = float("nan")
            return logits

    predictor = Predictor(Broken(), CLASSES, num_frames=4, size=32, smoothing=1)
    door, yard = fed_camera("door", predictor, 30), fed_camera("yard", predictor, 30)
    seen = []
    loop = InferenceLoop(predictor, [door, yard], on_result=lambda c, r: seen.append(c.name))
    loop.step()
    assert seen == ["yard"] and loop.errors == 1 and "non-finite" in loop.last_error


def test_an_unreachable_camera_is_reported_the_other_carries_on():
    def refused():
        raise OSError("cannot open rtsp://viewer:s3cret@10.0.0.9/s: connection refused")

    predictor = stub_predictor()
    down = Camera(
        CameraConfig("down", "rtsp://viewer:s3cret@10.0.0.9/s"), predictor, window=0.4,
        stride=0.2, opener=refused, backoff=Backoff(initial=0.05, maximum=0.1),
    )  # fmt: skip
    up = Camera(
        CameraConfig("up", "rtsp://x/s"), predictor, window=0.4, stride=0.2,
        opener=paced_opener(),
    )  # fmt: skip
    loop = InferenceLoop(predictor, [down, up])
    for camera in (down, up):
        camera.start()
    try:
        assert wait_for(lambda: (loop.step() or True) and up.windows >= 2 and down.outages)
        wait_for(lambda: (loop.step() or True) and down.outages[-1]["attempts"] >= 2, 3.0)
    finally:
        for camera in (down, up):
            camera.stop()
    described = down.describe()
    assert described["status"] == UNREACHABLE and described["outage"]["end"] is None
    assert "connection refused" in described["outage"]["reason"]
    assert "s3cret" not in str(described) and described["url"] == "rtsp://viewer:***@10.0.0.9/s"
    assert up.status == LIVE and up.describe()["fps"] > 5
