"""Typed configuration: YAML, --set overrides, type and range errors, the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rsanet.engine.config import (
    Config,
    ConfigError,
    config_to_dict,
    load_config,
    override_config,
    save_config,
    valid_keys,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_are_the_paper_recipe():
    c = Config()
    assert (c.optim.name, c.optim.lr, c.optim.momentum, c.optim.nesterov) == (
        "sgd",
        0.02,
        0.9,
        True,
    )
    assert (c.optim.weight_decay, c.optim.label_smoothing, c.optim.clip_grad_norm) == (
        5e-4,
        0.1,
        100.0,
    )
    assert (c.optim.schedule, c.optim.warmup_epochs) == ("cosine", 5.0)
    assert (c.train.epochs, c.train.batch_size) == (50, 64)


def test_yaml_round_trip(tmp_path):
    config = override_config(
        Config(),
        ["optim.lr=0.5", "data.options={num_videos: 3}", "model.options={widths: [8, 16, 32, 64]}"],
    )
    path = save_config(config, tmp_path / "c.yaml")
    again = load_config(path)
    assert again == config
    assert again.model.options == {"widths": [8, 16, 32, 64]}


def test_overrides_are_typed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n")  # YAML 1.1 reads 1e-3 as a string
    config = load_config(
        path,
        [
            "data.num_frames=16",
            "optim.weight_decay=0",
            "train.ema=true",
            "model.pretrained=null",
            "data.train_options.num_videos=10",
            "optim.betas=[0.8, 0.9]",
            "model.name=001",
        ],
    )
    assert config.optim.lr == 1e-3 and isinstance(config.optim.lr, float)
    assert config.data.num_frames == 16 and isinstance(config.data.num_frames, int)
    assert config.optim.weight_decay == 0.0 and isinstance(config.optim.weight_decay, float)
    assert config.train.ema is True
    assert config.model.pretrained is None
    assert config.data.train_options == {"num_videos": 10}
    assert config.optim.betas == [0.8, 0.9]
    assert config.model.name == "001"  # a string field keeps the text as typed


def test_later_overrides_win():
    config = load_config(None, ["optim.lr=0.1", "optim.lr=0.2"])
    assert config.optim.lr == 0.2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", "unknown key 'optim.lrr'; did you mean 'optim.lr'?"),
        ("trian.epochs=3", "unknown key 'trian'; did you mean 'train'?"),
        ("data.num_frame=16", "unknown key 'data.num_frame'; did you mean 'data.num_frames'?"),
        ("train.epochs=abc", "train.epochs: expected int, got str 'abc'"),
        ("train.epochs=2.5", "train.epochs: expected int, got float 2.5"),
        ("train.epochs=true", "train.epochs: expected int, got bool True"),
        ("optim.lr=fast", "optim.lr: expected float, got str 'fast'"),
        ("train.ema=1", "train.ema: expected bool, got int 1"),
        ("optim.betas=0.9", "optim.betas: expected list[float], got float 0.9"),
        ("optim.name=sdg", "optim.name must be one of sgd, adamw, got 'sdg' (did you mean 'sgd'?)"),
        ("eval.num_crops=2", "eval.num_crops must be one of 1, 3, got 2"),
        ("optim=3", "optim is a section"),
        ("optim.lr.x=3", "optim.lr is a float, it has no key 'x'"),
        ("noequals", "--set expects KEY=VALUE"),
        ("optim.warmup_epochs=60", "optim.warmup_epochs (60.0) exceeds train.epochs (50)"),
        ("train.batch_size=10", None),
        ("train.stop_after_epochs=0", "train.stop_after_epochs must be in 1..train.epochs"),
        ("optim.lr=-1", "optim.lr must be > 0, got -1.0"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    if message is None:  # valid on its own
        load_config(None, [override])
        return
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_accumulation_must_divide_the_batch():
    with pytest.raises(
        ConfigError,
        match=r"train.batch_size \(10\) must be a multiple of "
        r"train.grad_accum_steps \(4\)",
    ):
        load_config(None, ["train.batch_size=10", "train.grad_accum_steps=4"])


def test_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr'; did you mean 'optim.lr'\?"):
        load_config(path)
    path.write_text("optim: 3\n")
    with pytest.raises(ConfigError, match="optim: expected OptimConfig"):
        load_config(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(path)
    path.write_text("optim: {lr: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no configuration file at 'nowhere.yaml'"):
        load_config("nowhere.yaml")


def test_base_files_are_read_first_and_merged_under(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "recipe.yaml").write_text(
        "model: {name: tsm_tiny, options: {a: 1, b: 2}}\n"
        "data: {format: aihub-cctv, num_frames: 8, size: 64,\n"
        "       untrimmed: {window_s: 2.0, val_fraction: 0.1}}\n"
        "train: {epochs: 9}\n"
        "optim: {warmup_epochs: 1}\n"
    )
    (tmp_path / "fast.yaml").write_text("train: {precision: bf16, epochs: 4}\n")
    variant = tmp_path / "variant.yaml"
    variant.write_text(
        "_base_: [shared/recipe.yaml, fast.yaml]  # relative to this file\n"
        "model: {options: {b: 3}}\n"
        "data: {num_frames: 16, untrimmed: {val_fraction: 0.025}}\n"
    )
    c = load_config(variant, ["train.epochs=5"])
    assert c.model.name == "tsm_tiny" and c.model.options == {"a": 1, "b": 3}
    assert (c.data.num_frames, c.data.size) == (16, 64)
    assert (c.data.untrimmed.window_s, c.data.untrimmed.val_fraction) == (2.0, 0.025)
    assert (c.train.precision, c.train.epochs) == ("bf16", 5)  # later base, then --set
    (tmp_path / "one.yaml").write_text("_base_: fast.yaml\noptim: {warmup_epochs: 0}\n")
    assert load_config(tmp_path / "one.yaml").train.epochs == 4


def test_bad_base_files_name_the_file(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("_base_: b.yaml\n")
    b.write_text("_base_: a.yaml\ntrain: {epochs: 1}\n")
    with pytest.raises(ConfigError, match=r"a\.yaml: its _base_ files name each other in a loop"):
        load_config(a)
    a.write_text("_base_: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml' \(the _base_ of '.*a\.yaml'\)"):
        load_config(a)
    a.write_text("_base_: {file: b.yaml}\n")
    with pytest.raises(ConfigError, match="_base_ must be a file name or a list of them"):
        load_config(a)


def test_valid_keys_cover_every_field():
    keys = valid_keys()
    assert {"optim.lr", "data.num_frames", "train.stop_after_epochs", "log.tensorboard"} <= set(
        keys
    )
    flat = [
        f"{section}.{key}" for section, values in config_to_dict(Config()).items() for key in values
    ]
    assert set(flat) <= set(keys)


# -- the shipped configurations -----------------------------------------------------------

PAPER = sorted(CONFIGS.glob("*_rsanet_r50_*f.yaml"))
SYNTH = sorted(CONFIGS.glob("synthmotion_*.yaml"))


def test_every_benchmark_and_model_family_has_a_config():
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    for bench in ("something_v1", "something_v2", "diving48", "finegym"):
        for frames in (8, 16):
            assert f"{bench}_rsanet_r50_{frames}f.yaml" in names
    for family in ("rsanet", "tsn", "tsm", "sa", "conv3d"):
        assert f"synthmotion_{family}.yaml" in names


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_configs_load_and_build(path):
    from rsanet.models import create_model

    config = load_config(path)
    o, t = config.optim, config.train
    assert (config.model.name, config.data.size) == ("rsanet_r50", 224)
    assert config.data.num_frames == int(path.stem.rsplit("_", 1)[1].rstrip("f"))
    assert (o.name, o.lr, o.momentum, o.nesterov, o.weight_decay) == ("sgd", 0.02, 0.9, True, 5e-4)
    assert (o.schedule, o.warmup_epochs, o.label_smoothing, o.clip_grad_norm) == (
        "cosine",
        5.0,
        0.1,
        100.0,
    )
    assert (t.epochs, t.batch_size) == (50, 64)
    assert (config.model.drop_rate, config.model.drop_path_rate) == (0.3, 0.2)
    assert config.model.pretrained  # a placeholder the user sets
    classes = {"something": 174, "diving48": 48, "finegym": 99}
    num_classes = next(v for k, v in classes.items() if path.stem.startswith(k))
    model = create_model(
        config.model.name,
        num_classes=num_classes,
        num_frames=config.data.num_frames,
        drop_rate=config.model.drop_rate,
        drop_path_rate=config.model.drop_path_rate,
        **config.model.options,
    )
    assert model.fc.out_features == num_classes


@pytest.mark.parametrize("path", SYNTH, ids=lambda p: p.stem)
def test_synthmotion_configs_load_build_and_run(path):
    from rsanet.engine.loaders import build_split
    from rsanet.models import create_model

    config = load_config(path, ["data.train_options.num_videos=2", "data.val_options.num_videos=2"])
    assert config.data.format == "synthmotion"
    assert config.model.name.endswith("_tiny")
    dataset = build_split(config.data, "train", train=True, seed=config.train.seed)
    model = create_model(
        config.model.name,
        num_classes=len(dataset.classes),
        num_frames=config.data.num_frames,
        **config.model.options,
    )
    clip, label = dataset[0]
    assert clip.shape == (3, config.data.num_frames, config.data.size, config.data.size)
    with torch.no_grad():
        logits = model.eval()(clip[None])
    assert logits.shape == (1, 14)


def test_synthmotion_configs_differ_only_in_the_model():
    """Read through their ``_base_`` (``synthmotion_rsanet_k3.yaml`` sets its RSA's
    neighbourhoods on ``synthmotion_rsanet.yaml``)."""
    dicts = [config_to_dict(load_config(p)) for p in SYNTH]
    for d in dicts:
        d.pop("model")
    assert all(d == dicts[0] for d in dicts)


def test_a_setting_added_since_a_run_was_saved_differs_only_off_its_default() -> None:
    """Resuming (or comparing with) a run saved before a setting existed: the setting at its
    default is no difference; set to anything else, it is one."""
    from rsanet.engine.trainer import config_differences

    saved = config_to_dict(load_config(None))
    del saved["train"]["channels_last"]  # a run saved before the setting existed
    assert config_differences(saved, config_to_dict(load_config(None))) == []
    changed = config_to_dict(load_config(None, ["train.channels_last=true", "train.epochs=60"]))
    assert config_differences(saved, changed) == [
        "train.channels_last: None -> True",
        "train.epochs: 50 -> 60",
    ]


def test_a_window_setting_added_since_a_run_was_saved_differs_only_off_its_default() -> None:
    """The same inside ``data.untrimmed``, compared key by key: a run on recordings saved
    before the context settings existed resumes with them at their defaults."""
    from rsanet.engine.trainer import config_differences

    untrimmed = ["data.format=intervals", "data.num_frames=6", "data.untrimmed.window_s=2.0"]
    saved = config_to_dict(load_config(None, untrimmed))
    for key in ("context_frames", "context_s"):
        del saved["data"]["untrimmed"][key]
    assert config_differences(saved, config_to_dict(load_config(None, untrimmed))) == []
    changed = config_to_dict(load_config(None, [*untrimmed, "data.untrimmed.context_frames=2"]))
    assert config_differences(saved, changed) == ["data.untrimmed.context_frames: None -> 2"]
