"""``rsanet predict SOURCE``: clip-level predictions of files and folders, sliding windows over
long videos and live streams, alerts and annotated videos (see ``docs/deploy.md``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rsanet.cli._args import (
    MAX_WINDOW_SECONDS,
    StreamOptions,
    add_checkpoint_option,
    add_crop_size_option,
    add_json_option,
    add_rescorer_option,
    add_stride_and_smoothing_options,
    add_weights_option,
    count,
    seconds,
    stream_settings,
)
from rsanet.cli._precision import add_precision_options, chosen_precision

WINDOW_SECONDS = 2.0
#: upper bounds of the time options: beyond them a window's frames would not fit in memory
#: (a window holds up to 120 frames per second) or a wait would never end in practice
MAX_WAIT_SECONDS = 3600.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict actions in videos, folders and live streams",
        description=(
            "Predict the actions of SOURCE: a video file (clip-level top-k, or sliding windows "
            "with --window-seconds), a folder of videos, or a live stream (rtsp:// or http:// "
            "URL, a webcam such as /dev/video0, or a file replayed in real time with --live)."
        ),
    )
    parser.add_argument("source", metavar="SOURCE", help="file, folder, URL or device")
    add_checkpoint_option(parser)
    add_weights_option(parser, "run")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="run the checkpoint with PyTorch (default) or an exported ONNX file",
    )
    parser.add_argument("--onnx", metavar="FILE", help="the ONNX file for --backend onnxruntime")
    parser.add_argument("--top-k", type=count(1, 1000), default=5, help="labels per prediction (5)")
    add_crop_size_option(parser, type=count(8, 2048))
    parser.add_argument(
        "--window-seconds",
        type=seconds(MAX_WINDOW_SECONDS),
        metavar="S",
        help=f"sliding windows of S seconds (default {WINDOW_SECONDS:g} for "
        "streams; files get one clip-level prediction without it, except with a model "
        "trained on context frames, which needs windows)",
    )
    add_stride_and_smoothing_options(parser)
    add_rescorer_option(parser)
    parser.add_argument(
        "--live",
        action="store_true",
        help="replay a file at its real frame rate, as a camera would deliver it",
    )
    add_json_option(parser, help="one JSON line per window (or file) and a final summary line")
    parser.add_argument("--rules", metavar="FILE", help="alert rules (YAML or JSON)")
    parser.add_argument(
        "--events",
        metavar="OUT.jsonl",
        help="append alert events to this file (the durable record: each line is synced "
        "to disk before the alert is printed or sent)",
    )
    parser.add_argument(
        "--webhook",
        metavar="URL",
        help="POST each alert event as JSON to URL (user:password@ or token@ in the URL "
        "become an Authorization header: Basic, or Bearer for a token)",
    )
    parser.add_argument(
        "--webhook-timeout",
        type=seconds(300.0),
        default=5.0,
        metavar="S",
        help="seconds one webhook POST may take (5)",
    )
    parser.add_argument(
        "--webhook-retries",
        type=count(0, 100),
        default=5,
        metavar="N",
        help="retries of a failed webhook POST, 0.5 s apart doubling up to 30 s (5)",
    )
    parser.add_argument(
        "--flush-timeout",
        type=seconds(MAX_WAIT_SECONDS),
        default=10.0,
        metavar="S",
        help="at exit, wait up to S seconds for pending webhook deliveries (10)",
    )
    parser.add_argument(
        "--annotate",
        metavar="OUT.mp4",
        help="write the video with the current label and score drawn on it",
    )
    parser.add_argument(
        "--buffer-seconds",
        type=seconds(MAX_WINDOW_SECONDS),
        metavar="S",
        help="stream time buffered before frames are dropped (default: window)",
    )
    parser.add_argument(
        "--max-reconnects",
        type=count(0, 10**9),
        metavar="N",
        help="give up after N failed reconnections in a row (default: never)",
    )
    parser.add_argument(
        "--reconnect-delay",
        type=seconds(MAX_WAIT_SECONDS),
        default=0.5,
        metavar="S",
        help="first reconnection delay, doubled per attempt up to 30 s or S (0.5)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds(MAX_WAIT_SECONDS),
        default=5.0,
        metavar="S",
        help="a network read waiting longer is a stall (5; opening: 2x)",
    )
    parser.add_argument("--threads", type=count(1, 1024), help="PyTorch / ONNX Runtime threads")
    add_precision_options(parser)
    parser.set_defaults(func=run)


# -- setup -----------------------------------------------------------------------------


def _check_args(args: argparse.Namespace) -> None:
    """Combinations of options (each value was checked by its argparse type)."""
    from rsanet.cli import CLIError

    if args.backend == "onnxruntime" and not args.onnx:
        raise CLIError("--backend onnxruntime needs --onnx FILE (see rsanet export)")
    if args.onnx and args.backend != "onnxruntime":
        raise CLIError("--onnx is for --backend onnxruntime")
    if args.backend == "torch" and not args.checkpoint:
        raise CLIError("--checkpoint PATH is required (or --backend onnxruntime --onnx FILE)")
    if args.events or args.webhook:
        if not args.rules:
            raise CLIError("--events and --webhook need --rules FILE")


def build_predictor(args: argparse.Namespace, stream: StreamOptions):
    """The Predictor that the arguments describe (PyTorch or ONNX Runtime backend), with the
    smoothing and rescorer of ``stream``."""
    predictor = _model_predictor(args, stream.smoothing)
    predictor.use_rescorer(stream.rescorer)
    return predictor


def _model_predictor(args: argparse.Namespace, smoothing: int):
    from rsanet.cli import CLIError
    from rsanet.engine.calibration import checkpoint_calibration
    from rsanet.inference import Predictor

    options = {"size": args.size, "top_k": args.top_k, "smoothing": smoothing}
    if args.backend == "torch":
        return Predictor.from_checkpoint(
            args.checkpoint,
            weights=args.weights,
            precision=chosen_precision(args),
            calibration=checkpoint_calibration(args.calibration, args.calibration_clips),
            threads=args.threads,
            float_from=args.float_from,
            **options,
        )
    if chosen_precision(args) != "fp32":
        raise CLIError(
            "--precision is for --backend torch: an ONNX file runs in the precision it was "
            "exported in (rsanet export --precision int8)"
        )
    return Predictor.from_onnx(
        args.onnx, checkpoint=args.checkpoint, threads=args.threads, **options
    )


# -- output ----------------------------------------------------------------------------


class Output:
    """Prints results as text or JSON lines (stdout), notices on stderr. Every URL is
    redacted and no JSON line holds NaN (``allow_nan=False``: a non-finite number is an
    error, never printed)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, record: dict[str, Any], text: str, *, stream=None) -> None:
        from rsanet.inference.redact import redact_record, redact_text

        if self.as_json:
            print(json.dumps(redact_record(record), allow_nan=False), flush=True)
        else:
            print(redact_text(text), file=stream or sys.stdout, flush=True)

    def show(self, item: Any, *, stream=None) -> None:
        """A result (anything with ``to_dict()`` and ``describe()``)."""
        self.emit(item.to_dict(), item.describe(), stream=stream)

    def notice(self, text: str) -> None:
        from rsanet.inference.redact import redact_text

        print(redact_text(text), file=sys.stderr, flush=True)


# -- modes -----------------------------------------------------------------------------


def _predict_folder(args, predictor, spec, out: Output) -> int:
    from rsanet.cli import CLIError
    from rsanet.inference import FolderSummary

    summary = FolderSummary(spec.target)
    for item in predictor.predict_folder(spec.target):
        summary.add(item)
        if isinstance(item, tuple):
            path, reason = item
            out.emit(
                {"type": "error", "source": path, "error": reason},
                f"{path}: error: {reason}",
                stream=sys.stderr,
            )
        else:
            out.show(item)
    out.show(summary)
    if summary.failed and not summary.predicted:
        raise CLIError(f"no video in {spec.target} could be read")
    return 1 if summary.failed else 0


def _predict_clip(args, predictor, spec, out: Output) -> int:
    out.show(predictor.predict_file(spec.target))
    return 0


def _predict_windows(args, predictor, spec, out: Output, stream: StreamOptions) -> int:
    from rsanet.cli import CLIError
    from rsanet.inference import AlertSinks, Monitor, open_analysis

    sinks = AlertSinks.open(
        classes=predictor.classes,
        rules=args.rules,
        events=args.events,
        webhook=args.webhook,
        annotate=args.annotate,
        webhook_options={
            "timeout": args.webhook_timeout,
            "retries": args.webhook_retries,
            "flush_timeout": args.flush_timeout,
        },
        emit=out.emit,
        warn=lambda text: out.notice(f"rsanet predict: warning: {text}"),
    )
    with sinks:
        monitor = Monitor(sinks)
        analysis = open_analysis(
            predictor,
            spec,
            window=stream.window,
            stride=stream.stride,
            live=args.live,
            keep_display=bool(args.annotate),
            timeout=args.timeout,
            buffer_seconds=args.buffer_seconds,
            reconnect_delay=args.reconnect_delay,
            max_reconnects=args.max_reconnects,
            on_frame=monitor.on_frame,
            on_outage=lambda outage: out.show(outage, stream=sys.stderr),
        )
        outcome = monitor.run(analysis, on_result=out.show)
    out.show(outcome.summary)
    if outcome.bug:
        raise outcome.failure  # its traceback, after the summary
    if outcome.empty:
        raise CLIError(f"{spec}: no frame could be read")
    return outcome.exit_code


def run(args: argparse.Namespace) -> int:
    """``rsanet predict``: every error is one line with no secret in it (exit 2)."""
    from rsanet.cli import CLIError
    from rsanet.cli._faults import os_error_message
    from rsanet.inference.redact import one_line

    try:
        return _run(args)
    except (CLIError, ValueError, FileNotFoundError) as error:
        raise CLIError(one_line(error)) from None
    except OSError as error:  # a full disk, an unwritable output: one line, not a traceback
        raise CLIError(one_line(os_error_message(error))) from None


def _run(args: argparse.Namespace) -> int:
    from rsanet.cli import CLIError
    from rsanet.inference import check_outputs, parse_source

    _check_args(args)
    stream = stream_settings(args, WINDOW_SECONDS)
    spec = parse_source(args.source)
    if spec.kind == "folder" and (
        args.live
        or args.annotate
        or args.rules
        or args.window_seconds
        or args.stride_seconds
        or args.rescorer
    ):
        raise CLIError(
            "a folder gets clip-level predictions: --live, --window-seconds, "
            "--stride-seconds, --rules, --rescorer and --annotate need a file or a stream"
        )
    if args.live and spec.kind != "file":
        raise CLIError(f"--live replays a file; {spec} is a {spec.kind}")
    inputs = [args.checkpoint, args.onnx, args.rules, args.rescorer]
    if spec.kind == "file":
        inputs.append(spec.target)
    check_outputs(events=args.events, annotate=args.annotate, inputs=inputs)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    predictor = build_predictor(args, stream)
    out = Output(args.json)
    windowed = (
        spec.is_live
        or args.live
        or any((args.window_seconds, args.stride_seconds, args.rules, args.annotate, args.rescorer))
    )
    if predictor.context_frames and (spec.kind == "folder" or not windowed):
        raise CLIError(
            f"the model reads {predictor.context_frames} frames of the {predictor.context_s:g} s "
            "before each window, so it scores the windows of a file or a stream, not whole "
            "files: give --window-seconds (or --live) and a file"
        )
    if spec.kind == "folder":
        return _predict_folder(args, predictor, spec, out)
    if not windowed:
        return _predict_clip(args, predictor, spec, out)
    return _predict_windows(args, predictor, spec, out, stream)
