"""The paper's analysis on SynthMotion: a study of transforms, kernel/context forms and
ablations, run through the training engine, measured (accuracy, pair accuracy, the
reversal test, parameters, GFLOPs, wall time) and reported as JSON, pictures and Markdown.

>>> from rsanet.study import load_study, run_study
>>> study = load_study("configs/study_synthmotion.yaml", smoke=True)
>>> results = run_study(study, "/tmp/smoke")                    # doctest: +SKIP
"""

from rsanet.study.config import (
    AblationConfig,
    KernelPictureConfig,
    RunSpec,
    SmokeConfig,
    Study,
    StudyConfig,
    VariantConfig,
    load_study,
    study_from_dict,
)
from rsanet.study.measure import kernel_pictures, measure_run, model_cost, reversal_metrics
from rsanet.study.report import render_markdown, write_report
from rsanet.study.run import machine, read_results, run_study

__all__ = [
    "AblationConfig",
    "KernelPictureConfig",
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
    "read_results",
    "render_markdown",
    "reversal_metrics",
    "run_study",
    "study_from_dict",
    "write_report",
]
