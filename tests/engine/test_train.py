"""End-to-end training and testing on SynthMotion: learning, exact resume, NaN handling,
bad input, through the Python API and the ``rsanet`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from rsanet.cli import main
from rsanet.engine import (
    NonFiniteLossError,
    config_from_dict,
    config_to_dict,
    evaluate,
    train,
)
from rsanet.engine import trainer as trainer_module
from rsanet.models import load_model, read_checkpoint


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_same_optimizer(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for index, state in a["state"].items():
        for name, value in state.items():
            other = b["state"][index][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other


@pytest.fixture(scope="module")
def disk_synthmotion(tmp_path_factory) -> dict[str, Path]:
    """56 SynthMotion videos (4 per class, 4 frames of 32 x 32) written as frame folders
    with a TSN list, so that the file-based path (decoding, crops, clips) is exercised."""
    from rsanet.data import write_synthmotion

    out = tmp_path_factory.mktemp("synthmotion")
    paths = write_synthmotion(out, 56, num_val_videos=14, num_frames=4, size=32, format="frames")
    return {"root": out, **paths}


def test_train_and_eval_learn_synthmotion(tmp_path, tiny_config, disk_synthmotion, capsys):
    """Train through the CLI, then test with 2 clips x 3 crops: the network fits its training
    videos far above chance (1/14), and every output file is written."""
    train_list = str(disk_synthmotion["train"])
    config = tiny_config(
        data={
            "format": "list",
            "root": str(disk_synthmotion["root"]),
            "train_annotations": train_list,
            "val_annotations": train_list,
        },
        optim={"lr": 0.003, "label_smoothing": 0.0},
        train={"epochs": 8, "batch_size": 8},
        log={"tensorboard": True, "every_steps": 5},
    )
    config["data"]["train_options"] = config["data"]["val_options"] = {}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert main(["train", str(path), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "best val top-1" in printed and "wall time" in printed

    assert {"config.yaml", "last.pt", "best.pt", "metrics.jsonl", "tensorboard"} <= {
        p.name for p in out.iterdir()
    }
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved == config_to_dict(config_from_dict(config))  # resolved: defaults included
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tensorboard").iterdir())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == list(range(1, 9))
    assert [r["step"] for r in records if r["event"] == "step"] == list(range(5, 57, 5))
    best = max(r["val_top1"] for r in epochs)
    assert best >= 30.0  # chance is 7.1 %

    last = read_checkpoint(out / "last.pt")
    assert (last["epoch"], last["step"]) == (8, 56)
    assert last["classes"][0] == "moving something left"
    model = load_model(out / "best.pt")  # a model checkpoint too
    assert model.num_classes == 14

    assert (
        main(
            [
                "eval",
                str(path),
                "--checkpoint",
                str(out / "best.pt"),
                "--clips",
                "2",
                "--crops",
                "3",
                "--json",
                "--output",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert (result["clips"], result["crops"], result["views"]) == (2, 3, 6)
    assert result["num_samples"] == 56 and result["top1"] >= 30.0
    assert result["top5"] >= result["top1"]
    assert len(result["per_class"]) == 14
    assert result["mean_class"] == pytest.approx(
        sum(result["per_class"].values()) / 14
    )  # balanced classes: 4 videos each
    lines = Path(result["files"]["predictions"]).read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 56 and {"video", "label", "prediction", "top5"} <= rows[0].keys()
    assert sum(r["correct"] for r in rows) == round(result["top1"] * 56 / 100)
    assert Path(result["files"]["confusion_matrix"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(Path(result["files"]["metrics"]).read_text())["top1"] == result["top1"]


def test_ensemble_averages_the_softmax_of_each_checkpoint(tmp_path, tiny_config):
    """Two networks (different seeds) ensembled: the scores are the mean of their softmax."""
    from rsanet.engine.evaluate import predict
    from rsanet.engine.loaders import build_eval_loader, build_split

    config = config_from_dict(tiny_config(train={"epochs": 1}))
    train(config, tmp_path / "a")
    other = config_from_dict(tiny_config(train={"epochs": 1, "seed": 5}))
    train(other, tmp_path / "b")
    paths = [tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt"]
    result = evaluate(config, paths, output_dir=tmp_path / "ens")

    from rsanet.engine.distributed import DistEnv

    dataset = build_split(config.data, "val", train=False)
    loader = build_eval_loader(dataset, batch_size=5, num_workers=0, env=DistEnv())
    scores = [predict(load_model(p), loader, torch.device("cpu"))[0] for p in paths]
    mean = (scores[0] + scores[1]) / 2
    rows = [
        json.loads(line) for line in Path(result["files"]["predictions"]).read_text().splitlines()
    ]
    assert [r["prediction"] for r in rows] == mean.argmax(1).tolist()
    top = mean.topk(5, dim=1).values
    assert torch.allclose(torch.tensor([r["top5_scores"] for r in rows]), top, atol=1e-5)
    single = evaluate(config, paths[:1], output_dir=tmp_path / "one")
    assert single["checkpoints"] == [str(paths[0])] and result["checkpoints"] == list(
        map(str, paths)
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_bit_identical(tmp_path, tiny_config, workers):
    """Stopped after epoch 1 and resumed, a run ends with exactly the weights, EMA,
    optimiser and schedule of the uninterrupted run (dropout, stochastic depth, random
    flips and SGD momentum included)."""
    config = tiny_config(
        model={"drop_rate": 0.3, "drop_path_rate": 0.1},
        data={"flip_mode": "swap", "num_workers": workers},
        optim={"name": "sgd", "lr": 0.05},
        train={"epochs": 3, "ema": True, "ema_decay": 0.9},
    )
    full = train(config_from_dict(config), tmp_path / "full")
    stopped = config_from_dict({**config, "train": {**config["train"], "stop_after_epochs": 1}})
    part = train(stopped, tmp_path / "part")
    assert part["stopped_early"] and part["epochs_completed"] == 1
    again = train(config_from_dict(config), tmp_path / "part", resume=True)
    assert again["epochs_completed"] == 3 and again["steps"] == full["steps"] == 12

    a, b = (
        read_checkpoint(tmp_path / "full" / "last.pt"),
        read_checkpoint(tmp_path / "part" / "last.pt"),
    )
    assert_same_state(a["state_dict"], b["state_dict"])
    assert_same_state(a["ema"], b["ema"])
    assert_same_optimizer(a["optimizer"], b["optimizer"])
    assert a["scheduler"] == b["scheduler"]
    assert [a[k] for k in ("epoch", "step", "best_score", "best_top1")] == [
        b[k] for k in ("epoch", "step", "best_score", "best_top1")
    ]

    # the metrics file continues where the first part stopped, with the same figures
    def figures(run: str) -> list[tuple]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [
            (
                r["event"],
                r["epoch"],
                r["step"],
                r.get("train_loss"),
                r.get("val_top1"),
                r.get("loss"),
            )
            for r in map(json.loads, lines)
        ]

    assert figures("part") == figures("full")
    assert [f[1] for f in figures("part") if f[0] == "epoch"] == [1, 2, 3]


def test_plain_resume_flag_continues_from_last_pt(tmp_path, tiny_yaml, capsys):
    path = tiny_yaml(train={"epochs": 2, "stop_after_epochs": 1})
    out = tmp_path / "run"
    assert main(["train", str(path), "--output", str(out)]) == 0
    assert "stopped after epoch 1 of 2" in capsys.readouterr().out
    # a second fresh start would overwrite the run: refused
    assert main(["train", str(path), "--output", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                str(path),
                "--output",
                str(out),
                "--resume",
                "--set",
                "train.stop_after_epochs=null",
            ]
        )
        == 0
    )
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert read_checkpoint(out / "last.pt")["epoch"] == 2


def test_resuming_with_another_best_metric_chooses_best_pt_by_it(tmp_path, tiny_config, capsys):
    """The saved best score is of the old metric, so it is not compared with the new one:
    the first validation after resuming sets best.pt."""
    config = tiny_config(train={"epochs": 2, "stop_after_epochs": 1})
    train(config_from_dict(config), tmp_path / "run")
    first = read_checkpoint(tmp_path / "run" / "best.pt")
    assert first["epoch"] == 1
    train_section = {**config["train"], "stop_after_epochs": None, "best_metric": "mean_class"}
    resumed = {**config, "train": train_section}
    capsys.readouterr()
    result = train(config_from_dict(resumed), tmp_path / "run", resume=True)
    assert "train.best_metric changed from top1 to mean_class" in capsys.readouterr().out
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    assert result["best_epoch"] == 2
    assert result["best_score"] == last["metrics"]["val_mean_class"]


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, tiny_config, monkeypatch
):
    config = config_from_dict(tiny_config(train={"epochs": 3}))
    reference = train(
        config_from_dict(tiny_config(train={"epochs": 3, "stop_after_epochs": 1})),
        tmp_path / "reference",
    )
    steps_per_epoch = reference["steps"]  # 4
    bad_step = steps_per_epoch + 2  # the second step of epoch 2

    real = trainer_module.build_loss

    def poisoned(optim_config):
        loss, calls = real(optim_config), [0]

        def forward(logits, labels):
            calls[0] += 1
            value = loss(logits, labels)
            return value * float("nan") if calls[0] == bad_step else value

        return forward

    monkeypatch.setattr(trainer_module, "build_loss", poisoned)
    with pytest.raises(NonFiniteLossError) as error:
        train(config, tmp_path / "run")
    message = str(error.value)
    assert f"loss is nan at step {bad_step} (epoch 2, batch 2 of 4)" in message
    assert f"the last good checkpoint is {tmp_path / 'run' / 'last.pt'} (epoch 1)" in message
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    assert last["epoch"] == 1 and last["step"] == steps_per_epoch
    good = read_checkpoint(tmp_path / "reference" / "last.pt")
    assert_same_state(last["state_dict"], good["state_dict"])


def test_nan_loss_exits_non_zero_from_the_command(tmp_path, tiny_yaml, monkeypatch, capsys):
    real = trainer_module.build_loss
    monkeypatch.setattr(
        trainer_module, "build_loss", lambda c: lambda x, y: real(c)(x, y) * float("inf")
    )
    assert main(["train", str(tiny_yaml()), "--output", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert (
        "loss is nan at step 1 (epoch 1, batch 1 of 4)" in err
        or "loss is inf at step 1 (epoch 1, batch 1 of 4)" in err
    )
    assert "no checkpoint was written yet" in err


def test_accumulation_bf16_and_ema_validation(tmp_path, tiny_config):
    config = config_from_dict(
        tiny_config(
            train={
                "epochs": 1,
                "batch_size": 14,
                "grad_accum_steps": 2,
                "precision": "bf16",
                "ema": True,
            }
        )
    )
    result = train(config, tmp_path / "run")
    assert result["steps"] == 2  # 28 videos / 14 per step
    assert result["last"]["train_samples"] == 28
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["ema"].keys() == ckpt["state_dict"].keys()
    assert not all(torch.equal(ckpt["ema"][k], ckpt["state_dict"][k]) for k in ckpt["ema"])


def test_channels_last_hands_the_network_channels_last_clips_and_learns_the_same(
    tmp_path, tiny_config, monkeypatch
):
    import rsanet.models

    layouts = []

    def recording(*args, **kwargs):
        model = create_model(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda _, inputs: layouts.append(
                inputs[0].is_contiguous(memory_format=torch.channels_last_3d)
            )
        )
        return model

    create_model = rsanet.models.create_model
    monkeypatch.setattr(rsanet.models, "create_model", recording)
    states = {}
    for flag in (False, True):
        layouts.clear()
        # (plain SGD: Adam's normalised steps would blow up rounding in near-zero gradients)
        config = config_from_dict(
            tiny_config(train={"epochs": 1, "channels_last": flag}, optim={"name": "sgd"})
        )
        result = train(config, tmp_path / f"run_{flag}")
        assert layouts and all(layout == flag for layout in layouts)  # training and validation
        states[flag] = (read_checkpoint(tmp_path / f"run_{flag}" / "last.pt"), result)
    (plain, plain_result), (last, last_result) = states[False], states[True]
    for key, value in plain["state_dict"].items():
        torch.testing.assert_close(last["state_dict"][key], value, rtol=1e-4, atol=1e-5)
    assert last_result["last"]["train_loss"] == pytest.approx(
        plain_result["last"]["train_loss"], rel=1e-5
    )


# -- bad input: a clear message and exit code 2 before any work ---------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=0.1"], "unknown key 'optim.lrr'; did you mean 'optim.lr'?"),
        (["train.epochs=many"], "train.epochs: expected int, got str 'many'"),
        (["model.name=rsanet_tinyy"], "unknown model 'rsanet_tinyy'"),
        (
            ["data.format=something-v1", "data.annotations=/no/such/annotations"],
            "data.annotations: no such file or folder: '/no/such/annotations'",
        ),
        (["data.format=something-v1"], "data.annotations must be set"),
        (["model.pretrained=/no/such/resnet50.pth"], "model.pretrained: no such file"),
        (["model.init_from=/no/such/best.pt"], "model.init_from: no such file"),
        (["train.precision=fp16"], "train.precision=fp16 needs a CUDA device"),
        (
            ["train.batch_size=9", "train.grad_accum_steps=2"],
            "train.batch_size (9) must be a multiple of train.grad_accum_steps (2)",
        ),
        (["train.batch_size=40"], "fewer than one batch of 40"),
        (["data.train_options.num_video=3"], "unknown options ['num_video']"),
    ],
)
def test_bad_input_exits_with_a_message(tmp_path, tiny_yaml, capsys, overrides, message):
    code = main(["train", str(tiny_yaml()), "--output", str(tmp_path / "run"), "--set", *overrides])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("rsanet train: error: ") and message in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_resume_errors(tmp_path, tiny_yaml, tiny_config, capsys):
    out = tmp_path / "run"
    assert main(["train", str(tiny_yaml()), "--output", str(out), "--resume"]) == 2
    assert "nothing to resume: " in capsys.readouterr().err
    train(config_from_dict(tiny_config(train={"epochs": 2, "stop_after_epochs": 1})), out)
    other = tiny_yaml("other.yaml", model={"name": "tsm_tiny"})
    assert main(["train", str(other), "--output", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds a 'tsn_tiny' model, but the configuration trains 'tsm_tiny'" in err
    assert read_checkpoint(out / "last.pt")["epoch"] == 1  # untouched

    assert main(["eval", str(other), "--checkpoint", str(out / "last.pt")]) == 2
    assert "holds a 'tsn_tiny' model, but the configuration is for 'tsm_tiny'" in (
        capsys.readouterr().err
    )
    wrong = tiny_yaml("wrong.yaml", model={"num_classes": 5})
    assert main(["train", str(wrong), "--output", str(tmp_path / "w")]) == 2
    assert "model.num_classes is 5 but the dataset has 14 classes" in capsys.readouterr().err
    assert main(["eval", str(tiny_yaml()), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "no checkpoint file at" in capsys.readouterr().err
    assert (
        main(["eval", str(tiny_yaml()), "--checkpoint", str(out / "last.pt"), "--clips", "2"]) == 2
    )
    assert "synthmotion renders whole clips" in capsys.readouterr().err


def test_killed_run_resumes_bit_identical(tmp_path, tiny_yaml, tiny_config):
    """``rsanet train`` killed (SIGKILL) once an epoch's checkpoint exists, then ``--resume``:
    the final weights equal those of an uninterrupted run, wherever the kill landed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    changes = {"model": {"drop_rate": 0.2}, "data": {"flip_mode": "swap"}, "train": {"epochs": 4}}
    path = tiny_yaml(**changes)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "rsanet.cli", "train", str(path), "--output", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while not (out / "last.pt").exists() and process.poll() is None:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    killed_at = read_checkpoint(out / "last.pt")["epoch"]
    assert killed_at >= 1
    assert subprocess.run([*command, "--resume"], env=env, capture_output=True).returncode == 0

    reference = train(config_from_dict(tiny_config(**changes)), tmp_path / "reference")
    assert reference["epochs_completed"] == 4
    assert_same_state(
        read_checkpoint(out / "last.pt")["state_dict"],
        read_checkpoint(tmp_path / "reference" / "last.pt")["state_dict"],
    )


def test_best_weights_file_holds_the_ema_weights_eval_scores(tmp_path, tiny_config):
    """Beside best.pt: best.safetensors and best.json, the validated (EMA) weights, which
    rebuild without pickle to the network ``rsanet eval`` tests from best.pt."""
    from rsanet.engine.evaluate import load_for_eval

    config = config_from_dict(tiny_config(train={"epochs": 1, "ema": True, "ema_decay": 0.5}))
    train(config, tmp_path / "run")
    run = tmp_path / "run"
    info = json.loads((run / "best.json").read_text())
    assert info["model"] == "tsn_tiny" and info["weights"] == "ema"
    assert (info["num_frames"], info["input_size"], info["epoch"]) == (4, [32, 32], 1)
    assert len(info["classes"]) == 14 and len(info["mean"]) == 3
    shared = load_model(run / "best.safetensors")
    evaluated, _ = load_for_eval(run / "best.pt", config)
    raw = load_model(run / "best.pt", weights="raw")
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.inference_mode():
        assert torch.equal(shared(clip), evaluated(clip))
        assert not torch.equal(shared(clip), raw(clip))


def test_init_from_a_trained_model_fine_tunes_on_other_classes(tmp_path, tiny_config, capsys):
    """A tsn_tiny of 5 classes starts a run of SynthMotion's 14 from its weights: the
    backbone is copied, the classifier (another shape) is new; another network is refused."""
    import rsanet
    from rsanet.models import init_from_trained, load_model, save_checkpoint

    torch.manual_seed(1)
    source = rsanet.create_model("tsn_tiny", num_classes=5, num_frames=4)
    path = save_checkpoint(tmp_path / "trained.pt", source)
    fresh = rsanet.create_model("tsn_tiny", num_classes=14, num_frames=4)
    report = init_from_trained(fresh, path)
    assert report["kept"] == ["fc.weight", "fc.bias"]
    assert torch.equal(fresh.conv1.weight, source.conv1.weight)
    with pytest.raises(ValueError, match="holds a 'tsn_tiny', not the 'tsm_tiny'"):
        init_from_trained(rsanet.create_model("tsm_tiny", num_classes=14), path)

    out = tmp_path / "run"
    config = tiny_config(model={"name": "tsn_tiny", "init_from": str(path)}, optim={"lr": 1e-9})
    train(config_from_dict(config), out)
    assert "model.init_from" in capsys.readouterr().out
    tuned = load_model(out / "last.pt", weights="raw")
    assert torch.allclose(tuned.conv1.weight, source.conv1.weight, atol=1e-6)  # lr ~ 0
    with pytest.raises(Exception, match="both set"):
        config_from_dict(tiny_config(model={"pretrained": str(path), "init_from": str(path)}))


@pytest.mark.parametrize("metric", ["top1", "mean_class"])
def test_best_checkpoint_follows_the_chosen_validation_metric(
    tmp_path, tiny_config, monkeypatch, capsys, metric
):
    """``train.best_metric`` picks best.pt's epoch: here top-1 peaks at epoch 1 and
    mean-class at epoch 3 (scripted validations), so the two choices keep different
    epochs, and the summary line names the metric."""
    scores = iter([(60.0, 10.0), (55.0, 20.0), (50.0, 30.0)])  # (top-1, mean-class) per epoch

    def scripted_validation(self):
        top1, mean_class = next(scores)
        return {"top1": top1, "top5": 100.0, "mean_class": mean_class, "loss": 1.0}

    monkeypatch.setattr(trainer_module._Run, "_validate", scripted_validation)
    config = config_from_dict(tiny_config(train={"epochs": 3, "best_metric": metric}))
    result = train(config, tmp_path / "run")
    best = read_checkpoint(tmp_path / "run" / "best.pt")
    expected = {"top1": (1, 60.0, 60.0), "mean_class": (3, 30.0, 50.0)}[metric]
    assert (result["best_epoch"], result["best_score"], result["best_top1"]) == expected
    assert (best["epoch"], best["best_score"], best["best_top1"]) == expected
    assert result["best_metric"] == metric
    label = {"top1": "best val top-1 60.00% (epoch 1)", "mean_class": "best val mean-class"}
    assert label[metric] in capsys.readouterr().out
