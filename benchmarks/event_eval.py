"""Event-level evaluation speed: ``rsanet eval-events``' run over a generated recording with
rsanet_tiny (untrained: speed does not depend on the weights).

    python benchmarks/event_eval.py [--seconds 60] [--fps 25] [--width 320] [--height 240]
        [--size 112] [--window 2] [--stride 1] [--threads 1] [--json]

A recording of ``--seconds`` (a square moving on grey, H.264) is written to a temporary
folder with an intervals file holding one event, then evaluated exactly as the command does
(:class:`rsanet.inference.event_eval.EventEvaluation`: decoding, windows, smoothing, the
default rules, the metrics; no figures). Printed: the wall time, the real-time factor
(video seconds / wall seconds; above 1: faster than real time) and the decoding passes per
video, counted independently of the evaluation by wrapping ``av.open`` (1: every frame is
decoded once). The load average is printed with the figures: other work on the machine
makes them worse.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

import rsanet
from rsanet.data import read_untrimmed
from rsanet.inference import Predictor, TorchBackend
from rsanet.inference.event_eval import EventEvaluation

CLASSES = ["fighting", "falling", "loitering", "normal"]


def write_recording(path: Path, seconds: float, fps: int, width: int, height: int) -> Path:
    """A moving square on grey, encoded frame by frame (never all frames in memory)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        side = max(8, height // 5)
        for i in range(round(seconds * fps)):
            frame = np.full((height, width, 3), 90, np.uint8)
            x = (i * 3) % (width - side)
            frame[height // 3 : height // 3 + side, x : x + side] = (240, 200, 40)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


class CountingOpen:
    """Wraps ``av.open`` and counts the containers opened for reading."""

    def __init__(self) -> None:
        self.count = 0
        self.original = av.open

    def __call__(self, *args, **kwargs):
        mode = kwargs.get("mode", args[1] if len(args) > 1 else "r")
        if mode == "r":
            self.count += 1
        return self.original(*args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--stride", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = rsanet.create_model("rsanet_tiny", num_classes=len(CLASSES))
    predictor = Predictor(TorchBackend(model), CLASSES, num_frames=model.num_frames, size=args.size)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_recording(root / "long.mp4", args.seconds, args.fps, args.width, args.height)
        (root / "intervals.csv").write_text(
            f"video,label,start_s,end_s\nlong.mp4,fighting,{args.seconds / 3:.1f},"
            f"{args.seconds / 2:.1f}\n"
        )
        data = read_untrimmed("intervals", root / "intervals.csv", root)
        evaluation = EventEvaluation(predictor, window=args.window, stride=args.stride)
        counter = CountingOpen()
        av.open = counter
        try:
            started = time.perf_counter()
            report, runs = evaluation.run(data.videos, tolerance=2.0)
            wall = time.perf_counter() - started
        finally:
            av.open = counter.original
    video_s = sum(run.duration_s for run in runs)
    result = {
        "model": "rsanet_tiny",
        "size": args.size,
        "recording": f"{args.seconds:g} s, {args.width}x{args.height} at {args.fps} fps",
        "window_s": args.window,
        "stride_s": args.stride,
        "threads": args.threads,
        "windows": sum(len(run.ends) for run in runs),
        "video_s": round(video_s, 3),
        "wall_s": round(wall, 3),
        "realtime_factor": round(video_s / wall, 2) if wall > 0 else None,
        "decode_passes_per_video": counter.count / len(runs),
        "failures": len(report["failures"]),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<24} {value}")
    return 0 if not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
