"""Arguments that several commands share, added by one function each so that a flag means
the same thing (name, metavar, default, help) wherever it appears, and argparse types for
bounded numbers. Values that argparse cannot check alone are checked after parsing by
:func:`check_positive` (a :class:`~rsanet.cli.CLIError`, one line, exit code 2)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: the crop side of a checkpoint's model when neither the command nor the checkpoint says
DEFAULT_SIZE = 224
#: the longest sliding window (and stride) a command accepts, in seconds
MAX_WINDOW_SECONDS = 300.0
#: windows averaged by the score smoothing unless told
DEFAULT_SMOOTHING = 3


# -- argparse types ----------------------------------------------------------------------


def seconds(maximum: float) -> Callable[[str], float]:
    """An argparse type: a positive, finite number of seconds, at most ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(
                f"must be a positive, finite number of seconds, got {text!r}"
            )
        if value > maximum:
            raise argparse.ArgumentTypeError(f"at most {maximum:g} s, got {text!r}")
        return value

    parse.__name__ = "seconds"  # argparse names the type in its messages
    return parse


def count(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse type: an integer in [minimum, maximum]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"must be between {minimum} and {maximum}, got {text!r}"
            )
        return value

    parse.__name__ = "count"
    return parse


def number(minimum: float, maximum: float, *, strict: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [minimum, maximum] (above minimum when
    ``strict``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        low_ok = value > minimum if strict else value >= minimum
        if not math.isfinite(value) or not low_ok or value > maximum:
            bound = ">" if strict else ">="
            raise argparse.ArgumentTypeError(
                f"must be {bound} {minimum:g} and <= {maximum:g}, got {text!r}"
            )
        return value

    parse.__name__ = "number"
    return parse


# -- inputs ----------------------------------------------------------------------------


def add_config_argument(
    parser: argparse.ArgumentParser, help: str = "YAML configuration file"
) -> None:
    """The positional ``CONFIG`` (``args.config``)."""
    parser.add_argument("config", metavar="CONFIG", help=help)


def add_overrides_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE ...`` (repeatable) into ``args.overrides``: configuration keys
    overridden on the command line, as every command that reads a configuration takes."""
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help=help,
    )


def add_checkpoint_option(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--checkpoint PATH`` (``args.checkpoint``): one rsanet checkpoint, or a weights-only
    safetensors file."""
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        required=required,
        help="an rsanet checkpoint, or a weights-only NAME.safetensors (with NAME.json "
        "beside it; loaded without pickle)",
    )


def add_weights_option(parser: argparse.ArgumentParser, verb: str) -> None:
    """``--weights {auto,ema,raw}`` (``args.weights``): which of a checkpoint's weights to
    ``verb`` (run, export); auto takes the EMA weights when there are some, as ``rsanet eval``
    scores them."""
    parser.add_argument(
        "--weights",
        choices=("auto", "ema", "raw"),
        default="auto",
        help=f"the checkpoint's weights to {verb}: auto (default) the EMA weights when it has "
        "them, as rsanet eval scores, else the raw ones; ema or raw insist",
    )


def add_crop_size_option(parser: argparse.ArgumentParser, type: Callable[[str], int] = int) -> None:
    """``--size`` (``args.size``, None by default): the crop side a checkpoint's model is
    fed; resolve it with :func:`crop_size`."""
    parser.add_argument(
        "--size",
        type=type,
        help=f"side of the square clip the model sees (default: checkpoint's, else {DEFAULT_SIZE})",
    )


def crop_size(size: int | None, trained: int | None) -> int:
    """``--size`` when given, else the size the model was trained at, else 224."""
    return size or trained or DEFAULT_SIZE


def add_model_shape_options(
    parser: argparse.ArgumentParser, *, frames: int, size: int, num_classes: int
) -> None:
    """``--frames``, ``--size`` and ``--num-classes`` of a model built from its name (no
    checkpoint), with these defaults."""
    parser.add_argument(
        "--frames", type=int, default=frames, help=f"clip length T (default {frames})"
    )
    parser.add_argument(
        "--size", type=int, default=size, help=f"frame height = width (default {size})"
    )
    parser.add_argument(
        "--num-classes", type=int, default=num_classes, help=f"classes (default {num_classes})"
    )


def add_stride_and_smoothing_options(parser: argparse.ArgumentParser) -> None:
    """``--stride-seconds S`` (``args.stride_seconds``, None: half the window) and
    ``--smoothing N`` (``args.smoothing``, 3) of the sliding-window predictor."""
    parser.add_argument(
        "--stride-seconds",
        type=seconds(MAX_WINDOW_SECONDS),
        metavar="S",
        help="a window every S seconds (default: half the window)",
    )
    parser.add_argument(
        "--smoothing",
        type=count(1, 1000),
        metavar="N",
        help=f"average the scores of the last N windows ({DEFAULT_SMOOTHING}; 1: none)",
    )


def add_rescorer_option(parser: argparse.ArgumentParser) -> None:
    """``--rescorer FILE`` (``args.rescorer``): see :func:`stream_settings`."""
    parser.add_argument(
        "--rescorer",
        metavar="FILE",
        help="pass every window's scores through a rescorer written by `rsanet "
        "fit-rescorer` (a causal head over each stream's recent windows) before the rules "
        "see them; the window, stride and smoothing are the ones it was fitted on",
    )


def add_calibration_options(parser: argparse.ArgumentParser, *, default_split: str) -> None:
    """The options that shape how thresholds are picked for a false-alarm target, as
    ``eval-events --target-fa-per-hour`` and ``fit-rescorer`` pick them: ``--tolerance S``
    (2), ``--budget-split even|recall`` and ``--min-durations S ...`` (None: each rule
    keeps its own)."""
    parser.add_argument(
        "--tolerance",
        type=number(0, 3600),
        default=2.0,
        metavar="S",
        help="an alert up to S seconds before or after an event still detects it (2)",
    )
    parser.add_argument(
        "--budget-split",
        choices=("even", "recall"),
        default=default_split,
        help=f"how --target-fa-per-hour shares its budget (default {default_split}): even, "
        "each class N/K; recall, the whole false alarms N allows on these recordings go "
        "to the classes where they detect the most events (an exact knapsack over the "
        "classes' threshold curves; classes may then get no false alarm at all)",
    )
    parser.add_argument(
        "--min-durations",
        type=number(0, 3600),
        nargs="+",
        metavar="S",
        help="with --target-fa-per-hour, pick each rule's min_duration from these seconds "
        "too, with its threshold (e.g. 0 1 2 3: a rule that must hold for a second or two "
        "can often use a lower threshold); default: each rule keeps its own",
    )


@dataclass
class StreamOptions:
    """The sliding-window settings of a command, and the rescorer when one is given."""

    window: float
    stride: float
    smoothing: int
    rescorer: Any = None


def stream_settings(args: argparse.Namespace, default_window: float) -> StreamOptions:
    """``--window-seconds``, ``--stride-seconds`` and ``--smoothing`` with their defaults;
    with ``--rescorer FILE``, the rescorer's own, and a CLIError for one given otherwise
    (a rescorer only reads the stream it was fitted on)."""
    from rsanet.cli import CLIError

    window = args.window_seconds or default_window
    smoothing = args.smoothing or DEFAULT_SMOOTHING
    options = StreamOptions(window, args.stride_seconds or window / 2, smoothing)
    if not getattr(args, "rescorer", None):
        return options
    from rsanet.inference.rescorer import Rescorer

    rescorer = Rescorer.load(args.rescorer)
    differs = rescorer.mismatch(
        window_s=args.window_seconds, stride_s=args.stride_seconds, smoothing=args.smoothing
    )
    if differs is not None:
        name, given, own = differs
        flag = {"window_s": "--window-seconds", "stride_s": "--stride-seconds"}.get(
            name, "--smoothing"
        )
        raise CLIError(
            f"{flag} {given:g}: the rescorer {args.rescorer} was fitted on scores with "
            f"{flag} {own:g}; leave {flag} out, or fit a rescorer on scores made with "
            f"{flag} {given:g}"
        )
    return StreamOptions(rescorer.window_s, rescorer.stride_s, rescorer.smoothing, rescorer)


# -- outputs ---------------------------------------------------------------------------


def add_output_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--output DIR`` / ``-o DIR`` (``args.output``): the folder a command writes."""
    parser.add_argument("--output", "-o", metavar="DIR", help=help)


def add_json_option(parser: argparse.ArgumentParser, help: str = "print one JSON object") -> None:
    """``--json`` (``args.json``): machine-readable output on stdout."""
    parser.add_argument("--json", action="store_true", help=help)


# -- checks after parsing --------------------------------------------------------------


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """CLIError unless each of the integer options ``names`` (attribute names) is unset
    (None) or >= 1."""
    from rsanet.cli import CLIError

    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise CLIError(f"{flag} must be a positive integer, got {value}")
