"""The SynthMotion study in smoke mode: runs, records, resumption, pictures and report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rsanet.engine.config import ConfigError
from rsanet.study import load_study, run_study, write_report
from rsanet.study.report import comparison, kendall_tau

ROOT = Path(__file__).resolve().parents[1]
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
    assert len(comparison_runs) == 13 * 3  # 4 other transforms + 9 RSA forms, 3 seeds
    forms = {
        (o["transform_options"]["rsa"]["kernel"], o["transform_options"]["rsa"]["context"])
        for run in comparison_runs
        if (o := run.options).get("transform_options", {}).get("rsa")
    }
    assert len(forms) == 9
    assert {run.part for run in runs} == {"comparison", "latent_dim", "kernel_size", "groups"}
    config = study.run_config(runs[-1])
    assert config.model.options["transform_options"]["rsa"]["groups"] == 2
    assert config.train.num_threads == 1  # two workers, one thread each


def test_study_refuses_unknown_names(tmp_path: Path) -> None:
    text = STUDY.read_text().replace(
        "variant: rsa_vr_vr\n    key: transform_options.rsa.groups",
        "variant: rsa_nope\n    key: transform_options.rsa.groups",
    )
    path = tmp_path / "study.yaml"
    path.write_text(
        text.replace(
            "base: synthmotion_rsanet.yaml", f"base: {ROOT / 'configs' / 'synthmotion_rsanet.yaml'}"
        )
    )
    with pytest.raises(ConfigError, match="rsa_nope"):
        load_study(path)


def test_smoke_results(smoke: tuple[Path, dict]) -> None:
    output, results = smoke
    on_disk = json.loads((output / "results.json").read_text())
    assert on_disk["runs"].keys() == results["runs"].keys()
    assert set(results["runs"]) == {"tsn/seed0", "rsa_vr_vr/seed0", "latent_dim_2/seed0"}
    assert results["smoke"] is True and results["machine"]["cores"] >= 1
    for record in results["runs"].values():
        m = record["metrics"]
        for key in ("top1", "pair_accuracy", "reversed_top1", "swap_rate", "same_rate"):
            assert 0.0 <= m[key] <= 100.0
        assert m["pair_accuracy"] >= m["top1"]
        assert m["mparams"] > 0 and m["gflops"] > 0
        assert record["train_wall_s"] > 0 and record["epochs"] == 1
        assert (output / "runs" / record["key"] / "last.pt").is_file()
    tsn = results["runs"]["tsn/seed0"]["metrics"]
    rsa = results["runs"]["rsa_vr_vr/seed0"]["metrics"]
    assert rsa["gflops"] != tsn["gflops"] and rsa["mparams"] > tsn["mparams"]
    # TSN pools frames without order: a reversed clip gets the same answer
    assert tsn["same_rate"] == 100.0 and tsn["swap_rate"] == 0.0
    ablation = results["runs"]["latent_dim_2/seed0"]
    assert ablation["value"] == 2 and ablation["part"] == "latent_dim"
    assert ablation["options"]["transform_options"]["rsa"]["latent_channels"] == 2


def test_smoke_kernel_pictures(smoke: tuple[Path, dict]) -> None:
    output, results = smoke
    kernels = results["kernels"]
    assert kernels["run"] == "rsa_vr_vr/seed0"
    assert (output / "figures" / "kernels" / "kernels.png").is_file()
    # the first RSA layer sees single frames: its basic kernel ignores the direction
    assert kernels["kinds"]["basic"]["max_change"] == pytest.approx(0.0, abs=1e-6)
    assert kernels["kinds"]["relational"]["max_change"] > 0


def test_smoke_report_matches_results(smoke: tuple[Path, dict]) -> None:
    output, results = smoke
    text = (output / "results.md").read_text()
    for name in ("accuracy_vs_gflops", "reversal", "combinations", "ablations"):
        assert (output / "figures" / f"{name}.png").stat().st_size > 0
        assert f"figures/{name}.png" in text
    summaries = comparison(results)
    for variant, summary in summaries.items():
        row = next(line for line in text.splitlines() if f"| `{variant}` |" in line)
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[4] == f"{results['runs'][f'{variant}/seed0']['metrics']['top1']:.1f}"
        assert cells[5] == f"{summary.mean['pair_accuracy']:.1f}"
        assert cells[3] == f"{summary.gflops:.3f}"
    wall = re.search(r"Wall time of the whole study: \*\*(.+?)\*\*", text)
    assert wall is not None
    assert "AMD" in text or results["machine"]["cpu"] in text


def test_smoke_resume_skips_finished_runs(smoke: tuple[Path, dict]) -> None:
    output, results = smoke
    stamps = {k: (output / "runs" / k / "last.pt").stat().st_mtime_ns for k in results["runs"]}
    # a run that finished training but lost its record is measured again, not retrained
    records = json.loads((output / "results.json").read_text())
    del records["runs"]["tsn/seed0"]
    (output / "results.json").write_text(json.dumps(records))
    again = run_study(load_study(STUDY, smoke=True), output, resume=True, echo=None)
    assert again["runs"]["tsn/seed0"]["resumed"] is True
    assert again["runs"]["tsn/seed0"]["metrics"] == results["runs"]["tsn/seed0"]["metrics"]
    for key, record in results["runs"].items():
        assert (output / "runs" / key / "last.pt").stat().st_mtime_ns == stamps[key]
        if key != "tsn/seed0":
            assert again["runs"][key]["finished"] == record["finished"]
    with pytest.raises(ConfigError, match="--resume"):
        run_study(load_study(STUDY, smoke=True), output, echo=None)


def test_report_only_writes_page(smoke: tuple[Path, dict], tmp_path: Path) -> None:
    from rsanet.cli import main

    output, _ = smoke
    page = tmp_path / "docs" / "results.md"
    assert (
        main(
            [
                "study",
                str(STUDY),
                "--smoke",
                "--output",
                str(output),
                "--report-only",
                "--page",
                str(page),
            ]
        )
        == 0
    )
    text = page.read_text()
    assert "(results/accuracy_vs_gflops.png)" in text
    assert (tmp_path / "docs" / "results" / "kernels.png").is_file()
    assert write_report(output) == [output / "results.md"]


def test_kendall_tau() -> None:
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
