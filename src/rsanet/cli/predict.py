"""``rsanet predict SOURCE``: clip-level predictions of files and folders, sliding windows over
long videos and live streams, alerts and annotated videos (see ``docs/deploy.md``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

WINDOW_SECONDS = 2.0
#: upper bounds of the time options: beyond them a window's frames would not fit in memory
#: (a window holds up to 120 frames per second) or a wait would never end in practice
MAX_WINDOW_SECONDS = 300.0
MAX_WAIT_SECONDS = 3600.0


def _seconds(maximum: float) -> Callable[[str], float]:
    """An argparse type: a positive, finite number of seconds, at most ``maximum``."""

    def seconds(text: str) -> float:
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

    return seconds


def _count(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse type: an integer in [minimum, maximum]."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"must be between {minimum} and {maximum}, got {text!r}"
            )
        return value

    return count


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
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="an rsanet checkpoint, or a weights-only NAME.safetensors (with NAME.json "
        "beside it; loaded without pickle)",
    )
    parser.add_argument(
        "--weights",
        choices=("auto", "ema", "raw"),
        default="auto",
        help="the checkpoint's weights to run: auto (default) the EMA weights when it has "
        "them, as rsanet eval scores, else the raw ones; ema or raw insist",
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="run the checkpoint with PyTorch (default) or an exported ONNX file",
    )
    parser.add_argument("--onnx", metavar="FILE", help="the ONNX file for --backend onnxruntime")
    parser.add_argument(
        "--top-k", type=_count(1, 1000), default=5, help="labels per prediction (5)"
    )
    parser.add_argument(
        "--size", type=_count(8, 2048), help="crop side (default: checkpoint's, else 224)"
    )
    parser.add_argument(
        "--window-seconds",
        type=_seconds(MAX_WINDOW_SECONDS),
        metavar="S",
        help=f"sliding windows of S seconds (default {WINDOW_SECONDS:g} for "
        "streams; files get one clip-level prediction without it)",
    )
    parser.add_argument(
        "--stride-seconds",
        type=_seconds(MAX_WINDOW_SECONDS),
        metavar="S",
        help="a window every S seconds (default: half the window)",
    )
    parser.add_argument(
        "--smoothing",
        type=_count(1, 1000),
        default=3,
        metavar="N",
        help="average the scores of the last N windows (3; 1: none)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="replay a file at its real frame rate, as a camera would deliver it",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON line per window (or file) and a final summary line",
    )
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
        type=_seconds(300.0),
        default=5.0,
        metavar="S",
        help="seconds one webhook POST may take (5)",
    )
    parser.add_argument(
        "--webhook-retries",
        type=_count(0, 100),
        default=5,
        metavar="N",
        help="retries of a failed webhook POST, 0.5 s apart doubling up to 30 s (5)",
    )
    parser.add_argument(
        "--flush-timeout",
        type=_seconds(MAX_WAIT_SECONDS),
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
        type=_seconds(MAX_WINDOW_SECONDS),
        metavar="S",
        help="stream time buffered before frames are dropped (default: window)",
    )
    parser.add_argument(
        "--max-reconnects",
        type=_count(0, 10**9),
        metavar="N",
        help="give up after N failed reconnections in a row (default: never)",
    )
    parser.add_argument(
        "--reconnect-delay",
        type=_seconds(MAX_WAIT_SECONDS),
        default=0.5,
        metavar="S",
        help="first reconnection delay, doubled per attempt up to 30 s or S (0.5)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds(MAX_WAIT_SECONDS),
        default=5.0,
        metavar="S",
        help="a network read waiting longer is a stall (5; opening: 2x)",
    )
    parser.add_argument("--threads", type=_count(1, 1024), help="PyTorch / ONNX Runtime threads")
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


def build_predictor(args: argparse.Namespace):
    """The Predictor that the arguments describe (PyTorch or ONNX Runtime backend)."""
    from rsanet.cli import CLIError
    from rsanet.inference import OnnxRuntimeBackend, Predictor, TorchBackend, load_classifier
    from rsanet.inference.predictor import class_names

    options = {"top_k": args.top_k, "smoothing": args.smoothing}
    if args.backend == "torch":
        classifier = load_classifier(args.checkpoint, weights=args.weights)
        size = args.size or classifier.input_size or 224
        return Predictor(
            TorchBackend(classifier.model),
            classifier.classes,
            num_frames=classifier.num_frames,
            size=size,
            mean=classifier.mean,
            std=classifier.std,
            **options,
        )
    backend = OnnxRuntimeBackend(args.onnx, threads=args.threads)
    if backend.num_frames is None or backend.size is None:
        raise CLIError(
            f"{args.onnx}: expected a clip input (N, 3, T, S, S) of a fixed shape, "
            f"got {backend.input_shape}"
        )
    if args.size and args.size != backend.size:
        raise CLIError(f"{args.onnx} was exported for --size {backend.size}, not {args.size}")
    num_classes = backend.session.get_outputs()[0].shape[-1]
    if args.checkpoint:
        classes = load_classifier(args.checkpoint).classes
    else:
        classes = backend.metadata.get("classes")
        if not isinstance(num_classes, int):
            num_classes = len(classes or [])
    classes = class_names(classes, int(num_classes), args.onnx)
    return Predictor(backend, classes, num_frames=backend.num_frames, size=backend.size, **options)


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

    def notice(self, text: str) -> None:
        from rsanet.inference.redact import redact_text

        print(redact_text(text), file=sys.stderr, flush=True)


def _top_text(top) -> str:
    return " | ".join(f"{label} {score:.2f}" for label, score in top)


def _window_text(result) -> str:
    skipped = f", {result.skipped} skipped" if result.skipped else ""
    return (
        f"[{result.start:8.2f} - {result.end:8.2f} s] {_top_text(result.top)} "
        f"({result.latency_ms:.0f} ms{skipped})"
    )


# -- modes -----------------------------------------------------------------------------


def _predict_folder(args, predictor, spec, out: Output) -> int:
    predictions, failed = 0, []
    for item in predictor.predict_folder(spec.target):
        if isinstance(item, tuple):
            path, reason = item
            failed.append({"source": path, "error": reason})
            out.emit(
                {"type": "error", "source": path, "error": reason},
                f"{path}: error: {reason}",
                stream=sys.stderr,
            )
            continue
        predictions += 1
        out.emit(item.to_dict(), f"{item.source}: {_top_text(item.top)} ({item.latency_ms:.0f} ms)")
    summary = {
        "type": "summary",
        "source": spec.target,
        "files": predictions + len(failed),
        "predicted": predictions,
        "failed": failed,
    }
    text = f"{predictions} of {predictions + len(failed)} videos predicted"
    if failed:
        text += f"; {len(failed)} could not be read: " + ", ".join(f["source"] for f in failed)
    out.emit(summary, text)
    if failed and not predictions:
        from rsanet.cli import CLIError

        raise CLIError(f"no video in {spec.target} could be read")
    return 1 if failed else 0


def _predict_clip(args, predictor, spec, out: Output) -> int:
    prediction = predictor.predict_file(spec.target)
    out.emit(
        prediction.to_dict(),
        f"{prediction.source}: {_top_text(prediction.top)} ({prediction.latency_ms:.0f} ms)",
    )
    return 0


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: stop the run, then write the summary and flush the outputs."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _StopSignals:
    """SIGTERM handled like SIGINT (raises :class:`Interrupted`), except inside
    :meth:`critical` sections (an alert half-delivered) where the stop waits for the section
    to end, and after :meth:`defer` (while outputs are flushed) where it is only recorded.
    Handlers are installed in the main thread only and restored on leaving the block."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self._depth = 0
        self._pending = False
        self._deferred = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: object) -> None:
        self.received = self.received or signal.Signals(number).name
        if self._deferred or self._depth:
            self._pending = True
            return
        raise Interrupted(self.received)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending and not self._deferred:
                self._pending = False
                raise Interrupted(self.received or "SIGINT")

    def defer(self) -> None:
        self._deferred = True


def _one_line(error: BaseException | str) -> str:
    """An error (or a reason) as one redacted line."""
    from rsanet.inference.redact import redact_text

    text = " ".join(str(error).split())
    return redact_text(text or type(error).__name__)


def _predict_windows(args, predictor, spec, out: Output) -> int:
    from dataclasses import replace

    from rsanet.cli import CLIError
    from rsanet.inference import (
        AlertSinks,
        Backoff,
        LiveAnalysis,
        SourceError,
        decode_frames,
        pyav_opener,
    )

    window = args.window_seconds or WINDOW_SECONDS
    stride = args.stride_seconds or window / 2
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
    stop = _StopSignals()

    def on_frame(frame, latest) -> None:
        with stop.critical():
            sinks.on_frame(frame, latest)

    live = spec.is_live or args.live
    timeout = (2 * args.timeout, args.timeout)
    try:
        if live:
            opener = pyav_opener(
                spec,
                short_side=predictor.short_side,
                keep_display=bool(args.annotate),
                timeout=timeout,
            )
            analysis = LiveAnalysis(
                predictor,
                opener,
                window=window,
                stride=stride,
                source=str(spec),
                buffer_seconds=args.buffer_seconds,
                reconnect=spec.is_live,
                backoff=Backoff(
                    initial=args.reconnect_delay, maximum=max(30.0, args.reconnect_delay)
                ),
                max_reconnects=args.max_reconnects,
                on_frame=on_frame,
                on_outage=lambda outage: out.emit(
                    outage.to_dict(), outage.describe(), stream=sys.stderr
                ),
            )
        else:
            frames = decode_frames(
                spec, short_side=predictor.short_side, keep_display=bool(args.annotate)
            )
            analysis = predictor.analyse(
                frames, window=window, stride=stride, source=str(spec), on_frame=on_frame
            )
    except BaseException:
        sinks.close()
        raise
    failure: Exception | None = None
    with stop:
        try:
            for result in analysis:
                with stop.critical():  # a window and its alerts are delivered whole
                    out.emit(result.to_dict(), _window_text(result))
                    sinks.on_result(result)
        except KeyboardInterrupt as interrupt:
            analysis.interrupted = True
            stop.received = stop.received or getattr(interrupt, "name", "SIGINT")
        except Exception as error:  # the run ends, but never without its summary
            failure = error
        finally:
            stop.defer()  # a second signal must not cut the flushing short
            analysis.close()
            sinks.close()
    summary = replace(
        analysis.summary(),
        signal=stop.received if analysis.interrupted else None,
        alerts=sinks.fired,
        delivery=sinks.delivery(),
    )
    if isinstance(failure, SourceError) and summary.frames == 0:
        raise failure  # nothing was read: a plain error (wrong URL, camera off)
    errors = [summary.error] if summary.error else []
    if failure is not None:
        errors.append(_one_line(failure))
    errors += sinks.failures
    if errors:
        summary = replace(summary, error="; ".join(errors))
    out.emit(summary.to_dict(), summary.describe())
    if failure is not None and not isinstance(failure, ValueError | OSError):
        raise failure  # a bug: its traceback, after the summary
    if not (summary.windows or summary.frames or summary.interrupted or summary.error):
        raise CLIError(f"{spec}: no frame could be read")
    return 1 if summary.error or summary.lost_alerts else 0


def _check_outputs(args: argparse.Namespace, spec) -> None:
    """Before anything is read or written: an output must not be an input nor the other
    output, must be writable, and an annotated video needs a known container."""
    from pathlib import Path

    from rsanet.atomic import refuse_overwrite, remove_stale_temporaries
    from rsanet.inference.annotate import container_format
    from rsanet.inference.sinks import check_writable

    inputs = [args.checkpoint, args.onnx, args.rules]
    if spec.kind == "file":
        inputs.append(spec.target)
    if args.annotate:
        refuse_overwrite(args.annotate, [*inputs, args.events], what="--annotate output")
        container_format(args.annotate)
        check_writable(args.annotate, "--annotate")
        remove_stale_temporaries(Path(args.annotate))  # left by a killed run
    if args.events:
        refuse_overwrite(args.events, inputs, what="--events log")
        check_writable(args.events, "--events")


def run(args: argparse.Namespace) -> int:
    """``rsanet predict``: every error is one line with no secret in it (exit 2)."""
    from rsanet.cli import CLIError

    try:
        return _run(args)
    except (CLIError, ValueError, FileNotFoundError) as error:
        raise CLIError(_one_line(error)) from None
    except OSError as error:  # a full disk, an unwritable output: one line, not a traceback
        reason = error.strerror or str(error)
        if error.filename is not None and str(error.filename) not in reason:
            reason = f"{error.filename}: {reason}"
        raise CLIError(_one_line(reason)) from None


def _run(args: argparse.Namespace) -> int:
    from rsanet.cli import CLIError
    from rsanet.inference import parse_source

    _check_args(args)
    spec = parse_source(args.source)
    if spec.kind == "folder" and (
        args.live or args.annotate or args.rules or args.window_seconds or args.stride_seconds
    ):
        raise CLIError(
            "a folder gets clip-level predictions: --live, --window-seconds, "
            "--stride-seconds, --rules and --annotate need a file or a stream"
        )
    if args.live and spec.kind != "file":
        raise CLIError(f"--live replays a file; {spec} is a {spec.kind}")
    _check_outputs(args, spec)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    predictor = build_predictor(args)
    out = Output(args.json)
    if spec.kind == "folder":
        return _predict_folder(args, predictor, spec, out)
    windowed = (
        spec.is_live
        or args.live
        or any((args.window_seconds, args.stride_seconds, args.rules, args.annotate))
    )
    if not windowed:
        return _predict_clip(args, predictor, spec, out)
    return _predict_windows(args, predictor, spec, out)
