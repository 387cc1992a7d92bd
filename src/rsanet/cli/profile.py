"""``rsanet profile MODEL``: parameters and GFLOPs (multiply-accumulates of one clip)."""

from __future__ import annotations

import argparse
import json

from rsanet.cli._args import add_json_option, add_model_shape_options, check_positive


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
    add_model_shape_options(parser, frames=8, size=224, num_classes=174)
    parser.add_argument(
        "--count-norm", action="store_true", help="also count BatchNorm as fvcore does"
    )
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rsanet.cli import CLIError
    from rsanet.models import profile_model

    check_positive(args, "frames", "size")
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
