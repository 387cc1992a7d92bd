"""Running a study: every run through :func:`rsanet.engine.train`, measured, recorded.

Layout of the output folder ``DIR``:

* ``DIR/study.yaml``: the study's settings as run (smoke mode included);
* ``DIR/runs/<variant>/seed<k>/``: each run's folder (``config.yaml``, ``last.pt``,
  ``metrics.jsonl``, ``train.log``);
* ``DIR/results.json``: one record per finished run, rewritten atomically after each;
* ``DIR/figures/``: the report's pictures; ``DIR/results.md``: the report.

Resuming (``resume=True``) skips runs that have a record, continues a run interrupted
mid-way from its ``last.pt`` (exactly, as ``rsanet train --resume``) and starts the rest.
With ``workers > 1`` runs train at once in separate processes (spawned), each with
``threads_per_worker`` threads.
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from rsanet.atomic import atomic_write_text
from rsanet.engine.config import Config, ConfigError, config_from_dict, config_to_dict
from rsanet.study.config import RunSpec, Study

RESULTS_VERSION = 1


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


def read_results(output: str | Path) -> dict[str, Any]:
    """``DIR/results.json`` (an empty record set if there is none yet)."""
    path = Path(output) / "results.json"
    if not path.is_file():
        return {"version": RESULTS_VERSION, "runs": {}}
    return json.loads(path.read_text())


def write_results(output: str | Path, results: dict[str, Any]) -> Path:
    """Write ``DIR/results.json`` atomically."""
    return atomic_write_text(
        Path(output) / "results.json", json.dumps(results, indent=1, sort_keys=False) + "\n"
    )


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
    spec: dict[str, Any], config_dict: dict[str, Any], run_dir: str
) -> dict[str, Any]:
    """Train (or finish) one run and measure it; the record for ``results.json``.

    Runs in a worker process: arguments and result are plain data.
    """
    import torch

    from rsanet.engine.trainer import train
    from rsanet.study.measure import measure_run

    config = config_from_dict(config_dict)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    resume = (folder / "last.pt").is_file()
    with (folder / "train.log").open("a") as log, contextlib.redirect_stdout(log):
        result = train(config, folder, resume=True if resume else None, overwrite=not resume)
        began = time.perf_counter()
        metrics = measure_run(config, folder / "last.pt")
        measure_s = time.perf_counter() - began
    history = _history(folder)
    last = history[-1] if history else {}
    return {
        **spec,
        "model": config.model.name,
        "metrics": metrics,
        "val_top1_by_epoch": [h.get("val_top1") for h in history],
        "best_val_top1": result.get("best_top1"),
        "train_top1": last.get("train_top1"),
        "clips_per_s": last.get("clips_per_s"),
        "epochs": result.get("epochs_completed"),
        "steps": result.get("steps"),
        "train_wall_s": result.get("elapsed_s"),
        "measure_wall_s": measure_s,
        "resumed": resume,
        "threads": config.train.num_threads or torch.get_num_threads(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _spec_dict(run: RunSpec, study: Study) -> dict[str, Any]:
    return {
        "key": run.key,
        "variant": run.variant,
        "label": study.label(run.variant),
        "group": study.config.variants[run.variant].group,
        "part": run.part,
        "value": run.value,
        "seed": run.seed,
        "options": run.options,
    }


def _check_output(output: Path, study: Study, resume: bool) -> None:
    saved = output / "study.yaml"
    if (output / "results.json").exists() and not resume:
        raise ConfigError(
            f"{output} already holds a study (results.json): continue it with "
            "--resume, or choose another --output"
        )
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
    resume: bool = False,
    report: bool = True,
    echo: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train and measure every run of ``study`` into ``output``, draw the kernel pictures,
    and (``report``) write the report. Returns the content of ``results.json``."""
    output = Path(output)
    _check_output(output, study, resume)
    output.mkdir(parents=True, exist_ok=True)
    _save_settings(output, study)
    say = echo or (lambda _text: None)
    results = read_results(output)
    results.update(
        {
            "name": study.config.name,
            "smoke": study.smoke,
            "machine": machine(),
            "workers": study.workers,
            "seeds": study.seeds,
            "base": config_to_dict(study.base_config()),
            "variants": study.variant_names,
            "ablations": {n: dataclasses.asdict(a) for n, a in study.ablations().items()},
            "reference_variant": study.config.kernels.variant or None,
        }
    )
    started = time.perf_counter()
    wall_before = float(results.get("study_wall_s", 0.0))

    runs = study.runs()
    results["planned"] = [run.key for run in runs]
    pending = [run for run in runs if run.key not in results["runs"]]
    say(
        f"rsanet study: {study.config.name}{' (smoke)' if study.smoke else ''}: {len(runs)} "
        f"runs, {len(runs) - len(pending)} done, {study.workers} at a time -> {output}"
    )

    def finish(record: dict[str, Any]) -> None:
        results["runs"][record["key"]] = record
        results["study_wall_s"] = wall_before + time.perf_counter() - started
        write_results(output, results)
        say(_line(len(results["runs"]), len(runs), record))

    jobs = [
        (
            _spec_dict(run, study),
            config_to_dict(study.run_config(run)),
            str(output / "runs" / run.key),
        )
        for run in _schedule(pending, study.seeds)
    ]

    def failed(key: str, error: BaseException) -> None:
        results.setdefault("failed", {})[key] = f"{type(error).__name__}: {error}"
        write_results(output, results)
        say(f"rsanet study: {key} failed: {error} (recorded; the study goes on)")

    results.pop("failed", None)
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

    results["kernels"] = _kernels(study, output, results)
    results["study_wall_s"] = wall_before + time.perf_counter() - started
    results["completed"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_results(output, results)
    if report:
        from rsanet.study.report import write_report

        for path in write_report(output, page=None if study.smoke else study.config.page):
            say(f"wrote {path}")
    return results


def _schedule(runs: list[RunSpec], seeds: list[int]) -> list[RunSpec]:
    """Every variant's first seed, then the ablations, then the other seeds: a study cut
    short still has each variant and ablation value once."""

    def rank(run: RunSpec) -> float:
        order = seeds.index(run.seed) if run.seed in seeds else len(seeds)
        return order + (0.5 if run.part != "comparison" else 0.0)

    return sorted(runs, key=rank)


def _kernels(study: Study, output: Path, results: dict[str, Any]) -> dict[str, Any] | None:
    """Kernel pictures of the configured RSA run, if it finished."""
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
    if key not in results["runs"]:
        return None
    run_dir = output / "runs" / key
    config: Config = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    summary = kernel_pictures(
        config, run_dir / "last.pt", output / "figures" / "kernels", video=k.video, head=k.head
    )
    summary["run"] = key
    return summary
