"""Running a study: every run through :func:`rsanet.engine.train`, measured, recorded.

Layout of the output folder ``DIR``:

* ``DIR/study.yaml``: the study's settings as run (smoke mode included);
* ``DIR/runs/<variant>/seed<k>/``: each run's folder (``config.yaml``, ``last.pt``,
  ``metrics.jsonl``, ``train.log``);
* the records (:mod:`rsanet.study.records`): one JSON file per finished run, written
  atomically as it finishes, in the study's ``records`` folder (``DIR/records`` unless the
  study names one, e.g. ``docs/results/records`` to be committed);
* ``DIR/figures/``: the report's pictures; ``DIR/results.md``: the report.

Resuming (``resume=True``) skips runs that have a record, continues a run interrupted
mid-way from its ``last.pt`` (exactly, as ``rsanet train --resume``) and starts the rest.
With ``workers > 1`` runs train at once in separate processes (spawned), each with
``threads_per_worker`` threads. The untrained negative controls are measured, not
trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import yaml

from rsanet.atomic import atomic_write_text
from rsanet.engine.config import Config, ConfigError, config_from_dict, config_to_dict
from rsanet.study.config import RunSpec, Study
from rsanet.study.records import (
    RECORDS_VERSION,
    read_records,
    read_study,
    run_keys,
    write_record,
    write_study,
)


def machine() -> dict[str, Any]:
    """CPU model, cores, Python and torch versions of this machine."""
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "system": platform.system(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
    }


def records_folder(study: Study, output: str | Path) -> Path:
    """Where ``study`` keeps its records: its ``records`` folder, or ``DIR/records`` (always
    in smoke mode, so a smoke run never touches committed records)."""
    if study.config.records and not study.smoke:
        return Path(study.config.records)
    return Path(output) / "records"


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    epochs = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            if record.get("event") == "epoch":
                epochs.append(record)
    return epochs


def train_and_measure(
    spec: dict[str, Any], config_dict: dict[str, Any], run_dir: str, analysis_per_class: int = 4
) -> dict[str, Any]:
    """Train (or finish) one run and measure it; the run's record. An ``untrained`` run is
    measured as initialised.

    Runs in a worker process: arguments and result are plain data.
    """
    import torch

    from rsanet.study.measure import measure_model, measure_run, untrained_model
    from rsanet.study.records import source_revision

    config = config_from_dict(config_dict)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    common = {
        **spec,
        "model": config.model.name,
        "revision": source_revision(),
        "schedule": {
            "epochs": config.train.epochs,
            "lr": config.optim.lr,
            "batch_size": config.train.batch_size,
        },
        "threads": config.train.num_threads or torch.get_num_threads(),
        "data": {
            "num_frames": config.data.num_frames,
            "size": config.data.size,
            "train_videos": config.data.train_options.get("num_videos"),
            "val_videos": config.data.val_options.get("num_videos"),
            "pairs": config.data.train_options.get("pairs"),
        },
    }
    if spec["part"] == "untrained":
        began = time.perf_counter()
        from rsanet.data import SYNTHMOTION_CLASSES

        model = untrained_model(config, len(SYNTHMOTION_CLASSES))
        metrics = measure_model(config, model, analysis_per_class=analysis_per_class)
        return {
            **common,
            "metrics": metrics,
            "epochs": 0,
            "train_wall_s": 0.0,
            "measure_wall_s": time.perf_counter() - began,
        }
    from rsanet.engine.trainer import train

    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    resume = (folder / "last.pt").is_file()
    with (folder / "train.log").open("a") as log, contextlib.redirect_stdout(log):
        result = train(config, folder, resume=True if resume else None, overwrite=not resume)
        began = time.perf_counter()
        metrics = measure_run(config, folder / "last.pt", analysis_per_class=analysis_per_class)
        measure_s = time.perf_counter() - began
    history = _history(folder)
    last = history[-1] if history else {}
    return {
        **common,
        "metrics": metrics,
        "val_top1_by_epoch": [h.get("val_top1") for h in history],
        "train_top1": last.get("train_top1"),
        "clips_per_s": last.get("clips_per_s"),
        "epochs": result.get("epochs_completed"),
        "steps": result.get("steps"),
        "train_wall_s": result.get("elapsed_s"),
        "measure_wall_s": measure_s,
        "resumed": resume,
    }


def _spec_dict(run: RunSpec, study: Study) -> dict[str, Any]:
    return {
        "key": run.key,
        "variant": run.variant,
        "label": study.label(run.variant),
        "group": study.config.variants[run.variant].group,
        "order_blind": study.config.variants[run.variant].order_blind,
        "part": run.part,
        "value": run.value,
        "seed": run.seed,
        "options": run.options,
    }


def _check_output(records: Path, study: Study, resume: bool, output: Path) -> None:
    done = run_keys(records)
    if done and not resume:
        raise ConfigError(
            f"{records} already holds the records of {len(done)} runs: continue the study "
            "with --resume, or write new records elsewhere with --records DIR"
        )
    saved = output / "study.yaml"
    if resume and saved.is_file():
        before = yaml.safe_load(saved.read_text()) or {}
        if before.get("smoke") != study.smoke:
            raise ConfigError(
                f"{output} holds a {'smoke' if before.get('smoke') else 'full'}"
                " study; resume it in the same mode"
            )


def _save_settings(output: Path, study: Study) -> None:
    settings = {
        "smoke": study.smoke,
        "study": dataclasses.asdict(study.config),
        "base": config_to_dict(study.base_config()),
    }
    atomic_write_text(output / "study.yaml", yaml.safe_dump(settings, sort_keys=False))


def _line(done: int, total: int, record: dict[str, Any]) -> str:
    m = record["metrics"]
    return (
        f"[{done}/{total}] {record['key']}: top-1 {m['top1']:.1f}% pair "
        f"{m['pair_accuracy']:.1f}% reversed {m['reversed_top1']:.1f}% swap "
        f"{m['swap_rate']:.0f}% | {m['mparams']:.2f}M {m['gflops']:.3f} GFLOPs | "
        f"{record['train_wall_s']:.0f}s"
    )


def run_study(
    study: Study,
    output: str | Path,
    *,
    records: str | Path | None = None,
    resume: bool = False,
    report: bool = True,
    echo: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train and measure every run of ``study`` into ``output``, record each run in the
    records folder (``records``, default :func:`records_folder`), keep the kernel-picture
    data, and (``report``) write the report. Returns what :func:`read_records` reads."""
    output = Path(output)
    records = Path(records) if records is not None else records_folder(study, output)
    _check_output(records, study, resume, output)
    output.mkdir(parents=True, exist_ok=True)
    _save_settings(output, study)
    say = echo or (lambda _text: None)
    before = read_study(records)
    runs = study.runs()
    settings: dict[str, Any] = {
        "version": RECORDS_VERSION,
        "name": study.config.name,
        "smoke": study.smoke,
        "machine": machine(),
        "workers": study.workers,
        "seeds": study.seeds,
        "base": config_to_dict(study.base_config()),
        "variants": study.variant_names,
        "families": {
            name: list(study.config.variants[name].set)
            for name in study.variant_names
            if study.config.variants[name].set
        },
        "ablations": {n: dataclasses.asdict(a) for n, a in study.ablations().items()},
        "reference_variant": study.config.kernels.variant or None,
        "analysis_clips_per_class": study.config.controls.analysis_clips_per_class,
        "planned": [run.key for run in runs],
        "study_wall_s": float(before.get("study_wall_s", 0.0)) if resume else 0.0,
        "kernels": before.get("kernels") if resume else None,
    }
    write_study(records, settings)
    started = time.perf_counter()
    wall_before = settings["study_wall_s"]
    done = run_keys(records)
    pending = [run for run in runs if run.key not in done]
    say(
        f"rsanet study: {study.config.name}{' (smoke)' if study.smoke else ''}: {len(runs)} "
        f"runs, {len(runs) - len(pending)} done, {study.workers} at a time -> {output} "
        f"(records in {records})"
    )
    finished = len(runs) - len(pending)

    def finish(record: dict[str, Any]) -> None:
        nonlocal finished
        write_record(records, record)
        finished += 1
        settings["study_wall_s"] = wall_before + time.perf_counter() - started
        write_study(records, settings)
        say(_line(finished, len(runs), record))

    per_class = study.config.controls.analysis_clips_per_class
    jobs = [
        (
            _spec_dict(run, study),
            config_to_dict(study.run_config(run)),
            str(output / "runs" / run.key),
            per_class,
        )
        for run in _schedule(pending, study.seeds)
    ]

    def failed(key: str, error: BaseException) -> None:
        say(f"rsanet study: {key} failed: {error} (the study goes on; --resume retries it)")

    if study.workers == 1:
        for job in jobs:
            try:
                record = train_and_measure(*job)
            except Exception as error:  # noqa: BLE001 - one bad run must not stop the study
                failed(job[0]["key"], error)
            else:
                finish(record)
    elif jobs:
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(study.workers, mp_context=context)
        try:
            futures = {pool.submit(train_and_measure, *job): job[0]["key"] for job in jobs}
            for future in as_completed(futures):
                error = future.exception()
                if error is not None:
                    failed(futures[future], error)
                else:
                    finish(future.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    if settings["kernels"] is None:
        settings["kernels"] = _kernels(study, output, run_keys(records))
    settings["study_wall_s"] = wall_before + time.perf_counter() - started
    write_study(records, settings)
    if report:
        from rsanet.study.report import write_report

        page = None if study.smoke else study.config.page
        for path in write_report(records, output, page=page, notes=study.notes()):
            say(f"wrote {path}")
    return read_records(records)


def _schedule(runs: list[RunSpec], seeds: list[int]) -> list[RunSpec]:
    """Every variant's first seed, then the ablations, then the other seeds: a study cut
    short still has each variant and ablation value once."""

    def rank(run: RunSpec) -> float:
        order = seeds.index(run.seed) if run.seed in seeds else len(seeds)
        return order + (0.5 if run.part != "comparison" else 0.0)

    return sorted(runs, key=rank)


def _kernels(study: Study, output: Path, done: set[str]) -> dict[str, Any] | None:
    """The kernel-picture data of the configured RSA run, if it finished."""
    from rsanet.study.measure import kernel_pictures

    k = study.config.kernels
    variant = k.variant if k.variant in study.variant_names else None
    if variant is None:  # smoke mode: the first variant with an RSA layer
        variant = next(
            (v for v in study.variant_names if study.config.variants[v].group == "rsa"), None
        )
    if variant is None:
        return None
    seed = k.seed if k.seed in study.seeds else study.seeds[0]
    key = f"{variant}/seed{seed}"
    run_dir = output / "runs" / key
    if key not in done or not (run_dir / "last.pt").is_file():
        return None
    config: Config = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    summary = kernel_pictures(config, run_dir / "last.pt", video=k.video, head=k.head)
    summary["run"] = key
    return summary
