"""Export: ONNX and TorchScript files whose logits match PyTorch's (atol 1e-4) for
rsanet_tiny and rsanet_r50, the ONNX Runtime backend of ``rsanet predict``, and the CLI.

Every BatchNorm of the exported networks is randomised first: a fresh network zeroes the
last BatchNorm of each residual branch, which would hide the RSA layers from the logits.
rsanet_r50 is exported at 8 x 64 x 64 (at 224 x 224 the export takes minutes on a CPU)."""

from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pytest
import torch

import rsanet
import rsanet.cli
from rsanet.inference import (
    OnnxRuntimeBackend,
    Predictor,
    TorchScriptBackend,
    export_model,
    load_classifier,
)
from rsanet.inference.export import example_clip, max_abs_difference
from support.inference import CLASSES, CLI_COMMANDS, randomise_norms

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ATOL = 1e-4


def run_cli(*args: object) -> tuple[int, str]:
    """``rsanet ARGS`` in-process at any fixture scope: (exit code, stdout)."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(rsanet.cli, "COMMAND_MODULES", CLI_COMMANDS)
        code = rsanet.cli.main([str(a) for a in args])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def tiny_exports(checkpoint, tmp_path_factory):
    """rsanet_tiny exported by ``rsanet export`` in both formats at 8 x 64 x 64."""
    folder = tmp_path_factory.mktemp("export")
    outputs = {}
    for fmt, name in (("onnx", "tiny.onnx"), ("torchscript", "tiny.pt")):
        code, text = run_cli(
            "export",
            checkpoint,
            "--format",
            fmt,
            "--frames",
            8,
            "--size",
            64,
            "--out",
            folder / name,
        )
        outputs[fmt] = (code, text, folder / name)
    return outputs


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_cli_export_prints_parity(tiny_exports, fmt):
    code, text, path = tiny_exports[fmt]
    assert code == 0 and path.is_file()
    assert "(1, 3, 8, 64, 64)" in text
    difference = float(re.search(r"max abs difference vs PyTorch (\S+)", text).group(1))
    assert difference < ATOL
    assert text.strip().splitlines()[-1].startswith(f"exported {fmt} to {path}")


def test_tiny_parity_on_another_clip(tiny_exports, checkpoint):
    model = load_classifier(checkpoint).model
    clip = example_clip(8, 64, seed=7)
    onnx_backend = OnnxRuntimeBackend(tiny_exports["onnx"][2])
    script_backend = TorchScriptBackend(tiny_exports["torchscript"][2])
    with torch.inference_mode():
        logits = model(clip)
    assert logits.std() > 0.1  # the RSA branches reach the logits: a real comparison
    assert max_abs_difference(model, onnx_backend, clip) < ATOL
    assert max_abs_difference(model, script_backend, clip) < ATOL
    for backend in (onnx_backend, script_backend):
        assert backend.metadata["classes"] == CLASSES
        assert backend.metadata["model"] == "rsanet_tiny"
    assert (onnx_backend.num_frames, onnx_backend.size) == (8, 64)
    with pytest.raises(ValueError, match=r"exported for clips \(1, 3, 8, 64, 64\)"):
        onnx_backend(example_clip(8, 32))


def test_predict_with_onnxruntime_matches_torch(tiny_exports, checkpoint, bikes):
    onnx_file = tiny_exports["onnx"][2]
    code, text = run_cli(
        "predict",
        bikes,
        "--backend",
        "onnxruntime",
        "--onnx",
        onnx_file,
        "--json",
        "--window-seconds",
        5,
        "--stride-seconds",
        5,
    )
    assert code == 0
    exported = [json.loads(x) for x in text.splitlines()]
    code, text = run_cli(
        "predict",
        bikes,
        "--checkpoint",
        checkpoint,
        "--size",
        64,
        "--json",
        "--window-seconds",
        5,
        "--stride-seconds",
        5,
    )
    reference = [json.loads(x) for x in text.splitlines()]
    assert [x["type"] for x in exported] == ["window", "window", "summary"]
    for ours, theirs in zip(exported[:2], reference[:2], strict=True):
        assert [t["label"] for t in ours["top"]] == [t["label"] for t in theirs["top"]]
        assert [t["score"] for t in ours["top"]] == pytest.approx(
            [t["score"] for t in theirs["top"]], abs=1e-5
        )
    # class names come from the ONNX metadata; a checkpoint would override them
    classes = {t["label"] for x in exported[:2] for t in x["top"]}
    assert classes == set(CLASSES)


def test_onnx_backend_errors(tmp_path, cli, bikes, tiny_exports):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not an ONNX model"):
        OnnxRuntimeBackend(junk)
    result = cli(
        "predict",
        bikes,
        "--backend",
        "onnxruntime",
        "--onnx",
        tiny_exports["onnx"][2],
        "--size",
        32,
    )
    assert result.code == 2 and "was exported for --size 64, not 32" in result.err
    result = cli("predict", bikes, "--backend", "onnxruntime", "--onnx", tmp_path / "no.onnx")
    assert result.code == 2 and "no ONNX file" in result.err


def test_export_errors(cli, tmp_path, checkpoint):
    result = cli("export", tmp_path / "missing.pt", "--format", "onnx", "--out", tmp_path / "x")
    assert result.code == 2 and "no checkpoint file" in result.err
    result = cli("export", checkpoint, "--format", "onnx", "--size", 0, "--out", tmp_path / "x")
    assert result.code == 2 and "--size must be a positive integer" in result.err


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_r50_parity(tmp_path, fmt):
    torch.manual_seed(0)
    model = randomise_norms(rsanet.create_model("rsanet_r50", num_classes=10))
    path = tmp_path / f"r50.{fmt}"
    result = export_model(model, path, fmt, frames=8, size=64)
    assert result.max_abs_diff < ATOL
    backend = OnnxRuntimeBackend(path) if fmt == "onnx" else TorchScriptBackend(path)
    clip = example_clip(8, 64, seed=3)
    with torch.inference_mode():
        assert model(clip).std() > 0.1
    assert max_abs_difference(model, backend, clip) < ATOL
    predictor = Predictor(backend, [f"c{i}" for i in range(10)], num_frames=8, size=64)
    assert predictor.scores(torch.randint(0, 255, (8, 80, 80, 3), dtype=torch.uint8).numpy())[
        0
    ].sum() == pytest.approx(1.0)


# -- faults: an output that is the input, a full disk, leftovers, absurd options ----------


@pytest.fixture
def full_disk(monkeypatch):
    """Every atomic write stores half its bytes, then fails with ENOSPC (a full disk)."""
    import errno
    import os

    real_fdopen = os.fdopen
    failures = []

    class Handle:
        def __init__(self, handle):
            self._handle = handle

        def write(self, data):
            self._handle.write(data[: len(data) // 2])
            failures.append(len(data))
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self._handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._handle.close()

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: Handle(real_fdopen(*a, **k)))
    return failures


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rsanet export: error: "), err
    return lines[0]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_refuses_to_overwrite_its_checkpoint(cli, tmp_path, checkpoint, fmt):
    """``--out`` naming the checkpoint itself, by another spelling or through a link: exit
    2 before anything is written, the checkpoint intact."""
    source = tmp_path / "ck.pt"
    source.write_bytes(checkpoint.read_bytes())
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.pt").symlink_to(source)
    for out in (source, tmp_path / "sub" / ".." / "ck.pt", tmp_path / "link.pt"):
        result = cli("export", source, "--format", fmt, "--out", out)
        assert result.code == 2 and "would destroy the input" in one_error_line(result.err)
        assert source.read_bytes() == checkpoint.read_bytes()
    result = cli("export", source, "--format", fmt, "--out", tmp_path / "sub")
    assert result.code == 2 and "is a folder" in one_error_line(result.err)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_on_a_full_disk_keeps_the_previous_file(cli, tmp_path, checkpoint, full_disk, fmt):
    """One line and exit 1; the previous export is intact and no partial file is left
    (TorchScript used to abort the process and leave half a file)."""
    out = tmp_path / f"model.{fmt}"
    out.write_bytes(b"the previous export")
    result = cli(
        "export",
        checkpoint,
        "--format",
        fmt,
        "--frames",
        8,
        "--size",
        32,
        "--no-check",
        "--out",
        out,
    )
    assert result.code == 1 and full_disk
    assert "no space left on the device while writing" in one_error_line(result.err)
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_export_removes_the_temporaries_of_a_killed_export(cli, tmp_path, checkpoint):
    out = tmp_path / "model.pt"
    leftover = tmp_path / ".model.pt.x1y2.tmp"
    leftover.write_bytes(b"half an export")
    result = cli(
        "export",
        checkpoint,
        "--format",
        "torchscript",
        "--frames",
        8,
        "--size",
        32,
        "--no-check",
        "--out",
        out,
    )
    assert result.code == 0 and out.is_file() and not leftover.exists()
    assert TorchScriptBackend(out).metadata["size"] == 32


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--unfold-mb", "inf"], "--unfold-mb must be a positive number of MiB, got inf"),
        (["--unfold-mb", "nan"], "--unfold-mb must be a positive number of MiB, got nan"),
        (["--tolerance", "nan"], "--tolerance must be a finite number >= 0, got nan"),
        (["--tolerance", "-1"], "--tolerance must be a finite number >= 0, got -1.0"),
        (["--frames", "99999999999999999999"], "lower the frames or the size"),
        (["--size", "100000"], "a clip (1, 3, 8, 100000, 100000) takes"),
    ],
)
def test_absurd_export_options_are_one_line(cli, tmp_path, checkpoint, options, message):
    out = tmp_path / "model.pt"
    result = cli("export", checkpoint, "--format", "torchscript", *options, "--out", out)
    assert result.code == 2 and message in one_error_line(result.err)
    assert not out.exists()


def test_export_prints_the_shape_it_uses_without_size(cli, tmp_path):
    """Without --size the message names the size actually used (the checkpoint's recorded
    input size, else 224), never None."""
    torch.manual_seed(0)
    model = rsanet.create_model("rsanet_tiny", num_classes=len(CLASSES))
    source = rsanet.models.save_checkpoint(
        tmp_path / "ck.pt", model, classes=list(CLASSES), input_size=32
    )
    out = tmp_path / "model.pt"
    result = cli("export", source, "--format", "torchscript", "--no-check", "--out", out)
    assert result.code == 0, result.err
    assert "None" not in result.out
    assert "for clips (1, 3, 8, 32, 32)" in result.out and "input (1, 3, 8, 32, 32)" in result.out
    assert TorchScriptBackend(out).metadata["size"] == 32

    plain = rsanet.models.save_checkpoint(tmp_path / "plain.pt", model, classes=list(CLASSES))
    out = tmp_path / "model.safetensors"
    result = cli("export", plain, "--format", "safetensors", "--no-check", "--out", out)
    assert result.code == 0, result.err
    assert "None" not in result.out and "for clips (1, 3, 8, 224, 224)" in result.out
    assert json.loads(out.with_suffix(".json").read_text())["input_size"] == [224, 224]


def test_safetensors_export_refuses_to_overwrite_its_input(cli, tmp_path, checkpoint):
    out = tmp_path / "model.safetensors"
    assert cli("export", checkpoint, "--format", "safetensors", "--out", out).code == 0
    for target in (out, out.with_suffix(".json")):
        result = cli("export", out, "--format", "safetensors", "--out", target)
        assert result.code == 2 and "would destroy the input" in one_error_line(result.err)


def test_full_frame_travels_with_every_export(tmp_path):
    """A model trained on whole frames is fed whole frames by the checkpoint, its
    weights-only file and its ONNX export alike (source scaled to the short side, then
    squeezed, not centre-cropped)."""
    from rsanet.inference import Predictor
    from rsanet.models import save_checkpoint

    model = rsanet.create_model("rsanet_tiny", num_classes=2, num_frames=4)
    config = {"data": {"size": 32, "full_frame": True}}
    checkpoint = save_checkpoint(tmp_path / "whole.pt", model, config=config)
    for fmt, name in (("safetensors", "whole.safetensors"), ("onnx", "whole.onnx")):
        code, text = run_cli("export", checkpoint, "--format", fmt, "--out", tmp_path / name)
        assert code == 0, text
    loaded = [
        Predictor.from_checkpoint(checkpoint),
        Predictor.from_checkpoint(tmp_path / "whole.safetensors"),
        Predictor.from_onnx(tmp_path / "whole.onnx"),
    ]
    frames = np.zeros((4, 24, 40, 3), np.uint8)
    frames[:, :, :2] = 255  # the left edge, which a centre crop would cut away
    for predictor in loaded:
        assert (predictor.full_frame, predictor.size, predictor.short_side) == (True, 32, 32)
        clip = predictor.clip(frames)
        assert clip.shape == (1, 3, 4, 32, 32) and float(clip[0, 0, :, :, 0].min()) > 1.0
    cropped = Predictor.from_checkpoint(save_checkpoint(tmp_path / "crop.pt", model))
    assert not cropped.full_frame
