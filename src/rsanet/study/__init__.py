"""The paper's analysis on SynthMotion: a study of transforms, kernel/context forms and
ablations, run through the training engine, measured (accuracy, pair accuracy, the
reversal test and direction indices, parameters, GFLOPs, wall time), recorded one JSON file
per run, and reported with statistics over seeds as pictures and Markdown.

>>> from rsanet.study import load_study, run_study
>>> study = load_study("configs/study_synthmotion.yaml", smoke=True)
>>> results = run_study(study, "/tmp/smoke")                    # doctest: +SKIP
"""

from rsanet.study.config import (
    AblationConfig,
    ControlsConfig,
    KernelPictureConfig,
    PairProbesConfig,
    RunSpec,
    SmokeConfig,
    Study,
    StudyConfig,
    VariantConfig,
    load_study,
    study_from_dict,
)
from rsanet.study.measure import (
    direction_indices,
    kernel_pictures,
    measure_model,
    measure_run,
    model_cost,
    reversal_metrics,
)
from rsanet.study.records import read_records, source_revision
from rsanet.study.report import render_markdown, write_report
from rsanet.study.run import machine, records_folder, run_study

__all__ = [
    "AblationConfig",
    "ControlsConfig",
    "direction_indices",
    "measure_model",
    "read_records",
    "records_folder",
    "source_revision",
    "KernelPictureConfig",
    "PairProbesConfig",
    "RunSpec",
    "SmokeConfig",
    "Study",
    "StudyConfig",
    "VariantConfig",
    "kernel_pictures",
    "load_study",
    "machine",
    "measure_run",
    "model_cost",
    "render_markdown",
    "reversal_metrics",
    "run_study",
    "study_from_dict",
    "write_report",
]
