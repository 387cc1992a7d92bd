"""``rsanet export CHECKPOINT``: ONNX or TorchScript, with a parity check against PyTorch, or
the weights-only safetensors format (tensors and a JSON description) to share a model."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rsanet.cli._args import add_weights_option
from rsanet.cli._precision import add_precision_options, chosen_precision

if TYPE_CHECKING:
    from rsanet.inference.predictor import Classifier

#: int8 parity: the largest logit difference allowed, as a fraction of the largest logit
INT8_TOLERANCE = 0.05


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX, TorchScript or safetensors",
        description=(
            "Export the model of an rsanet checkpoint for clips (1, 3, FRAMES, SIZE, SIZE) to "
            "ONNX (opset 17; --dynamic-batch: any batch N) or TorchScript (traced), or its "
            "weights to NAME.safetensors with "
            "NAME.json beside it (model, configuration, classes, input size, normalisation; "
            "loaded without pickle by rsanet.load_model and rsanet predict --checkpoint), "
            "then load the file back and print the max absolute difference of its logits "
            "from PyTorch's on a random clip (int8: on calibration clips, also as a share of "
            "the largest logit). The weights exported are those rsanet eval "
            "scores: the EMA weights when the checkpoint has them (--weights)."
        ),
    )
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="an rsanet checkpoint (or a .safetensors weights file)",
    )
    parser.add_argument("--format", choices=("onnx", "torchscript", "safetensors"), required=True)
    add_weights_option(parser, "export")
    parser.add_argument("--frames", type=int, help="clip length T (default: the model's)")
    parser.add_argument(
        "--size", type=int, help="frame height = width (default: the trained size, else 224)"
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        required=True,
        help="the file to write (safetensors: NAME.safetensors, and NAME.json beside it)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        help="parity: fail (exit 1) above this max abs difference (default 1e-3; int8: "
        f"{INT8_TOLERANCE:g} of the largest logit)",
    )
    add_precision_options(
        parser,
        choices=("fp32", "int8"),
        help="onnx: int8 quantizes the file with ONNX Runtime (static, calibrated on training "
        "clips; a ResNet without transforms: TSN, TSM). An RSANet runs int8 with rsanet "
        "predict/serve --precision int8 instead (its RSA layers stay in PyTorch)",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the parity check")
    parser.add_argument(
        "--dynamic-batch",
        action="store_true",
        help="onnx: leave the batch dimension free (N, 3, T, S, S), checked at batches 1 "
        "and 3; rsanet serve then runs the windows of all its cameras in one call",
    )
    parser.add_argument(
        "--unfold-mb",
        type=float,
        default=64,
        help="memory of one chunk of attention neighbourhoods in the exported "
        "graph, MiB (64; larger: fewer chunks, a smaller graph)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the arguments (exit 2), then export; a full disk, exhausted memory or an
    unwritable --out is one line and exit 1, a failed parity check exit 1."""
    import math
    from pathlib import Path

    from rsanet.atomic import refuse_overwrite
    from rsanet.cli import CLIError
    from rsanet.cli._faults import guarded
    from rsanet.inference import load_classifier

    if args.frames is not None and args.frames < 1:
        raise CLIError(f"--frames must be a positive integer, got {args.frames}")
    if args.size is not None and args.size < 1:
        raise CLIError(f"--size must be a positive integer, got {args.size}")
    if not (math.isfinite(args.unfold_mb) and args.unfold_mb > 0):
        raise CLIError(f"--unfold-mb must be a positive number of MiB, got {args.unfold_mb}")
    if chosen_precision(args) == "int8" and args.format != "onnx":
        raise CLIError(f"--precision int8 is for --format onnx, not {args.format}")
    if args.tolerance is not None and not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise CLIError(
            f"--tolerance must be a finite number >= 0, got {args.tolerance} (--no-check "
            "skips the parity check)"
        )
    if getattr(args, "dynamic_batch", False) and args.format != "onnx":
        raise CLIError(f"--dynamic-batch is for --format onnx, not {args.format}")
    if Path(args.out).is_dir():
        raise CLIError(f"--out {args.out!r} is a folder: give the file to write")
    outputs = [args.out]
    if args.format == "safetensors":
        from rsanet.models import weights_file_paths

        outputs = list(weights_file_paths(args.out))
        inputs = [args.checkpoint, *weights_file_paths(args.checkpoint)]
        for out in outputs:
            if Path(out).is_dir():
                raise CLIError(f"{out} is a folder: give another --out")
            refuse_overwrite(out, inputs, what="--out file")
    else:
        refuse_overwrite(args.out, [args.checkpoint], what="--out file")
    classifier = load_classifier(args.checkpoint, weights=args.weights)
    return guarded(
        "export",
        lambda: _export(args, classifier),
        memory_hint="lower --frames or --size",
    )


def export_shape(
    args: argparse.Namespace, classifier: Classifier
) -> tuple[int, int, int, int, int]:
    """The clip shape (1, 3, T, S, S) an export is made for: ``--frames`` / ``--size`` when
    given, else the model's clip length and the size it was trained at (else 224)."""
    frames = int(args.frames or classifier.num_frames)
    size = int(args.size or classifier.input_size or 224)
    return (1, 3, frames, size, size)


def _export(args: argparse.Namespace, classifier: Classifier) -> int:
    """Export the loaded checkpoint and check its parity; 1 when the check fails."""
    from rsanet.engine.calibration import checkpoint_calibration
    from rsanet.inference import export_model
    from rsanet.inference.export import context_metadata

    shape = export_shape(args, classifier)
    frames, size = shape[2], shape[3]
    if getattr(args, "dynamic_batch", False):
        shape = ("N", *shape[1:])
    print(
        f"exporting {classifier.name} ({classifier.weights} weights) for clips {shape} "
        f"to {args.out} ({args.format}) ...",
        flush=True,
    )
    calibration = None
    if chosen_precision(args) == "int8":
        calibration = checkpoint_calibration(args.calibration, args.calibration_clips)(
            classifier, size
        )
    result = export_model(
        classifier.model,
        args.out,
        args.format,
        frames=frames,
        size=size,
        metadata={
            "model": classifier.name,
            "classes": classifier.classes,
            "weights": classifier.weights,
            "mean": list(classifier.mean),
            "std": list(classifier.std),
            "full_frame": classifier.full_frame,
            **context_metadata(classifier.model),
        },
        check=not args.no_check,
        unfold_mb=args.unfold_mb,
        dynamic_batch=getattr(args, "dynamic_batch", False),
        calibration=calibration,
        float_from=args.float_from,
    )
    print(result.describe())
    if result.relative_diff is not None and args.tolerance is None:
        if not result.relative_diff <= INT8_TOLERANCE:
            print(
                f"parity check failed: max abs difference {100 * result.relative_diff:.3g} % "
                f"of the largest logit > {100 * INT8_TOLERANCE:g} %"
            )
            return 1
        return 0
    tolerance = 1e-3 if args.tolerance is None else args.tolerance
    if result.max_abs_diff is not None and not result.max_abs_diff <= tolerance:
        print(
            f"parity check failed: max abs difference {result.max_abs_diff:.3g} > "
            f"--tolerance {tolerance:g}"
        )
        return 1
    return 0
