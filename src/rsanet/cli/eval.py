"""``rsanet eval CONFIG --checkpoint PATH [--checkpoint PATH2 ...] [--clips K]
[--crops 1|3] [--json] [--set KEY=VALUE ...]``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rsanet.cli._args import (
    add_config_argument,
    add_json_option,
    add_output_option,
    add_overrides_option,
)
from rsanet.cli._precision import add_precision_options, chosen_precision

if TYPE_CHECKING:
    from rsanet.engine.config import Config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="test checkpoints (multi-clip, 3-crop, ensembles)",
        description=(
            "Test a checkpoint on the validation split of CONFIG's data: top-1, top-5, mean "
            "per-class accuracy and per-class accuracy (on SynthMotion also pair accuracy and "
            "top-1 per pair of opposite classes), with a confusion-matrix PNG and the "
            "predictions as JSON lines. Several --checkpoint options ensemble the networks by "
            "averaging their softmax scores (e.g. the 8- and 16-frame RSANet: RSANet EN). "
            "With --precision bf16 or int8 the networks are tested in fp32 too, and the "
            "difference in top-1 and the agreement of the two predictions are reported "
            "(the accuracy check of a lower precision)."
        ),
        epilog="Alerts over long annotated recordings (event recall, false alarms per hour, "
        "latency, frame-level AUC/AP, threshold sweep): see `rsanet eval-events --help`.",
    )
    add_config_argument(parser)
    parser.add_argument(
        "--checkpoint",
        "-c",
        dest="checkpoints",
        metavar="PATH",
        action="append",
        required=True,
        help="checkpoint to test; repeat to ensemble several",
    )
    parser.add_argument(
        "--clips", type=int, metavar="K", help="clips per video (default: eval.num_clips)"
    )
    parser.add_argument(
        "--crops",
        type=int,
        choices=(1, 3),
        help="crops per clip, 1 (centre) or 3 (default: eval.num_crops)",
    )
    parser.add_argument("--batch-size", type=int, metavar="N", help="videos per batch")
    add_output_option(
        parser,
        help="where to write the files (default: eval/ beside the first checkpoint; "
        "eval_PRECISION/ for another --precision, eval_int8_float_BLOCK/ with --float-from)",
    )
    add_precision_options(parser)
    add_json_option(parser)
    add_overrides_option(
        parser, help="override configuration keys, e.g. --set data.root=/data/ssv1"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the arguments, checkpoints and outputs (exit 2), then test; NaN or infinite
    weights or logits, a full disk or exhausted memory is one line and exit 1."""
    from rsanet.cli import CLIError
    from rsanet.cli._faults import guarded
    from rsanet.engine.config import load_config

    if args.clips is not None and args.clips < 1:
        raise CLIError(f"--clips must be >= 1, got {args.clips}")
    if args.batch_size is not None and not 1 <= args.batch_size <= 2**20:
        raise CLIError(f"--batch-size must be in 1..{2**20}, got {args.batch_size}")
    config = load_config(args.config, args.overrides)
    return guarded(
        "eval",
        lambda: _evaluate(args, config),
        memory_hint="lower --batch-size, --clips or --crops",
    )


def _evaluate(args: argparse.Namespace, config: Config) -> int:
    """Run the evaluation and print its results (text or one JSON object)."""
    import json
    import sys

    from rsanet.engine.evaluate import evaluate

    precision = chosen_precision(args)
    options = {
        "clips": args.clips,
        "crops": args.crops,
        "batch_size": args.batch_size,
        "progress": not args.json and sys.stderr.isatty(),
        "inputs": [args.config],
    }
    output = args.output
    if precision != "fp32":
        fp32_output = Path(output) / "fp32" if output else None  # None: eval/, as fp32's
        reference = evaluate(config, args.checkpoints, output_dir=fp32_output, **options)
        tail = f"_float_{args.float_from}" if args.float_from else ""
        output = output or Path(args.checkpoints[0]).parent / f"eval_{precision}{tail}"
        options["prepare"] = _preparation(args, config, precision)
    result = evaluate(config, args.checkpoints, output_dir=output, **options)
    result["precision"] = precision
    if args.float_from:
        result["float_from"] = args.float_from
    if precision != "fp32":
        result["fp32"] = {
            "top1": reference["top1"],
            "top1_difference": result["top1"] - reference["top1"],
            "agreement": _agreement(
                reference["files"]["predictions"], result["files"]["predictions"]
            ),
        }
    if args.json:
        print(json.dumps(result))
        return 0
    names = " + ".join(args.checkpoints)
    print(
        f"{names}: {result['num_samples']} videos, {result['clips']} clip(s) x "
        f"{result['crops']} crop(s)"
    )
    print(f"  {'top-1':<16} {result['top1']:6.2f} %")
    print(f"  {'top-5':<16} {result['top5']:6.2f} %")
    print(f"  {'mean-class':<16} {result['mean_class']:6.2f} %")
    if precision != "fp32":
        fp32 = result["fp32"]
        print(
            f"  {'fp32 top-1':<16} {fp32['top1']:6.2f} % ({precision} - fp32: "
            f"{fp32['top1_difference']:+.2f} points)"
        )
        print(f"  {'agreement':<16} {fp32['agreement']:6.2f} % of top-1 predictions as fp32's")
    if result.get("pair_accuracy") is not None:
        print(f"  {'pair accuracy':<16} {result['pair_accuracy']:6.2f} %")
        for pair, value in result["per_pair"].items():
            shown = "     -" if value is None else f"{value:6.2f} %"
            print(f"    {shown}  {pair}")
    for key, path in result["files"].items():
        print(f"  {key:<16} {path}")
    return 0


def _preparation(args: argparse.Namespace, config: Config, precision: str):
    """The model preparation for ``precision``: int8 calibrated on the training split of
    --calibration CONFIG, else of the config being evaluated (and --float-from on in
    float)."""
    from rsanet.engine.calibration import training_clips
    from rsanet.engine.config import load_config
    from rsanet.inference.precision import prepare_model

    source = load_config(args.calibration) if args.calibration else config

    def prepare(model):
        frames = int(getattr(model, "num_frames", config.data.num_frames))
        return prepare_model(
            model,
            precision,
            calibration=lambda: training_clips(
                source, frames=frames, size=config.data.size, clips=args.calibration_clips
            ),
            float_from=args.float_from,
        )

    return prepare


def _agreement(reference: str, other: str) -> float:
    """Percentage of videos whose top-1 prediction is the same in two predictions files."""
    import json

    def predictions(path: str) -> list[int]:
        with open(path) as handle:
            return [json.loads(line)["prediction"] for line in handle]

    first, second = predictions(reference), predictions(other)
    same = sum(a == b for a, b in zip(first, second, strict=True))
    return 100.0 * same / max(1, len(first))
