"""Training on windows of untrimmed recordings through ``rsanet train``: the example
configuration's block, the session split written with the run, and clear errors for
wrong ``data.untrimmed`` values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from rsanet.cli import main
from rsanet.data import UNTRIMMED_FORMATS
from rsanet.engine import ConfigError, config_from_dict
from rsanet.engine import config as config_module
from support.distributed import torchrun
from support.untrimmed import intervals_csv, recording

EXAMPLE = Path(__file__).parents[2] / "configs" / "untrimmed_intervals_example.yaml"


@pytest.fixture(scope="module")
def cameras(tmp_path_factory) -> Path:
    """Four 6 s recordings at 10 fps, two with a fight, and their intervals CSV."""
    folder = tmp_path_factory.mktemp("cameras")
    rows = []
    for number, event in enumerate([(1.0, 4.0), None, (2.0, 5.0), None]):
        name = f"cam{number}.mp4"
        recording(folder / "videos" / name, [event] if event else [])
        rows.append((name, "fight", *event) if event else (name,))
    intervals_csv(folder / "intervals.csv", rows)
    return folder


def example_config(cameras: Path) -> dict:
    """The example configuration with the test's paths, sized for a few seconds."""
    config = yaml.safe_load(EXAMPLE.read_text())
    data = config["data"]
    data.update(
        annotations=str(cameras / "intervals.csv"),
        root=str(cameras / "videos"),
        num_frames=4,
        size=32,
        num_workers=0,
    )
    data["untrimmed"].update(windows_per_epoch=8, val_stride_s=1.0, window_s=1.0, val_fraction=0.5)
    config["train"].update(epochs=1, batch_size=4, num_threads=1)
    config["optim"]["warmup_epochs"] = 0
    config["eval"]["batch_size"] = 8
    config["log"] = {"progress": "never", "tensorboard": False}
    return config


def test_formats_agree_with_the_data_package():
    assert config_module.UNTRIMMED_FORMATS == UNTRIMMED_FORMATS


def test_rsanet_train_on_untrimmed_recordings(tmp_path, cameras, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(example_config(cameras)))
    out = tmp_path / "run"
    assert main(["train", str(path), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "split by session" in printed and "windows of 1 s" in printed
    split = json.loads((out / "split.json").read_text())
    assert split["videos"] == {"train": 2, "val": 2}
    assert split["events"]["train"] == split["events"]["val"] == {"fight": 1, "normal": 1}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epoch = next(r for r in records if r.get("event") == "epoch")
    assert epoch["train_samples"] == 8 and epoch["val_num_samples"] > 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["untrimmed"]["windows_per_epoch"] == 8


def test_rsanet_train_on_bags_of_windows(tmp_path, cameras, capsys):
    """bag_size 3: each of the 8 samples is 3 windows, the loss is taken on one window of
    each, and validation still scores every window of the grid."""
    config = example_config(cameras)
    config["data"]["untrimmed"]["bag_size"] = 3
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert main(["train", str(path), "--output", str(out)]) == 0
    assert "24 windows in 8 bags of 3" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epoch = next(r for r in records if r.get("event") == "epoch")
    assert epoch["train_samples"] == 8 and epoch["val_num_samples"] > 0
    assert math.isfinite(epoch["train_loss"])


def test_rsanet_train_on_key_moments(tmp_path, cameras, capsys):
    """positive_spans: actions reaches the windows; these intervals have no actions, so
    every key moment is its whole event."""
    config = example_config(cameras)
    config["data"]["untrimmed"]["positive_spans"] = "actions"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert main(["train", str(path), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "positives at key moments, shorter than their event for 0 of 1 events" in printed
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["untrimmed"]["positive_spans"] == "actions"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_overlap": 1.5}, r"data.untrimmed.min_overlap must be in \(0, 1\]"),
        ({"positive_fraction": -0.1}, r"data.untrimmed.positive_fraction must be in \[0, 1\]"),
        ({"windows_per_epoch": 0}, "data.untrimmed.windows_per_epoch must be >= 1"),
        ({"window_s": 0}, "data.untrimmed.window_s must be > 0"),
        ({"val_stride_s": -1}, "data.untrimmed.val_stride_s must be > 0"),
        ({"windows_per_epochs": 3}, "did you mean 'data.untrimmed.windows_per_epoch'"),
        ({"positive_sampling": "video"}, "data.untrimmed.positive_sampling must be one of"),
        ({"bag_size": 0}, "data.untrimmed.bag_size must be >= 1"),
        ({"positive_spans": "moments"}, "data.untrimmed.positive_spans must be one of"),
        ({"hard_negative_fraction": 1.5}, r"hard_negative_fraction must be in \[0, 1\]"),
        ({"hard_negative_top": 0}, r"hard_negative_top must be in \(0, 1\]"),
    ],
)
def test_untrimmed_fields_are_checked(cameras, change, message):
    config = example_config(cameras)
    config["data"]["untrimmed"].update(change)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(config)


def test_full_frame_takes_one_crop(cameras):
    config = example_config(cameras)
    config["data"]["full_frame"] = True
    assert config_from_dict(config).data.full_frame
    config["eval"] = {**config.get("eval", {}), "num_crops": 3}
    with pytest.raises(ConfigError, match="full_frame shows the whole frame"):
        config_from_dict(config)


def test_untrimmed_block_needs_an_untrimmed_format(cameras):
    config = example_config(cameras)
    config["data"]["format"] = "list"
    with pytest.raises(ConfigError, match="data.untrimmed applies to the untrimmed formats"):
        config_from_dict(config)
    config = example_config(cameras)
    config["data"]["sampling"] = "dense"
    with pytest.raises(ConfigError, match="data.sampling must be tsn"):
        config_from_dict(config)


def test_impossible_windows_stop_before_training(tmp_path, cameras, capsys):
    config = example_config(cameras)
    config["data"]["untrimmed"].update(window_s=5.5, min_overlap=1.0)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--output", str(tmp_path / "run")]) == 2
    assert "no event can be a positive window" in capsys.readouterr().err


@pytest.mark.slow
def test_train_then_evaluate_events_then_alert_with_the_chosen_rules(tmp_path, cameras, capsys):
    """The untrimmed chain on generated recordings: train on windows, score the alerts of the
    trained checkpoint event by event, pick thresholds for a false-alarm target, and run
    ``rsanet predict`` on a recording with the rules that came out."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(example_config(cameras)))
    run = tmp_path / "run"
    assert main(["train", str(config), "--output", str(run)]) == 0
    checkpoint = run / "best.safetensors"  # the weights-only file train writes beside best.pt
    assert checkpoint.exists()
    capsys.readouterr()

    events = tmp_path / "events"
    code = main(
        [
            "eval-events",
            str(checkpoint),
            "--format",
            "intervals",
            "--annotations",
            str(cameras / "intervals.csv"),
            "--root",
            str(cameras / "videos"),
            "--window-seconds",
            "1",
            "--target-fa-per-hour",
            "3600",
            "--no-figures",
            "--out",
            str(events),
        ]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads((events / "events.json").read_text())
    assert report["event"]["overall"]["events"] == 2  # the two fights of the four recordings
    assert [v["decode_passes"] for v in report["videos"]] == [1, 1, 1, 1]
    assert "normal" not in report["event"]["classes"]  # the window sampler's negative class
    rules = events / "rules.yaml"
    assert "fight" in rules.read_text()
    capsys.readouterr()

    # a second round trains on the normal windows the first network scored most like a
    # fight: the window scores eval-events wrote, matched to the training recordings
    second = example_config(cameras)
    second["data"]["untrimmed"].update(
        hard_negatives=str(events / "window_scores.npz"), hard_negative_top=1.0
    )
    config.write_text(yaml.safe_dump(second))
    assert main(["train", str(config), "--output", str(tmp_path / "second")]) == 0
    # every normal window of the two training recordings (1 s every 0.5 s): 11 of the
    # quiet one and 4 of the fight's; those of the two validation recordings are not used
    assert "50% of normal samples from 15 hard negatives" in capsys.readouterr().out

    log = tmp_path / "alerts.jsonl"
    code = main(
        [
            "predict",
            str(cameras / "videos" / "cam0.mp4"),
            "--checkpoint",
            str(checkpoint),
            "--window-seconds",
            "1",
            "--rules",
            str(rules),
            "--events",
            str(log),
            "--json",
        ]
    )
    assert code == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(1 for line in lines if "window" in line or "index" in line) >= 5
    assert log.exists()  # created even when no alert fired


def test_untrimmed_training_under_torchrun(tmp_path, cameras):
    """Two processes share each epoch's windows (drawn alike from the seed and epoch in both)
    and rank 0 alone writes the split and the metrics."""
    config = example_config(cameras)
    config["train"]["batch_size"] = 4
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    done = torchrun("train", str(path), "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es) on cpu" in done.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (epoch,) = [r for r in records if r.get("event") == "epoch"]
    assert epoch["train_samples"] == 8  # the epoch's 8 windows, 4 per process
    assert json.loads((out / "split.json").read_text())["videos"] == {"train": 2, "val": 2}
