"""``rsanet export --format onnx --dynamic-batch``: a file taking any batch size (its parity
checked at batches 1 and 3), which serve's inference loop feeds the windows of all its
cameras in ONE call, with the scores of one window at a time."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

import rsanet.cli
from rsanet.inference import Predictor
from rsanet.inference.stream import FrameRing
from rsanet.serve.batching import InferenceLoop, fixed_batch, forward_windows
from rsanet.serve.cameras import Camera
from rsanet.serve.config import CameraConfig
from support.serve import frames

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


class Counting:
    """A backend wrapper that records the batch of every call (and keeps its shape)."""

    def __init__(self, backend) -> None:
        self.backend, self.batches = backend, []
        self.input_shape = backend.input_shape

    def __call__(self, clip):
        self.batches.append(int(clip.shape[0]))
        return self.backend(clip)


def fed_camera(name: str, predictor: Predictor) -> Camera:
    camera = Camera(
        CameraConfig(name, "rtsp://x/s"), predictor, window=1.0, stride=0.5,
        opener=lambda: iter(()),
    )  # fmt: skip
    camera.ring = FrameRing(2.0, max_frames=500)
    for frame in frames(30):
        camera.ring.put(frame)
    return camera


@pytest.fixture(scope="module")
def onnx_files(fighting_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    files, texts = {}, {}
    for name, extra in (("dynamic", ["--dynamic-batch"]), ("fixed", [])):
        out = folder / f"{name}.onnx"
        args = ["export", str(fighting_checkpoint), "--format", "onnx", "--frames", "8"]
        args += ["--size", "64", "--out", str(out), *extra]
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            assert rsanet.cli.main(args) == 0, text.getvalue()
        files[name], texts[name] = out, text.getvalue()
    return files, texts


def test_the_export_takes_any_batch_and_says_so(onnx_files):
    files, texts = onnx_files
    assert "(N, 3, 8, 64, 64), any batch N" in texts["dynamic"]
    assert "at batches 1 and 3" in texts["dynamic"]
    dynamic = Predictor.from_onnx(files["dynamic"])
    fixed = Predictor.from_onnx(files["fixed"])
    assert fixed_batch(dynamic.backend) is None and fixed_batch(fixed.backend) == 1
    assert dynamic.backend.metadata.get("dynamic_batch") is True


def test_serve_batches_the_windows_through_a_dynamic_onnx_file(onnx_files):
    files, _ = onnx_files
    predictor = Predictor.from_onnx(files["dynamic"], smoothing=1)
    predictor.backend = Counting(predictor.backend)
    cameras = [fed_camera(name, predictor) for name in ("door", "yard", "gate")]
    seen = []
    loop = InferenceLoop(predictor, cameras, on_result=lambda c, r: seen.append(r))
    assert loop.step() == 3
    assert predictor.backend.batches == [3]  # one call for the three windows
    assert all(r.top[0][0] == "fighting" for r in seen)
    # the same scores as the fixed-batch file, which runs them one at a time
    fixed = Predictor.from_onnx(files["fixed"], smoothing=1)
    fixed.backend = Counting(fixed.backend)
    windows = [fed_camera(n, fixed).poll() for n in ("door", "yard", "gate")]
    one_by_one, _ = forward_windows(fixed, windows)
    assert fixed.backend.batches == [1, 1, 1]
    batched, _ = forward_windows(predictor, windows)
    for a, b in zip(batched, one_by_one, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_dynamic_batch_is_for_onnx_only(fighting_checkpoint, tmp_path, capsys):
    args = ["export", str(fighting_checkpoint), "--format", "torchscript", "--dynamic-batch"]
    assert rsanet.cli.main([*args, "--out", str(tmp_path / "m.pt")]) == 2
    assert "--dynamic-batch is for --format onnx" in capsys.readouterr().err
