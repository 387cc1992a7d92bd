"""``rsanet predict SOURCE``: clip-level predictions of files and folders, sliding windows over
long videos and live streams, alerts and annotated videos (see ``docs/deploy.md``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

WINDOW_SECONDS = 2.0


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
    parser.add_argument("--checkpoint", metavar="PATH", help="an rsanet checkpoint")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="run the checkpoint with PyTorch (default) or an exported ONNX file",
    )
    parser.add_argument("--onnx", metavar="FILE", help="the ONNX file for --backend onnxruntime")
    parser.add_argument("--top-k", type=int, default=5, help="labels per prediction (5)")
    parser.add_argument("--size", type=int, help="crop side (default: checkpoint's, else 224)")
    parser.add_argument(
        "--window-seconds",
        type=float,
        metavar="S",
        help=f"sliding windows of S seconds (default {WINDOW_SECONDS:g} for "
        "streams; files get one clip-level prediction without it)",
    )
    parser.add_argument(
        "--stride-seconds",
        type=float,
        metavar="S",
        help="a window every S seconds (default: half the window)",
    )
    parser.add_argument(
        "--smoothing",
        type=int,
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
    parser.add_argument("--events", metavar="OUT.jsonl", help="append alert events to this file")
    parser.add_argument("--webhook", metavar="URL", help="POST each alert event as JSON to URL")
    parser.add_argument(
        "--annotate",
        metavar="OUT.mp4",
        help="write the video with the current label and score drawn on it",
    )
    parser.add_argument(
        "--buffer-seconds",
        type=float,
        metavar="S",
        help="stream time buffered before frames are dropped (default: window)",
    )
    parser.add_argument(
        "--max-reconnects",
        type=int,
        metavar="N",
        help="give up after N failed reconnections in a row (default: never)",
    )
    parser.add_argument(
        "--reconnect-delay",
        type=float,
        default=0.5,
        metavar="S",
        help="first reconnection delay, doubled per attempt up to 30 s (0.5)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="a network read waiting longer is a stall (5; opening: 2x)",
    )
    parser.add_argument("--threads", type=int, help="PyTorch / ONNX Runtime threads")
    parser.set_defaults(func=run)


# -- setup -----------------------------------------------------------------------------


def _check_args(args: argparse.Namespace) -> None:
    from rsanet.cli import CLIError

    for name in ("top_k", "size", "smoothing", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    for name in ("window_seconds", "stride_seconds", "buffer_seconds", "timeout"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise CLIError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.max_reconnects is not None and args.max_reconnects < 0:
        raise CLIError(f"--max-reconnects must be >= 0, got {args.max_reconnects}")
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
        classifier = load_classifier(args.checkpoint)
        size = args.size or classifier.input_size or 224
        return Predictor(
            TorchBackend(classifier.model),
            classifier.classes,
            num_frames=classifier.num_frames,
            size=size,
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
    """Prints results as text or JSON lines (stdout), notices on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, record: dict[str, Any], text: str, *, stream=None) -> None:
        if self.as_json:
            print(json.dumps(record), flush=True)
        else:
            print(text, file=stream or sys.stdout, flush=True)

    def notice(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


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


class _Sinks:
    """Alerts, event log, webhook and annotated video of one windowed run."""

    HOLD_SECONDS = 3.0  # how long an alert stays drawn on the annotated video

    def __init__(self, args, predictor, out: Output) -> None:
        from rsanet.inference import AlertEngine, Annotator, EventLog, WebhookSink, load_rules

        self.out = out
        self.engine = self.log = self.webhook = self.annotator = None
        self.alert_label: str | None = None
        self.alert_until = -1.0
        self.segment = 0
        try:
            if args.rules:
                self.engine = AlertEngine(load_rules(args.rules), predictor.classes)
            if args.events:
                self.log = EventLog(args.events)
            if args.webhook:
                self.webhook = WebhookSink(args.webhook)
            if args.annotate:
                self.annotator = Annotator(args.annotate)
        except BaseException:
            self.close()
            raise

    def on_frame(self, frame, latest) -> None:
        if self.annotator is None:
            return
        label = score = None
        if latest is not None and latest.segment == frame.segment:
            label, score = latest.top[0]
        alert = self.alert_label if frame.time <= self.alert_until else None
        image = frame.display if frame.display is not None else frame.image
        self.annotator.write(image, frame.time, label, score, alert=alert)

    def on_result(self, result) -> None:
        if self.engine is None:
            return
        if result.segment != self.segment:  # after an outage conditions start afresh
            self.segment = result.segment
            self.engine.reset()
        for event in self.engine.update(result):
            self.out.emit(event.to_dict(), event.describe())
            self.alert_label, self.alert_until = event.label, event.time + self.HOLD_SECONDS
            for sink in (self.log, self.webhook):
                if sink is not None:
                    sink.write(event)

    def close(self) -> None:
        for sink in (self.annotator, self.log, self.webhook):
            if sink is not None:
                sink.close()


def _predict_windows(args, predictor, spec, out: Output) -> int:
    from rsanet.cli import CLIError
    from rsanet.inference import Backoff, LiveAnalysis, decode_frames, pyav_opener

    window = args.window_seconds or WINDOW_SECONDS
    stride = args.stride_seconds or window / 2
    sinks = _Sinks(args, predictor, out)
    live = spec.is_live or args.live
    timeout = (2 * args.timeout, args.timeout)
    if live:
        opener = pyav_opener(
            spec, short_side=predictor.short_side, keep_display=bool(args.annotate), timeout=timeout
        )
        analysis = LiveAnalysis(
            predictor,
            opener,
            window=window,
            stride=stride,
            source=str(spec),
            buffer_seconds=args.buffer_seconds,
            reconnect=spec.is_live,
            backoff=Backoff(initial=args.reconnect_delay),
            max_reconnects=args.max_reconnects,
            on_frame=sinks.on_frame,
            on_outage=lambda outage: out.emit(
                outage.to_dict(), outage.describe(), stream=sys.stderr
            ),
        )
    else:
        frames = decode_frames(
            spec, short_side=predictor.short_side, keep_display=bool(args.annotate)
        )
        analysis = predictor.analyse(
            frames, window=window, stride=stride, source=str(spec), on_frame=sinks.on_frame
        )
    try:
        for result in analysis:
            out.emit(result.to_dict(), _window_text(result))
            sinks.on_result(result)
    except KeyboardInterrupt:
        analysis.interrupted = True
    finally:
        analysis.close()
        sinks.close()
    summary = analysis.summary()
    out.emit(summary.to_dict(), summary.describe())
    if summary.windows == 0 and summary.frames == 0 and not summary.interrupted:
        raise CLIError(f"{spec}: no frame could be read")
    return 1 if summary.error else 0


def run(args: argparse.Namespace) -> int:
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
