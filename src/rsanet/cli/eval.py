"""``rsanet eval CONFIG --checkpoint PATH [--checkpoint PATH2 ...] [--clips K]
[--crops 1|3] [--json] [--set KEY=VALUE ...]``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rsanet.cli._args import (
    add_config_argument,
    add_json_option,
    add_output_option,
    add_overrides_option,
)

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
            "averaging their softmax scores (e.g. the 8- and 16-frame RSANet: RSANet EN)."
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
        parser, help="where to write the files (default: eval/ beside the first checkpoint)"
    )
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

    result = evaluate(
        config,
        args.checkpoints,
        clips=args.clips,
        crops=args.crops,
        output_dir=args.output,
        batch_size=args.batch_size,
        progress=not args.json and sys.stderr.isatty(),
        inputs=[args.config],
    )
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
    if result.get("pair_accuracy") is not None:
        print(f"  {'pair accuracy':<16} {result['pair_accuracy']:6.2f} %")
        for pair, value in result["per_pair"].items():
            shown = "     -" if value is None else f"{value:6.2f} %"
            print(f"    {shown}  {pair}")
    for key, path in result["files"].items():
        print(f"  {key:<16} {path}")
    return 0
