"""SynthCCTV through the command line: the configurations load and train two steps on
tiny generated recordings, and the whole chain (generate, check, train, eval-events with a
false-alarm target, predict with the swept rules) runs end to end. Structure and exit codes
only: a model trained for a few steps cannot be held to accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsanet.cli import main
from rsanet.data.synthcctv import write_synthcctv
from rsanet.engine import load_config
from support.synthcctv import tiny_overrides

CONFIGS = Path(__file__).parents[2] / "configs"
TINY = {"seconds": 6.0, "fps": 10, "size": (48, 32), "cameras": (2, 2)}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthcctv")
    write_synthcctv(out, 4, classes=["fight", "fainting"], normal_fraction=0.25, seed=0, **TINY)
    return out


@pytest.mark.parametrize("model", ["rsanet", "tsn", "tsm"])
def test_config_loads_and_trains_two_steps(model, recordings, tmp_path, capsys):
    path = CONFIGS / f"synthcctv_{model}.yaml"
    config = load_config(path)
    assert config.data.format == "aihub-cctv" and config.model.name == f"{model}_tiny"
    assert config.data.untrimmed.window_s == 2.0 and config.data.num_frames == 8
    assert 64 <= config.data.size <= 96 and config.data.full_frame
    assert config.model.init_from == f"runs/synthmotion_{model}/best.pt"
    assert config.data.untrimmed.positive_sampling == "class"
    out = tmp_path / "run"
    code = main(["train", str(path), "--output", str(out), "--set", *tiny_overrides(recordings)])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epoch = next(r for r in records if r.get("event") == "epoch")
    assert epoch["train_samples"] == 8  # two steps of four windows
    assert (out / "last.pt").is_file()


MORE_SCENES = {
    "data.annotations": "data/synthcctv4x",
    "data.num_frames": 16,
    "data.untrimmed.val_fraction": 0.025,
}


@pytest.mark.parametrize(
    ("name", "differences"),
    [
        ("synthcctv_tsm_long.yaml", {**MORE_SCENES, "train.epochs": 36, "train.eval_every": 9}),
        (
            "synthcctv_tsm_budget.yaml",
            {
                **MORE_SCENES,
                "train.epochs": 20,
                "train.eval_every": 10,
                "train.precision": "bf16",
                "train.channels_last": True,
                "train.time_budget_min": 19.5,
            },
        ),
    ],
)
def test_more_scenes_configs_are_the_tsm_recipe_with_their_changes(
    name, differences, recordings, tmp_path, capsys
):
    """The configurations on four times the scenes differ from ``synthcctv_tsm.yaml`` only
    where their headers say (the data folder, 16 frames, a smaller validation fraction; 36
    epochs, or 20 in bf16 within a time budget of 19.5 minutes), and train."""
    from rsanet.engine import config_to_dict

    def flat(tree: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                out |= flat(value, f"{prefix}{key}.")
            else:
                out[prefix + key] = value
        return out

    recipe = flat(config_to_dict(load_config(CONFIGS / "synthcctv_tsm.yaml")))
    path = CONFIGS / name
    variant = flat(config_to_dict(load_config(path)))
    assert {key: variant[key] for key in recipe if recipe[key] != variant[key]} == differences
    out = tmp_path / "run"
    code = main(["train", str(path), "--output", str(out), "--set", *tiny_overrides(recordings)])
    assert code == 0, capsys.readouterr().err
    assert (out / "last.pt").is_file()


RECORDS = CONFIGS.parent / "docs" / "results" / "synthcctv" / "networks"


@pytest.mark.parametrize(
    ("name", "record"),
    [
        ("synthmotion_rsanet_k3.yaml", "rsanet_k3_synthmotion"),
        ("synthcctv_rsanet_budget.yaml", "rsanet_k3budgetseed0"),
    ],
)
def test_the_rsanet_budget_configs_are_the_recorded_runs(name, record) -> None:
    """``rsanet_tiny`` 5x3x3 on SynthMotion and on the budget's scenes: each file gives the
    configuration its recorded run saved, but for that machine's folders."""
    import yaml

    from rsanet.engine import config_to_dict
    from rsanet.engine.trainer import config_differences

    recorded = yaml.safe_load((RECORDS / record / "config.yaml").read_text())
    differences = config_differences(recorded, config_to_dict(load_config(CONFIGS / name)))
    machine = {"data.annotations", "model.init_from"} if "synthcctv" in name else set()
    assert {line.split(":")[0] for line in differences} <= machine, differences


@pytest.mark.slow
def test_generate_check_train_eval_events_predict(tmp_path, capsys):
    data, held_out = tmp_path / "data", tmp_path / "held_out"
    generate = ["data", "synth-cctv", "--cameras", "2", "--seconds", "6", "--size", "48x32"]
    generate += ["--classes", "fight", "fainting", "--normal-fraction", "0.25"]
    assert main([*generate, "--out", str(data), "--sessions", "4", "--seed", "0"]) == 0
    assert main([*generate, "--out", str(held_out), "--sessions", "2", "--seed", "9"]) == 0
    capsys.readouterr()

    assert main(["data", "check", str(data), "--format", "aihub-cctv", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"] == report["ok"] == 8 and report["bad"] == []

    run = tmp_path / "run"
    config = CONFIGS / "synthcctv_rsanet.yaml"
    assert main(["train", str(config), "--output", str(run), "--set", *tiny_overrides(data)]) == 0
    split = json.loads((run / "split.json").read_text())
    assert split["videos"]["train"] + split["videos"]["val"] == 8
    capsys.readouterr()

    evaluation = tmp_path / "eval"
    code = main(
        ["eval-events", str(run / "last.pt"), "--format", "aihub-cctv"]
        + ["--annotations", str(held_out), "--window-seconds", "1", "--stride-seconds", "0.5"]
        + ["--target-fa-per-hour", "60", "--no-figures", "--out", str(evaluation)]
    )
    assert code == 0, capsys.readouterr().err
    events = json.loads((evaluation / "events.json").read_text())
    assert len(events["videos"]) == 4 and events["failures"] == []
    assert "overall" in events["event"]
    rules = evaluation / "rules.yaml"
    assert rules.is_file()

    video = sorted(held_out.rglob("*.mp4"))[0]
    log = tmp_path / "alerts.jsonl"
    capsys.readouterr()
    code = main(
        ["predict", str(video), "--checkpoint", str(run / "last.pt"), "--window-seconds", "1"]
        + ["--rules", str(rules), "--events", str(log), "--json"]
    )
    assert code == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert len(lines) >= 2  # windows, then the summary
    if log.exists():  # alerts, if the barely trained model raised any
        assert all(json.loads(line) for line in log.read_text().splitlines())
