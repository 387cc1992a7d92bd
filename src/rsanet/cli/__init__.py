"""The ``rsanet`` command: thin subcommands over the Python API.

Each subcommand lives in its own module of this package with a ``register(subparsers)``
function that adds its parser and sets ``func`` (called with the parsed arguments, returning
an exit code). A module parses, calls the library and prints; arguments that several
commands take are added by the functions of :mod:`rsanet.cli._args`, and errors are worded
by :mod:`rsanet.cli._faults`. Heavy imports happen inside the handlers, so ``rsanet --help``
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rsanet import __version__

#: modules of rsanet.cli, in the order their commands are listed by --help
COMMAND_MODULES = [
    "demo",
    "train",
    "eval",
    "eval_events",
    "fit_rescorer",
    "profile",
    "data",
    "predict",
    "export",
    "serve",
    "visualize",
    "study",
]


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsanet",
        description="Relational self-attention for motion-centric video understanding.",
    )
    parser.add_argument("--version", action="version", version=f"rsanet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"rsanet.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from rsanet.cli._faults import RUN_FAILED, os_error_message, report

    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, FileNotFoundError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        return report(args.command, message, 2)
    except OSError as error:  # a full disk, a folder that cannot be written, a lost device
        from rsanet.atomic import DiskFullError

        # a full disk stops work under way (1); any other OSError refused an input (2)
        code = RUN_FAILED if isinstance(error, DiskFullError) else 2
        return report(args.command, os_error_message(error), code)
    except KeyboardInterrupt:
        print(f"rsanet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
