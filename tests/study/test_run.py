"""The SynthMotion study in smoke mode: the plan, one record per run, resumption, the
negative controls and a report that regenerates byte for byte from the records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsanet.engine.config import ConfigError
from rsanet.study import load_study, read_records, run_study, write_report
from rsanet.study.records import record_path

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "configs" / "study_synthmotion.yaml"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("study")
    results = run_study(load_study(STUDY, smoke=True), output, echo=None)
    return output, results


def test_full_study_plan() -> None:
    study = load_study(STUDY)
    runs = study.runs()
    keys = [run.key for run in runs]
    assert len(keys) == len(set(keys))
    comparison_runs = [run for run in runs if run.part == "comparison"]
    assert len(comparison_runs) == 14 * 3  # 4 other transforms, UniFormer, 9 RSA forms, 3 seeds
    forms = {
        (o["transform_options"]["rsa"]["kernel"], o["transform_options"]["rsa"]["context"])
        for run in comparison_runs
        if (o := run.options).get("transform_options", {}).get("rsa")
    }
    assert len(forms) == 9
    parts = {run.part for run in runs}
    assert parts == {"comparison", "untrained", "latent_dim", "kernel_size", "groups", "pair_probe"}
    # every ablation value has as many seeds as the comparison: claims need a spread
    for run in runs:
        if run.part not in ("comparison", "untrained"):
            assert sum(r.part == run.part and r.value == run.value for r in runs) == 3
    untrained = {run.key for run in runs if run.part == "untrained"}
    assert untrained == {f"untrained_{v}/seed{s}" for v in ("rsa_vr_vr", "tsn") for s in (0, 1, 2)}
    probes = [run for run in runs if run.part == "pair_probe"]
    assert {run.value for run in probes} == {2, 4, 5}
    config = study.run_config(probes[0])
    assert config.data.train_options["pairs"] == config.data.val_options["pairs"] == [2]
    assert (config.data.num_frames, config.data.size, config.model.name) == (8, 48, "conv3d_tiny")
    config = study.run_config(runs[-1])
    assert config.model.options["transform_options"]["rsa"]["groups"] == 2
    assert config.train.num_threads == 1  # two workers, one thread each
    assert study.config.records == "docs/results/records"


def test_family_settings_apply_to_their_runs_and_ablations() -> None:
    study = load_study(STUDY)
    runs = {run.key: run for run in study.runs()}
    for name, variant in study.config.variants.items():
        config = study.run_config(runs[f"{name}/seed0"])
        for setting in variant.set:
            key, value = setting.split("=", 1)
            section, field = key.split(".", 1)
            assert str(getattr(getattr(config, section), field)) == value
    smoke = load_study(STUDY, smoke=True)
    config = smoke.run_config(next(r for r in smoke.runs() if r.variant == "tsn"))
    assert config.train.epochs == 1  # the smoke settings still shrink every family


def test_study_refuses_unknown_names(tmp_path: Path) -> None:
    text = STUDY.read_text().replace("untrained: [rsa_vr_vr, tsn]", "untrained: [rsa_nope]")
    path = tmp_path / "study.yaml"
    path.write_text(
        text.replace(
            "base: synthmotion_rsanet.yaml", f"base: {ROOT / 'configs' / 'synthmotion_rsanet.yaml'}"
        )
    )
    with pytest.raises(ConfigError, match="rsa_nope"):
        load_study(path)


def test_smoke_records(smoke: tuple[Path, dict]) -> None:
    output, results = smoke
    records = output / "records"
    expected = {
        "tsn/seed0",
        "rsa_vr_vr/seed0",
        "untrained_rsa_vr_vr/seed0",
        "untrained_tsn/seed0",
        "latent_dim_2/seed0",
        "pair2_conv3d/seed0",
    }
    assert set(results["runs"]) == expected
    assert results["smoke"] is True and results["machine"]["cores"] >= 1
    for key, record in results["runs"].items():
        assert json.loads(record_path(records, key).read_text()) == record
        assert record["revision"]
        m = record["metrics"]
        for name in ("top1", "pair_accuracy", "reversed_top1", "swap_rate", "same_rate"):
            assert 0.0 <= m[name] <= 100.0
        assert m["pair_correct"] >= m["top1_correct"]
        assert m["pair_accuracy"] == pytest.approx(100 * m["pair_correct"] / m["num_val"])
        pairs = 1 if record["part"] == "pair_probe" else 7
        assert len(m["pair_top1"]) == pairs and sum(m["pair_clips"]) == m["num_val"]
        assert m["mparams"] > 0 and m["gflops"] > 0
        trained = record["part"] != "untrained"
        assert (output / "runs" / key / "last.pt").is_file() == trained
        assert record["epochs"] == (1 if trained else 0)
    # TSN pools frames without order: a reversed clip gets the same answer and the same
    # features, trained or not
    for key in ("tsn/seed0", "untrained_tsn/seed0"):
        m = results["runs"][key]["metrics"]
        assert m["same_rate"] == 100.0 and m["swap_rate"] == 0.0
        assert m["direction"]["features"] == 0.0 and m["direction"]["kernel"] == {}
    # RSA blocks start with their last BatchNorm at zero: the untrained network's features
    # cannot depend on the direction; its random kernels do
    untrained = results["runs"]["untrained_rsa_vr_vr/seed0"]["metrics"]["direction"]
    assert untrained["features"] == 0.0
    assert set(untrained["kernel"]) == {"basic", "relational"}
    assert all(value > 0.1 for value in untrained["kernel"].values())
    trained = results["runs"]["rsa_vr_vr/seed0"]["metrics"]["direction"]
    assert trained["features"] > 0.0
    assert len(trained["kernel_by_layer"]) == 7
    # a pair probe trains on its pair's two classes alone, and says so in its record
    probe = results["runs"]["pair2_conv3d/seed0"]
    assert (probe["part"], probe["value"], probe["data"]["pairs"]) == ("pair_probe", 2, [2])
    assert "this pair alone" in (output / "results.md").read_text()


def test_smoke_kernel_picture_data(smoke: tuple[Path, dict]) -> None:
    import numpy as np

    output, results = smoke
    kernels = results["kernels"]
    assert kernels["run"] == "rsa_vr_vr/seed0"
    forward, backward = (
        {k: np.asarray(v) for k, v in kernels["kernels"][d].items()}
        for d in ("forward", "backward")
    )
    # the first RSA layer sees single frames: its basic kernel ignores the direction
    np.testing.assert_allclose(forward["basic"], backward["basic"], atol=1e-6)
    assert np.abs(forward["relational"] - backward["relational"]).max() > 0
    assert (output / "figures" / "kernels" / "kernels.png").is_file()


def test_report_regenerates_byte_for_byte(smoke: tuple[Path, dict], tmp_path: Path) -> None:
    output, _ = smoke
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        write_report(output / "records", folder, page=folder / "docs" / "results.md")
    pages = [folder / "docs" / "results.md" for folder in (first, second)]
    assert pages[0].read_bytes() == pages[1].read_bytes()
    pictures = sorted(p.name for p in (first / "docs" / "results").glob("*.png"))
    assert {"accuracy_vs_gflops.png", "reversal.png", "kernels.png"} <= set(pictures)
    for name in pictures:
        a = (first / "docs" / "results" / name).read_bytes()
        assert a == (second / "docs" / "results" / name).read_bytes(), name
    text = pages[0].read_text()
    assert "(results/accuracy_vs_gflops.png)" in text
    assert "negative control" in text and "**does not hold**" in text


def test_smoke_resume_measures_a_lost_record_without_retraining(
    smoke: tuple[Path, dict],
) -> None:
    output, results = smoke
    stamps = {
        k: (output / "runs" / k / "last.pt").stat().st_mtime_ns
        for k, r in results["runs"].items()
        if r["part"] != "untrained"
    }
    record_path(output / "records", "tsn/seed0").unlink()
    again = run_study(load_study(STUDY, smoke=True), output, resume=True, echo=None)
    assert again["runs"]["tsn/seed0"]["resumed"] is True
    assert again["runs"]["tsn/seed0"]["metrics"] == results["runs"]["tsn/seed0"]["metrics"]
    for key, stamp in stamps.items():
        assert (output / "runs" / key / "last.pt").stat().st_mtime_ns == stamp
    assert again["runs"].keys() == results["runs"].keys()
    with pytest.raises(ConfigError, match="--resume"):
        run_study(load_study(STUDY, smoke=True), output, echo=None)


def test_report_only_cli(
    smoke: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rsanet.cli import main

    output, _ = smoke
    page = tmp_path / "docs" / "results.md"
    argv = ["study", str(STUDY), "--smoke", "--output", str(output), "--report-only"]
    assert main([*argv, "--page", str(page)]) == 0
    assert (tmp_path / "docs" / "results" / "kernels.png").is_file()
    assert page.read_text().count("| TSN (1x3x3 conv.) |") >= 1
    assert main([*argv, "--records", str(tmp_path / "nothing")]) != 0
    assert "--records DIR" in capsys.readouterr().err


def test_records_of_another_layout_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="study.json"):
        read_records(tmp_path)
