"""``--precision`` and its int8 calibration options, shared by predict, serve, eval and
export (the clips they describe: :mod:`rsanet.engine.calibration`)."""

from __future__ import annotations

import argparse

from rsanet.cli._args import count
from rsanet.engine.calibration import CALIBRATION_CLIPS
from rsanet.inference.precision import PRECISIONS


def add_precision_options(
    parser: argparse.ArgumentParser,
    *,
    half: bool = False,
    choices: tuple[str, ...] = PRECISIONS,
    help: str | None = None,
) -> None:
    """``--precision`` (``args.precision``, None unless given: see :func:`chosen_precision`)
    among ``choices``, ``--calibration CONFIG``, ``--calibration-clips K`` and
    ``--float-from BLOCK``; with
    ``half``, ``--half`` too (fp16 on a CUDA GPU)."""
    parser.add_argument(
        "--precision",
        choices=choices,
        default=None,
        help=help
        or "numeric precision of inference: fp32 (default); bf16 (autocast, CPUs with "
        "bfloat16 instructions or GPUs); fp16 (CUDA GPUs); int8 (the ResNet family on the "
        "CPU, ONNX Runtime's VNNI kernels, calibrated on training clips). Falls back to "
        "fp32 with a warning on a CPU without the instructions",
    )
    if half:
        parser.add_argument(
            "--half", action="store_true", help="fp16 on a CUDA GPU (= --precision fp16)"
        )
    parser.add_argument(
        "--calibration",
        metavar="CONFIG",
        help="int8: a YAML config whose training split calibrates the activations "
        "(default: the checkpoint's own training config)",
    )
    parser.add_argument(
        "--calibration-clips",
        type=count(1, 4096),
        metavar="K",
        help=f"int8: clips the activations are calibrated on (default {CALIBRATION_CLIPS}; "
        "serve: the config's calibration_clips)",
    )
    parser.add_argument(
        "--float-from",
        metavar="BLOCK",
        help="int8: keep this block and everything after it in float, e.g. layer4 (a "
        "stage), layer3.5 (a block) or fc (the classifier): slower, but it keeps the "
        "decisions that all-int8 changes on some networks (rsanet eval --precision int8 "
        "measures it)",
    )


def chosen_precision(args: argparse.Namespace, default: str = "fp32") -> str:
    """``--precision``, ``--half`` (fp16) or ``default``; CLIError when both are given and
    differ, or for ``--float-from`` without int8."""
    from rsanet.cli import CLIError

    half = getattr(args, "half", False)
    if half and args.precision not in (None, "fp16"):
        raise CLIError(f"--half is fp16: it contradicts --precision {args.precision}")
    precision = "fp16" if half else args.precision or default
    if getattr(args, "float_from", None) and precision != "int8":
        raise CLIError(
            f"--float-from keeps the last layers of an int8 network in float: it needs "
            f"--precision int8, not {precision}"
        )
    return precision
