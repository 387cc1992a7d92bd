"""``rsanet train CONFIG [--set KEY=VALUE ...] [--output DIR] [--resume [PATH]]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from rsanet.cli._args import add_config_argument, add_output_option, add_overrides_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML configuration",
        description=(
            "Train the model of a YAML configuration (see configs/). Every key can be "
            "overridden with --set section.key=value. Writes DIR/config.yaml (the resolved "
            "configuration), DIR/last.pt every epoch, DIR/best.pt on the best validation "
            "score (top-1, or mean-class with train.best_metric), DIR/metrics.jsonl and "
            "DIR/tensorboard. With --set train.time_budget_min=M the run ends within M "
            "minutes, its learning rate following the clock (docs/training.md). The same "
            "command runs under torchrun for multi-process (multi-GPU, multi-node) training."
        ),
    )
    add_config_argument(parser)
    add_overrides_option(
        parser, help="override configuration keys, e.g. --set optim.lr=0.01 data.num_frames=16"
    )
    add_output_option(parser, help="run folder (default: runs/<config name>)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH",
        help="continue the run: from DIR/last.pt, or from the checkpoint PATH",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start afresh in a DIR that already holds a run"
    )
    parser.set_defaults(func=run)


def default_output(config_path: str) -> Path:
    return Path("runs") / Path(config_path).stem


def run(args: argparse.Namespace) -> int:
    """Check the configuration and the run folder (exit 2), then train; a loss or weights
    turning NaN/infinite, a full disk or exhausted memory is one line and exit 1, with
    ``last.pt`` the last good state."""
    from rsanet.cli import CLIError
    from rsanet.cli._faults import guarded
    from rsanet.engine.config import load_config
    from rsanet.engine.trainer import train

    config = load_config(args.config, args.overrides)
    output = Path(args.output) if args.output else default_output(args.config)
    if args.resume is not None and args.overwrite:
        raise CLIError("--resume and --overwrite exclude each other")

    def body() -> int:
        train(config, output, resume=args.resume, overwrite=args.overwrite, inputs=[args.config])
        return 0

    return guarded(
        "train", body, memory_hint="lower train.batch_size, data.size or data.num_frames"
    )
