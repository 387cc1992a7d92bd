"""``rsanet profile MODEL``: parameters and GFLOPs (multiply-accumulates of one clip)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="parameters and GFLOPs of a model, per stage",
        description=(
            "Parameters and GFLOPs (multiply-accumulates of one clip, counted by fvcore; "
            "RSA layers by the authors' order of operations; scaled dot-product attention "
            "as its two matrix products; BatchNorm not counted) of a registered model, with "
            "a per-stage table."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="a registered model name (see --list)")
    parser.add_argument("--frames", type=int, default=8, help="clip length T (default 8)")
    parser.add_argument("--size", type=int, default=224, help="frame height = width (224)")
    parser.add_argument("--num-classes", type=int, default=174, help="classes (default 174)")
    parser.add_argument(
        "--count-norm", action="store_true", help="also count BatchNorm as fvcore does"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rsanet.cli import CLIError
    from rsanet.models import profile_model

    for name in ("frames", "size"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.num_classes < 0:
        raise CLIError(f"--num-classes must be >= 0, got {args.num_classes}")
    try:
        import fvcore  # noqa: F401
    except ImportError as error:
        raise CLIError("profiling needs fvcore: pip install 'rsanet[profile]'") from error
    result = profile_model(
        args.model,
        frames=args.frames,
        size=args.size,
        num_classes=args.num_classes,
        count_norm=args.count_norm,
    )
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.table())
    return 0
