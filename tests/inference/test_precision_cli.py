"""``--precision`` on the command line: predict in int8 and bf16, an int8 ONNX export of a
TSN, ``--float-from``, and the one-line errors (an RSANet's int8 export, int8 without
calibration data, a float tail without int8)."""

from __future__ import annotations

import pytest
import torch

import rsanet
from rsanet.inference import precision
from rsanet.models import save_checkpoint


@pytest.fixture
def vnni_and_bf16(monkeypatch):
    """Run int8 and bf16 whatever this CPU has (they would fall back to fp32 without)."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_vnni", "avx512_bf16"}))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)


@pytest.fixture(scope="module")
def calibration_config(tmp_path_factory):
    """A SynthMotion config (generated in memory) whose training split calibrates int8."""
    path = tmp_path_factory.mktemp("config") / "calibration.yaml"
    path.write_text(
        "data: {format: synthmotion, num_frames: 8, size: 48,\n"
        "       train_options: {num_videos: 28}, val_options: {num_videos: 14}}\n"
    )
    return path


@pytest.fixture(scope="module")
def tsn_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = rsanet.create_model("tsn_tiny", num_classes=4)
    return save_checkpoint(tmp_path_factory.mktemp("tsn") / "tsn.pt", model, classes=list("abcd"))


def test_predict_in_int8_and_bf16(cli, vnni_and_bf16, checkpoint, small_clip, calibration_config):
    fp32 = cli("predict", small_clip, "--checkpoint", checkpoint, "--json")
    assert fp32.code == 0, fp32.err
    for asked in ("int8", "bf16"):
        options = ["--calibration", calibration_config, "--calibration-clips", 8]
        result = cli("predict", small_clip, "--checkpoint", checkpoint, "--json",
                     "--precision", asked, *options)  # fmt: skip
        assert result.code == 0, result.err
        assert '"top"' in result.out


def test_int8_without_calibration_data_names_the_option(cli, vnni_and_bf16, checkpoint, small_clip):
    """A checkpoint saved without its training config has nothing to calibrate on."""
    result = cli("predict", small_clip, "--checkpoint", checkpoint, "--precision", "int8")
    assert result.code == 2
    assert "--calibration CONFIG" in result.err and len(result.err.strip().splitlines()) == 1


def test_precision_is_for_the_torch_backend(cli, checkpoint, small_clip, tmp_path):
    onnx = tmp_path / "m.onnx"
    assert cli("export", checkpoint, "--format", "onnx", "--out", onnx, "--no-check").code == 0
    result = cli("predict", small_clip, "--backend", "onnxruntime", "--onnx", onnx,
                 "--precision", "int8")  # fmt: skip
    assert result.code == 2 and "exported in" in result.err


def test_export_an_int8_tsn_and_predict_with_it(
    cli, tsn_checkpoint, small_clip, calibration_config, tmp_path
):
    out = tmp_path / "tsn_int8.onnx"
    result = cli("export", tsn_checkpoint, "--format", "onnx", "--precision", "int8",
                 "--calibration", calibration_config, "--calibration-clips", 8,
                 "--dynamic-batch", "--out", out)  # fmt: skip
    assert result.code == 0, result.out + result.err
    assert "% of the largest logit; int8" in result.out
    import onnx

    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    predicted = cli("predict", small_clip, "--backend", "onnxruntime", "--onnx", out, "--json")
    assert predicted.code == 0, predicted.err


def test_an_rsanets_int8_is_not_one_onnx_file(cli, checkpoint, calibration_config, tmp_path):
    result = cli("export", checkpoint, "--format", "onnx", "--precision", "int8",
                 "--calibration", calibration_config, "--out", tmp_path / "x.onnx")  # fmt: skip
    assert result.code == 2
    assert "--precision int8" in result.err and "layer1.2.conv2" in result.err
    assert not (tmp_path / "x.onnx").exists()


def test_eval_reports_top1_and_agreement_against_fp32(
    vnni_and_bf16, calibration_config, tmp_path, capsys
):
    import json

    import rsanet.cli

    torch.manual_seed(0)
    model = rsanet.create_model("tsn_tiny", num_classes=14)
    checkpoint = save_checkpoint(tmp_path / "tsn.pt", model)
    options = ["--precision", "int8", "--calibration-clips", "8", "--json"]
    options += ["--set", "model.name=tsn_tiny"]
    code = rsanet.cli.main(["eval", str(calibration_config), "-c", str(checkpoint), *options])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["precision"] == "int8"
    assert 0 <= result["fp32"]["agreement"] <= 100
    assert result["fp32"]["top1_difference"] == pytest.approx(
        result["top1"] - result["fp32"]["top1"]
    )
    assert (tmp_path / "eval" / "predictions.jsonl").is_file()  # fp32's, where eval puts it
    assert result["files"]["predictions"] == str(tmp_path / "eval_int8" / "predictions.jsonl")


def test_float_from_keeps_the_tail_in_float_and_needs_int8(
    cli, vnni_and_bf16, tsn_checkpoint, small_clip, calibration_config, tmp_path
):
    options = ["--calibration", calibration_config, "--calibration-clips", 8]
    result = cli("predict", small_clip, "--checkpoint", tsn_checkpoint, "--json",
                 "--precision", "int8", "--float-from", "layer4", *options)  # fmt: skip
    assert result.code == 0, result.err
    out = tmp_path / "tail.onnx"
    result = cli("export", tsn_checkpoint, "--format", "onnx", "--precision", "int8",
                 "--float-from", "layer4", *options, "--out", out)  # fmt: skip
    assert result.code == 0, result.out + result.err
    import onnx

    names = [node.name for node in onnx.load(str(out)).graph.node]
    assert any(name.startswith("float_tail/") for name in names)
    wrong = cli("predict", small_clip, "--checkpoint", tsn_checkpoint, "--float-from", "fc")
    assert wrong.code == 2 and "needs --precision int8, not fp32" in wrong.err
    unknown = cli("export", tsn_checkpoint, "--format", "onnx", "--precision", "int8",
                  "--float-from", "layer9", *options, "--out", tmp_path / "x.onnx")  # fmt: skip
    assert unknown.code == 2 and "float_from: 'layer9' is not a block" in unknown.err
    assert len(unknown.err.strip().splitlines()) == 1 and not (tmp_path / "x.onnx").exists()


def test_eval_with_a_float_tail_writes_beside_int8s(
    vnni_and_bf16, calibration_config, tmp_path, capsys
):
    import json

    import rsanet.cli

    torch.manual_seed(0)
    checkpoint = save_checkpoint(
        tmp_path / "tsn.pt", rsanet.create_model("tsn_tiny", num_classes=14)
    )
    options = ["--precision", "int8", "--float-from", "layer4", "--calibration-clips", "8"]
    options += ["--json", "--set", "model.name=tsn_tiny"]
    code = rsanet.cli.main(["eval", str(calibration_config), "-c", str(checkpoint), *options])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["float_from"] == "layer4"
    predictions = tmp_path / "eval_int8_float_layer4" / "predictions.jsonl"
    assert result["files"]["predictions"] == str(predictions)
