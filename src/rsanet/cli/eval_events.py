"""``rsanet eval-events CHECKPOINT --format FMT --annotations FILE [--root DIR] [--rules
RULES] [--tolerance S] [--target-fa-per-hour N] [--out DIR]``: event-level evaluation of
the alerting pipeline over long annotated recordings (see ``docs/events.md``)."""

from __future__ import annotations

import argparse

from rsanet.cli._args import (
    MAX_WINDOW_SECONDS,
    StreamOptions,
    add_calibration_options,
    add_crop_size_option,
    add_json_option,
    add_rescorer_option,
    add_stride_and_smoothing_options,
    add_weights_option,
    count,
    number,
    seconds,
    stream_settings,
)

#: the command's name (``rsanet eval CONFIG`` keeps its positional CONFIG, so event-level
#: evaluation is a command of its own rather than ``rsanet eval events``)
COMMAND = "eval-events"
#: :data:`rsanet.data.untrimmed.UNTRIMMED_FORMATS` (not imported here: it loads torch, and
#: ``rsanet --help`` must stay fast; a test keeps the two equal)
FORMATS = ("aihub-cctv", "ucf-crime", "xd-violence", "intervals")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        COMMAND,
        help="event-level evaluation of alerts over long recordings",
        description=(
            "Run the sliding-window predictor, score smoothing and alert rules of "
            "`rsanet predict` over every annotated long recording (each decoded once, "
            "faster than real time) and score the alerts against the events: recall, "
            "precision and F1 with a time tolerance, false alarms per hour of event-free "
            "video (and apart: those raised during another class's event), detection "
            "latency, and frame-level ROC-AUC / AP of the window scores. "
            "Writes events.json, events.md, every window's scores (window_scores.npz), a "
            "timeline figure per video and a PR curve to --out. With --target-fa-per-hour N, "
            "also writes a rules file for `rsanet predict --rules` with thresholds picked "
            "for at most N false alarms per hour from all rules together on these "
            "recordings (N split over the classes with an event there: evenly, or by "
            "--budget-split recall where it detects the most events). A recording that "
            "cannot be read is listed as a failure (exit code 1) and the others are "
            "evaluated."
        ),
    )
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="an rsanet checkpoint (or a weights-only NAME.safetensors)",
    )
    add_weights_option(parser, "run")
    parser.add_argument("--format", required=True, choices=FORMATS, help="annotation format")
    parser.add_argument(
        "--annotations",
        required=True,
        metavar="FILE",
        help="the annotation file (or its folder; for aihub-cctv the data folder)",
    )
    parser.add_argument("--root", metavar="DIR", help="the videos' folder (default: FILE's)")
    parser.add_argument(
        "--labels",
        metavar="FILE",
        help="intervals: the allowed class names; aihub-cctv: a class map (YAML / JSON)",
    )
    parser.add_argument(
        "--fps",
        type=number(0, 1000, strict=True),
        help="frame rate of ucf-crime (30) and xd-violence (24) frame numbers",
    )
    parser.add_argument(
        "--rules",
        metavar="FILE",
        help="alert rules as `rsanet predict --rules` reads them (default: threshold 0.5, "
        "min_duration 0, cooldown 60 s for every evaluated class)",
    )
    parser.add_argument(
        "--top-class",
        action="store_true",
        help="every rule fires only in windows where its class scores at least as high as "
        "every class with a rule (top_class: true in the rules, and in the rules "
        "--target-fa-per-hour writes): a class that rises with another's event stays "
        "quiet while that class scores higher",
    )
    parser.add_argument(
        "--window-seconds",
        type=seconds(MAX_WINDOW_SECONDS),
        metavar="S",
        help="sliding windows of S seconds (2, as rsanet predict)",
    )
    add_stride_and_smoothing_options(parser)
    add_rescorer_option(parser)
    add_crop_size_option(parser, type=count(8, 2048))
    parser.add_argument(
        "--normal-class",
        dest="normal",
        metavar="NAME",
        action="append",
        help="a model class that is no event (repeatable; default: classes named normal, "
        "background, none or no_event)",
    )
    parser.add_argument(
        "--target-fa-per-hour",
        type=number(0, 1e6),
        metavar="N",
        help="write a rules file for at most N false alarms per hour of event-free time "
        "from all rules together: N is split evenly over the classes with an event in "
        "these recordings, each getting the lowest threshold within its share (the rules' "
        "min_duration and cooldown kept); a class without an event gets no rule, so it "
        "never alerts",
    )
    add_calibration_options(parser, default_split="even")
    parser.add_argument(
        "--rules-out",
        metavar="FILE",
        help="where --target-fa-per-hour writes the rules (.yaml or .json; default OUT/rules.yaml)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: eval_events/ beside the checkpoint)",
    )
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument("--threads", type=count(1, 1024), help="PyTorch threads")
    add_json_option(parser, "print the report as one JSON object")
    parser.set_defaults(func=run)


def build_predictor(args: argparse.Namespace, stream: StreamOptions):
    """The Predictor of the checkpoint (as ``rsanet predict --checkpoint`` builds it), with
    the smoothing and rescorer of ``stream``."""
    from rsanet.inference import Predictor

    predictor = Predictor.from_checkpoint(
        args.checkpoint, size=args.size, smoothing=stream.smoothing, weights=args.weights
    )
    predictor.use_rescorer(stream.rescorer)
    return predictor


def run(args: argparse.Namespace) -> int:
    """Check the inputs (exit 2), run every recording, write the outputs; exit 1 when a
    recording failed, 2 when all did or when the sweep found no event to calibrate on."""
    import json
    import sys
    from dataclasses import replace
    from pathlib import Path

    from rsanet.atomic import refuse_overwrite
    from rsanet.cli import CLIError
    from rsanet.data import read_untrimmed
    from rsanet.inference import load_rules
    from rsanet.inference.event_eval import EventEvaluation, write_outputs

    if args.fps is not None and args.format not in ("ucf-crime", "xd-violence"):
        raise CLIError("--fps is for ucf-crime and xd-violence")
    if args.rules_out and args.target_fa_per_hour is None:
        raise CLIError("--rules-out needs --target-fa-per-hour")
    if args.budget_split != "even" and args.target_fa_per_hour is None:
        raise CLIError("--budget-split needs --target-fa-per-hour")
    if args.min_durations and args.target_fa_per_hour is None:
        raise CLIError("--min-durations needs --target-fa-per-hour")
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval_events"
    inputs = [args.checkpoint, args.rules, args.annotations, args.labels, args.rescorer]
    for name in ("events.json", "events.md", "window_scores.npz"):
        refuse_overwrite(out / name, inputs, what="report")
    if args.rules_out:
        refuse_overwrite(args.rules_out, inputs, what="--rules-out file")
    stream = stream_settings(args, default_window=2.0)  # a rescorer's stream, checked first
    options = {}
    if args.labels:
        options["labels"] = args.labels
    if args.fps is not None:
        options["fps"] = args.fps
    annotations = args.annotations
    root = args.root
    data = read_untrimmed(args.format, annotations, root, quiet=args.json, **options)
    if not data.videos:
        raise CLIError(f"{args.annotations}: no usable recording (every annotation is bad)")
    rules = load_rules(args.rules) if args.rules else None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    predictor = build_predictor(args, stream)
    window, stride = stream.window, stream.stride
    evaluation = EventEvaluation(
        predictor, window=window, stride=stride, rules=rules, normal=args.normal
    )
    if args.top_class:
        evaluation.rules = [replace(rule, top_class=True) for rule in evaluation.rules]
    if args.target_fa_per_hour is not None:
        try:  # before decoding anything: recordings without events cannot calibrate
            evaluation.calibration_classes(data.videos)
        except ValueError as error:
            raise CLIError(f"{args.annotations}: {error}") from None

    def progress(number: int, total: int, run) -> None:
        if args.json:
            return
        status = f"error: {run.error}" if run.error else f"{len(run.alerts)} alert(s)"
        rate = run.duration_s / run.wall_s if run.wall_s > 0 else 0.0
        print(
            f"[{number}/{total}] {run.path}: {run.duration_s:.1f} s in {run.wall_s:.1f} s "
            f"({rate:.1f}x real time), {status}",
            file=sys.stderr,
            flush=True,
        )

    report, runs = evaluation.run(data.videos, tolerance=args.tolerance, progress=progress)
    good = [run for run in runs if run.error is None]
    sweep_error = None
    if args.target_fa_per_hour is not None and good:
        try:  # the report is written even when the sweep fails
            report["sweep"] = evaluation.sweep(
                good,
                args.target_fa_per_hour,
                tolerance=args.tolerance,
                split=args.budget_split,
                min_durations=args.min_durations,
            )
        except ValueError as error:  # every recording with events failed
            sweep_error = CLIError(f"{args.annotations}: {error}")
    report["checkpoint"] = str(args.checkpoint)
    report["annotations"] = {
        "format": args.format,
        "file": str(args.annotations),
        "bad": [{"path": b.path, "reason": b.reason} for b in data.bad],
    }
    write_outputs(
        report,
        runs,
        evaluation,
        out,
        figures=not args.no_figures,
        rules_out=args.rules_out,
    )
    if args.json:
        print(json.dumps(report, allow_nan=False))
    else:
        from rsanet.inference.event_eval import markdown

        print(markdown(report), end="")
        for key, path in report["files"].items():
            print(f"  {key:<10} {path}")
    failures = len(report["failures"])
    if failures and failures == len(runs):
        raise CLIError(f"no recording could be evaluated ({failures} failed)")
    if sweep_error is not None:
        raise sweep_error
    return 1 if failures else 0
