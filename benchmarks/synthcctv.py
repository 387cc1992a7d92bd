"""SynthCCTV generation speed: ``write_synthcctv`` into a temporary folder, timed.

    python benchmarks/synthcctv.py [--sessions 4] [--seconds 30] [--fps 10] [--size 160x120]
        [--workers 0] [--json]

Printed: the recordings written, their total length and size, the wall time, and the
real-time factor (seconds of recording written per wall second, every camera counted;
above 20 is the target), with the share of the time spent rendering (the rest is H.264
encoding and writing). The load average is printed too: other work on the machine makes
the figures worse.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from rsanet.data.synthcctv import (
    CHUNK,
    SYNTHCCTV_CLASSES,
    plan_session,
    render_frames,
    session_labels,
    write_synthcctv,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    options = {"seconds": args.seconds, "fps": args.fps, "size": size}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        summary = write_synthcctv(folder, args.sessions, workers=args.workers, **options)
        wall = time.perf_counter() - start
    # rendering alone, the same recordings, no encoding
    start = time.perf_counter()
    for index, label in enumerate(session_labels(args.sessions, SYNTHCCTV_CLASSES, 0.25, 0)):
        plan = plan_session(0, index, label, **options)
        for camera in range(len(plan.cameras)):
            for first in range(0, plan.frames, CHUNK):
                render_frames(plan, camera, first, min(first + CHUNK, plan.frames))
    render = time.perf_counter() - start
    recorded = len(summary["recordings"]) * args.seconds
    result = {
        "recordings": len(summary["recordings"]),
        "recorded_s": recorded,
        "megabytes": round(summary["bytes"] / 1e6, 2),
        "wall_s": round(wall, 2),
        "real_time_factor": round(recorded / wall, 1),
        "render_share": round(float(np.clip(render / wall, 0, 1)), 2),
        "load_average": os.getloadavg()[0],
        "settings": {**options, "sessions": args.sessions, "workers": args.workers},
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['recordings']} recordings, {recorded:.0f} s of video, {result['megabytes']} MB "
        f"in {wall:.1f} s: real-time factor {result['real_time_factor']} "
        f"(rendering {result['render_share']:.0%} of it; load average "
        f"{result['load_average']:.2f})"
    )


if __name__ == "__main__":
    main()
