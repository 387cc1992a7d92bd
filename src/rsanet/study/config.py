"""The study's YAML file: a base run configuration, the variants, seeds and ablation grids.

A study expands into runs (:class:`RunSpec`): every variant with every seed of the
comparison, then every value of every ablation (a variant with one model option changed)
with the ablation's seeds. ``smoke`` settings shrink the same study to a test that runs in
seconds.

>>> study = load_study("configs/study_synthmotion.yaml")
>>> [run.key for run in study.runs()][:2]
['tsn/seed0', 'tsn/seed1']
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rsanet.data.synthmotion import NUM_PAIRS
from rsanet.engine.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    dataclass_from_dict,
    load_config,
)


@dataclass
class VariantConfig:
    """One network of the comparison: a registered model and constructor overrides."""

    model: str
    #: model.options of the run (e.g. ``transform_options: {rsa: {...}}``)
    options: dict[str, Any] = field(default_factory=dict)
    #: name in tables and plots (default: the variant's key)
    label: str | None = None
    #: "baseline" or "rsa" (the nine kernel/context combinations)
    group: str = "baseline"
    #: ``KEY=VALUE`` run settings of this family (its budget, schedule or learning rate),
    #: applied over the study's; its ablations inherit them
    set: list[str] = field(default_factory=list)
    #: the network cannot see the order of frames (TSN): its identical answers to a clip
    #: and the clip reversed are reported as "by construction", not as a finding
    order_blind: bool = False
    #: what the page says of this family's budget (why it got the epochs it got, or why it
    #: does not learn within the study's budget)
    note: str = ""


@dataclass
class AblationConfig:
    """One model option of a variant swept over values (the paper's Tables 4b-4d)."""

    #: the variant whose options are changed
    variant: str
    #: dotted key inside model.options, e.g. ``transform_options.rsa.latent_channels``
    key: str
    values: list[Any] = field(default_factory=list)
    #: axis title in plots
    label: str = ""
    #: what the variant itself uses for this option (a point of the curve, e.g. "dk")
    default_label: str = "default"
    #: seeds of each value (default: the study's seeds, so every value has a spread)
    seeds: list[int] | None = None
    #: the paper's table to compare with (a key of :data:`rsanet.study.paper.ABLATIONS`)
    paper_table: str | None = None


@dataclass
class KernelPictureConfig:
    """Which trained run the kernel pictures come from, and the query."""

    variant: str = ""
    seed: int = 0
    #: SynthMotion validation video (its class shows in the picture's title)
    video: int = 2
    head: int = 0


@dataclass
class ControlsConfig:
    """Negative controls: networks measured exactly as initialised, without training."""

    #: variants whose untrained networks are measured (with the study's seeds)
    untrained: list[str] = field(default_factory=list)
    #: validation clips per class that the direction indices are computed on
    analysis_clips_per_class: int = 4


@dataclass
class PairProbesConfig:
    """Can each pair of classes be learned at all? One network trained on that pair alone
    (two classes), with the data and budget of ``set``: a pair that no network learns
    measures nothing."""

    #: the variant trained on each pair ("": no probes)
    variant: str = ""
    #: pair numbers probed (0: moving left / right, 2: rotating, ...; empty: every pair)
    pairs: list[int] = field(default_factory=list)
    #: ``KEY=VALUE`` run settings of the probes, over the study's and the variant's
    set: list[str] = field(default_factory=list)
    #: seeds of each probe (default: the study's)
    seeds: list[int] | None = None
    #: what the page says of the probes' setting
    note: str = ""


@dataclass
class SmokeConfig:
    """The same study shrunk for a test: fewer variants, seeds, values, tiny data."""

    set: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    #: ablation name -> values kept (ablations not named are dropped)
    ablations: dict[str, list[Any]] = field(default_factory=dict)
    #: pairs probed (none unless named)
    pair_probes: list[int] = field(default_factory=list)
    workers: int = 1


@dataclass
class StudyConfig:
    """A whole study."""

    name: str = "study"
    #: YAML run configuration the runs start from (relative to the study file)
    base: str | None = None
    #: inline run settings merged over ``base`` (nested sections, as in a run YAML)
    run: dict[str, Any] = field(default_factory=dict)
    #: ``KEY=VALUE`` overrides applied last (as ``rsanet train --set``)
    set: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: dict[str, VariantConfig] = field(default_factory=dict)
    ablations: dict[str, AblationConfig] = field(default_factory=dict)
    kernels: KernelPictureConfig = field(default_factory=KernelPictureConfig)
    #: runs trained at once, each in its own process with threads_per_worker threads
    workers: int = 1
    threads_per_worker: int | None = None
    #: where the report's page and pictures go (relative to the working directory);
    #: None: only into the study's output folder
    page: str | None = None
    #: folder of the raw records the page is written from (relative to the working
    #: directory); None: ``DIR/records`` of the study's output folder
    records: str | None = None
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    pair_probes: PairProbesConfig = field(default_factory=PairProbesConfig)
    smoke: SmokeConfig = field(default_factory=SmokeConfig)
    #: folder of the study file, for resolving ``base``
    root: str = "."


@dataclass(frozen=True)
class RunSpec:
    """One training run: ``key`` is its folder below ``DIR/runs``."""

    key: str
    variant: str
    seed: int
    model: str
    options: dict[str, Any]
    #: "comparison", "untrained" (a negative control, not trained), "pair_probe" (trained
    #: on one pair alone) or the ablation's name
    part: str = "comparison"
    #: the ablated option's value (ablation runs), the pair number (pair probes)
    value: Any = None


def _set_dotted(options: dict[str, Any], key: str, value: Any) -> None:
    node = options
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def value_name(value: Any) -> str:
    """A value as a folder-friendly word: ``[3, 5, 5]`` -> ``3x5x5``."""
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)


class Study:
    """A loaded study: its settings, its base run configuration and its runs."""

    def __init__(self, config: StudyConfig, *, smoke: bool = False) -> None:
        self.config = config
        self.smoke = smoke
        self._check()

    # -- construction -------------------------------------------------------------------

    def _check(self) -> None:
        c = self.config
        if not c.variants:
            raise ConfigError("a study needs at least one variant")
        for name, ablation in c.ablations.items():
            if ablation.variant not in c.variants:
                raise ConfigError(f"ablations.{name}.variant: no variant {ablation.variant!r}")
        if self.smoke:
            for name in c.smoke.variants:
                if name not in c.variants:
                    raise ConfigError(f"smoke.variants: no variant {name!r}")
            for name in c.smoke.ablations:
                if name not in c.ablations:
                    raise ConfigError(f"smoke.ablations: no ablation {name!r}")
        if c.kernels.variant and c.kernels.variant not in c.variants:
            raise ConfigError(f"kernels.variant: no variant {c.kernels.variant!r}")
        for name in c.controls.untrained:
            if name not in c.variants:
                raise ConfigError(f"controls.untrained: no variant {name!r}")
        probes = c.pair_probes
        if probes.variant and probes.variant not in c.variants:
            raise ConfigError(f"pair_probes.variant: no variant {probes.variant!r}")
        if any(not 0 <= int(p) < NUM_PAIRS for p in [*probes.pairs, *c.smoke.pair_probes]):
            raise ConfigError(f"pair_probes.pairs: pair numbers are 0..{NUM_PAIRS - 1}")
        self.base_config()  # fails early on a bad base

    def base_config(self) -> Config:
        """The run configuration every run starts from (smoke settings applied)."""
        c = self.config
        values: dict[str, Any] = {}
        if c.base:
            path = Path(c.base)
            if not path.is_absolute():
                path = Path(c.root) / path
            values = dataclasses.asdict(load_config(path))
        for section, settings in c.run.items():
            if not isinstance(settings, Mapping):
                raise ConfigError(f"run.{section}: expected a mapping of keys")
            values.setdefault(section, {}).update(copy.deepcopy(dict(settings)))
        overrides = list(c.set) + (list(c.smoke.set) if self.smoke else [])
        apply_overrides(values, overrides)
        return config_from_dict(values)

    # -- what runs ----------------------------------------------------------------------

    @property
    def seeds(self) -> list[int]:
        return list(self.config.smoke.seeds if self.smoke else self.config.seeds)

    @property
    def variant_names(self) -> list[str]:
        names = list(self.config.variants)
        if self.smoke and self.config.smoke.variants:
            names = [n for n in names if n in self.config.smoke.variants]
        return names

    @property
    def workers(self) -> int:
        return max(1, self.config.smoke.workers if self.smoke else self.config.workers)

    def ablations(self) -> dict[str, AblationConfig]:
        """The ablations of this mode (smoke: those named, with their values)."""
        out = {}
        for name, ablation in self.config.ablations.items():
            if self.smoke:
                if name not in self.config.smoke.ablations:
                    continue
                ablation = dataclasses.replace(
                    ablation, values=list(self.config.smoke.ablations[name]), seeds=self.seeds[:1]
                )
            out[name] = ablation
        return out

    def probed_pairs(self) -> list[int]:
        """The pairs trained alone in this mode (smoke: those named)."""
        probes = self.config.pair_probes
        if not probes.variant:
            return []
        if self.smoke:
            return [int(p) for p in self.config.smoke.pair_probes]
        return [int(p) for p in probes.pairs] or list(range(NUM_PAIRS))

    def notes(self) -> dict[str, str]:
        """What the study file says of each family's budget (variant -> text) and of the
        pair probes (``pair_probes``)."""
        notes = {n: v.note for n, v in self.config.variants.items() if v.note}
        if self.config.pair_probes.note:
            notes["pair_probes"] = self.config.pair_probes.note
        return notes

    def label(self, variant: str) -> str:
        return self.config.variants[variant].label or variant

    def runs(self) -> list[RunSpec]:
        """Every run of the study, comparison first."""
        runs = []
        for name in self.variant_names:
            v = self.config.variants[name]
            for seed in self.seeds:
                runs.append(
                    RunSpec(f"{name}/seed{seed}", name, seed, v.model, copy.deepcopy(v.options))
                )
        for name in self.config.controls.untrained:
            if name not in self.variant_names:
                continue
            v = self.config.variants[name]
            for seed in self.seeds:
                runs.append(
                    RunSpec(
                        f"untrained_{name}/seed{seed}",
                        name,
                        seed,
                        v.model,
                        copy.deepcopy(v.options),
                        part="untrained",
                    )
                )
        probes = self.config.pair_probes
        for pair in self.probed_pairs():
            v = self.config.variants[probes.variant]
            seeds = self.seeds[:1] if self.smoke else (probes.seeds or self.seeds)
            for seed in seeds:
                runs.append(
                    RunSpec(
                        f"pair{pair}_{probes.variant}/seed{seed}",
                        probes.variant,
                        seed,
                        v.model,
                        copy.deepcopy(v.options),
                        part="pair_probe",
                        value=pair,
                    )
                )
        for ablation_name, a in self.ablations().items():
            v = self.config.variants[a.variant]
            for value in a.values:
                options = copy.deepcopy(v.options)
                _set_dotted(options, a.key, value)
                for seed in a.seeds or self.seeds:
                    key = f"{ablation_name}_{value_name(value)}/seed{seed}"
                    runs.append(
                        RunSpec(
                            key, a.variant, seed, v.model, options, part=ablation_name, value=value
                        )
                    )
        return runs

    def run_config(self, run: RunSpec) -> Config:
        """The run configuration of ``run``."""
        values = dataclasses.asdict(self.base_config())
        family = list(self.config.variants[run.variant].set)
        if run.part == "pair_probe":
            family += list(self.config.pair_probes.set)
        if family:  # the smoke settings still shrink every family
            apply_overrides(values, family + (list(self.config.smoke.set) if self.smoke else []))
            values = dataclasses.asdict(config_from_dict(values))
        if run.part == "pair_probe":
            for split in ("train_options", "val_options"):
                values["data"][split]["pairs"] = [int(run.value)]
        values["model"]["name"] = run.model
        values["model"]["options"] = copy.deepcopy(run.options)
        values["train"]["seed"] = run.seed
        if self.workers > 1 or self.config.threads_per_worker:
            values["train"]["num_threads"] = self.config.threads_per_worker or 1
        values["log"]["tensorboard"] = False
        values["log"]["progress"] = "never"
        return config_from_dict(values)


def study_from_dict(
    values: Mapping[str, Any], *, root: str | Path = ".", smoke: bool = False
) -> Study:
    """A :class:`Study` from nested dicts (the YAML's content)."""
    values = dict(values)
    values.setdefault("root", str(root))
    typed = {"variants": VariantConfig, "ablations": AblationConfig}
    maps = {}
    for key, cls in typed.items():
        entries = values.pop(key, None) or {}
        if not isinstance(entries, Mapping):
            raise ConfigError(f"study.{key}: expected a mapping of names")
        maps[key] = {
            str(name): dataclass_from_dict(cls, entry or {}, f"study.{key}.{name}.")
            for name, entry in entries.items()
        }
    config = dataclass_from_dict(StudyConfig, values, "study.")
    config.variants, config.ablations = maps["variants"], maps["ablations"]
    return Study(config, smoke=smoke)


def load_study(path: str | Path, *, smoke: bool = False, overrides: Sequence[str] = ()) -> Study:
    """Read a study YAML file; ``overrides`` (``KEY=VALUE``) are added to its ``set``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no study file at {str(path)!r}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(values).__name__}")
    values["set"] = list(values.get("set") or []) + list(overrides)
    return study_from_dict(values, root=path.parent, smoke=smoke)
