"""How many cameras one machine follows with rsanet_tiny: ``rsanet serve`` (one process, the
windows of all cameras in batched forwards) against one ``rsanet predict --live`` process
per camera, measured in one run on the same machine state.

    python benchmarks/serving.py [--cameras 1 2 4 8 16] [--seconds 20] [--fps 25]
        [--window 2] [--stride 1] [--size 224] [--modes serve processes]
        [--serve-threads T] [--serve-max-batch B [B ...]] [--process-threads 1]
        [--precision fp32] [--keep-going] [--json]

Every camera is the same synthetic H.264 clip (320 x 240, a moving square, ``--fps``)
replayed at its real frame rate: serve reads it in a loop for ``--seconds``, each predict
process replays a clip of that length once. For each number of cameras N and each mode the
script reports the frames the readers dropped (a full ring: inference fell behind), the
windows skipped (a camera had a newer window ready before the old one ran), the windows
run, and the window latency (from the arrival of a window's last frame to its scores: mean
and 95th percentile). The largest N without a dropped frame is given for each mode, and
their ratio. A mode stops growing N after the first N where it drops frames (unless
``--keep-going``). Serve runs as ``rsanet serve`` does unless told otherwise: PyTorch's
threads (one per core) and its windows per forward (4 on a CPU); ``--serve-max-batch 4
32`` measures serve once for each value (rows ``serve/4``, ``serve/32``) in the same run.
Each predict process gets one PyTorch thread (``--process-threads``): N processes share
the cores. Both modes warm their model up before their cameras open, as they do in
service (serve's also at its batch). Weights are untrained
(speed does not depend on them); other work on the machine makes every figure worse (the
load average is printed with them). ``--precision bf16`` or ``int8`` runs both modes in that
precision (``rsanet serve/predict --precision``), int8 calibrated on 16 SynthMotion clips.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import describe, machine  # noqa: E402

import rsanet  # noqa: E402
from rsanet.models import save_checkpoint  # noqa: E402

SOURCE = Path(__file__).resolve().parents[1] / "src"


def make_clip(path: Path, seconds: float, fps: int) -> Path:
    """A synthetic H.264 clip: a square moving over a grey background, ``seconds`` long."""
    import av

    count = int(round(seconds * fps))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(count):
            image = np.full((240, 320, 3), 90, np.uint8)
            x, y = (7 * i) % 280, (3 * i) % 200
            image[y : y + 40, x : x + 40] = (230, 60, 40)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_checkpoint(path: Path, size: int) -> Path:
    torch.manual_seed(0)
    model = rsanet.create_model("rsanet_tiny", num_classes=4)
    classes = ["fighting", "normal", "falling", "running"]
    return save_checkpoint(path, model, classes=classes, input_size=[size, size])


#: clips int8 is calibrated on (SynthMotion, generated: their content does not change the speed)
CALIBRATION_CLIPS = 16


def calibration_config(folder: Path, size: int) -> Path:
    """A SynthMotion config (generated in memory) for the int8 calibration."""
    path = folder / "calibration.yaml"
    path.write_text(
        f"data: {{format: synthmotion, num_frames: 8, size: {size},\n"
        f"       train_options: {{num_videos: {CALIBRATION_CLIPS}}}}}\n"
    )
    return path


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def warm_up(predictor, batch: int) -> None:
    """A few forwards before the cameras start: the first calls of a model are slow (the
    fused kernels are built or loaded, memory is allocated), which is not serving."""
    clip = torch.zeros(batch, 3, predictor.num_frames, predictor.size, predictor.size)
    for _ in range(2):
        predictor.backend(clip)


def run_serve(
    cameras: int, clip: Path, checkpoint: Path, args, folder: Path, max_batch: int | None
) -> dict:
    """N cameras in one ``rsanet serve`` process (this one), for ``--seconds``, at most
    ``max_batch`` windows per forward (None: serve's default)."""
    from rsanet.serve.config import CameraConfig, ServeConfig, StorageConfig
    from rsanet.serve.server import Server

    config = ServeConfig(
        model=checkpoint,
        precision=args.precision,
        calibration=calibration_config(folder, args.size),
        calibration_clips=CALIBRATION_CLIPS,
        cameras=[CameraConfig(f"cam{i}", str(clip), loop=True) for i in range(cameras)],
        storage=StorageConfig(folder / f"serve-{cameras}-{max_batch}", retention_days=None),
        window_seconds=args.window,
        stride_seconds=args.stride,
        smoothing=1,
        max_batch=max_batch,
    )
    server = Server(config, http=False)
    warm_up(server.predictor, min(cameras, server.loop.max_batch))
    latencies: list[float] = []
    compute: list[float] = []
    lock = threading.Lock()
    forward = server.loop.on_result

    def on_result(camera, result) -> None:
        with lock:
            latencies.append(result.latency_ms)
            compute.append(result.compute_ms)
        forward(camera, result)

    server.loop.on_result = on_result
    started = time.monotonic()
    summary = server.run(duration=args.seconds)
    elapsed = time.monotonic() - started
    return {
        "dropped_frames": sum(c["dropped_frames"] for c in summary["cameras"]),
        "skipped_windows": sum(c.skipped for c in server.cameras),
        "windows": sum(c["windows"] for c in summary["cameras"]),
        "frames": sum(c["frames"] for c in summary["cameras"]),
        "mean_latency_ms": float(np.mean(latencies)) if latencies else None,
        "p95_latency_ms": percentile(latencies, 95),
        "mean_batch": (
            float(np.mean(server.loop.batch_sizes)) if server.loop.batch_sizes else None
        ),
        "mean_forward_ms": float(np.mean(compute)) if compute else None,
        "elapsed_s": elapsed,
    }


def run_processes(cameras: int, clip: Path, checkpoint: Path, args) -> dict:
    """One ``rsanet predict --live`` process per camera, all at once."""
    path = os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    command = [
        sys.executable, "-m", "rsanet", "predict", str(clip), "--checkpoint", str(checkpoint),
        "--live", "--window-seconds", str(args.window), "--stride-seconds", str(args.stride),
        "--smoothing", "1", "--json", "--threads", str(args.process_threads),
        "--precision", args.precision,
        "--calibration", str(calibration_config(clip.parent, args.size)),
        "--calibration-clips", str(CALIBRATION_CLIPS),
    ]  # fmt: skip
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(cameras)
    ]
    summaries, latencies, errors = [], [], []
    for process in processes:
        out, err = process.communicate(timeout=args.seconds * 4 + 120)
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        for line in lines:
            if line.get("type") == "summary":
                summaries.append(line)
            elif "latency_ms" in line:
                latencies.append(float(line["latency_ms"]))
        if process.returncode != 0 or not any(l.get("type") == "summary" for l in lines):
            errors.append((err.strip().splitlines() or ["no summary"])[-1])
    if errors:
        raise RuntimeError(f"rsanet predict failed: {errors[0]}")
    return {
        "dropped_frames": sum(s["dropped_frames"] for s in summaries),
        "skipped_windows": sum(s["skipped_windows"] for s in summaries),
        "windows": sum(s["windows"] for s in summaries),
        "frames": sum(s["frames"] for s in summaries),
        "mean_latency_ms": float(np.mean(latencies)) if latencies else None,
        "p95_latency_ms": percentile(latencies, 95),
        "mean_batch": 1.0,
        "elapsed_s": time.monotonic() - started,
    }


def row(mode: str, cameras: int, result: dict) -> str:
    def ms(value):
        return "-" if value is None else f"{value:.0f}"

    return (
        f"{mode:<10} {cameras:>4} {result['frames']:>7} {result['dropped_frames']:>8} "
        f"{result['skipped_windows']:>8} {result['windows']:>8} "
        f"{ms(result['mean_latency_ms']):>8} {ms(result['p95_latency_ms']):>8} "
        f"{result['mean_batch'] or 0:>6.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=20.0, help="per N and mode (20)")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--window", type=float, default=2.0, help="window seconds (2)")
    parser.add_argument("--stride", type=float, default=1.0, help="a window every S s (1)")
    parser.add_argument("--size", type=int, default=224, help="model input size (224)")
    parser.add_argument("--modes", nargs="+", choices=("serve", "processes"),
                        default=["serve", "processes"])  # fmt: skip
    parser.add_argument("--serve-threads", type=int,
                        help="PyTorch threads of serve (default: one per core)")  # fmt: skip
    parser.add_argument("--serve-max-batch", type=int, nargs="+", default=[None],
                        help="windows per forward; a serve run each (serve's: 4)")  # fmt: skip
    parser.add_argument("--process-threads", type=int, default=1,
                        help="PyTorch threads of each predict process (1)")  # fmt: skip
    parser.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                        help="inference precision of both modes (fp32)")  # fmt: skip
    parser.add_argument("--keep-going", action="store_true",
                        help="go on growing N after a mode dropped frames")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON line per measurement")
    args = parser.parse_args()

    if args.serve_threads:
        torch.set_num_threads(args.serve_threads)
    modes = []  # (label, serve's max batch)
    if "serve" in args.modes:
        for batch in args.serve_max_batch:
            label = f"serve/{batch}" if len(args.serve_max_batch) > 1 else "serve"
            modes.append((label, batch))
    if "processes" in args.modes:
        modes.append(("processes", None))
    folder = Path(tempfile.mkdtemp(prefix="rsanet-serving-"))
    clip = make_clip(folder / "camera.mp4", args.seconds, args.fps)
    checkpoint = make_checkpoint(folder / "tiny.pt", args.size)
    print(
        f"# {describe(machine())}; {os.cpu_count()} cores, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"# rsanet_tiny {args.size}x{args.size} {args.precision}, {args.fps} fps cameras, "
        f"window {args.window:g} s "
        f"every {args.stride:g} s, {args.seconds:g} s per N; serve: {torch.get_num_threads()} "
        f"thread(s), processes: {args.process_threads} thread(s) each"
    )
    if not args.json:
        print(
            f"{'mode':<10} {'N':>4} {'frames':>7} {'dropped':>8} {'skipped':>8} {'windows':>8} "
            f"{'mean ms':>8} {'p95 ms':>8} {'batch':>6}"
        )
    best = {mode: 0 for mode, _ in modes}
    failing = set()
    from rsanet.inference import Predictor

    warm_up(Predictor.from_checkpoint(checkpoint), 1)  # builds the fused kernels once
    for cameras in sorted(set(args.cameras)):
        for mode, max_batch in modes:
            if mode in failing and not args.keep_going:
                continue
            if mode == "processes":
                result = run_processes(cameras, clip, checkpoint, args)
            else:
                result = run_serve(cameras, clip, checkpoint, args, folder, max_batch)
            if args.json:
                print(json.dumps({"mode": mode, "cameras": cameras, **result}))
            else:
                print(row(mode, cameras, result), flush=True)
            if result["dropped_frames"] == 0 and mode not in failing:
                best[mode] = cameras
            elif result["dropped_frames"]:
                failing.add(mode)
    for mode, _ in modes:
        note = "" if mode in failing else " (no drops at the largest N tried)"
        print(f"# largest N without dropped frames, {mode}: {best[mode]}{note}")
    for mode, _ in modes:
        if mode == "processes" or "processes" not in best:
            continue
        if best["processes"]:
            print(f"# ratio {mode} / processes: {best[mode] / best['processes']:.2f}")
        else:
            print(f"# ratio {mode} / processes: n/a (processes dropped frames at every N)")


if __name__ == "__main__":
    main()
