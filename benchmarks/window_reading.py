"""Reading training windows of camera recordings: RGB conversion with one kept FFmpeg
converter per thread (``rsanet.data.decoding.frame_to_rgb``, what the readers use) against
PyAV's default of a new converter for every frame (``frame.to_ndarray(format="rgb24")``),
measured in the same run.

    python benchmarks/window_reading.py [--sessions 6] [--windows 200] [--repeats 5] [--json]

Files: SynthCCTV recordings written into a temporary folder (``write_synthcctv``: 160 x
120, 10 frames per second, H.264 with a keyframe every 20 frames, 30 s each). Measured, one
thread, interleaved rounds, medians:

- conversion alone: every frame of the recordings, decoded once beforehand, converted to
  RGB by each method (milliseconds per frame);
- training windows: ``windows`` items of the SynthCCTV training configuration's dataset
  (2 s windows of 16 frames, whole frames squeezed to 64 x 64): open, seek, decode,
  convert, resize, normalise (milliseconds per window), with the readers' converter and
  with PyAV's per-frame one put in its place.

"ratio" = PyAV's default time over the kept converter's (above 1: the kept one is faster).
Both give the same pixels (``tests/data/test_decoding.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import interleaved_medians, machine  # noqa: E402

import rsanet.data.decoding as decoding  # noqa: E402
from rsanet.data import build_untrimmed_dataset  # noqa: E402
from rsanet.data.synthcctv import write_synthcctv  # noqa: E402


def per_frame_converter(frame, **options):
    """PyAV's default: the frame's own converter, set up anew for every frame."""
    return frame.reformat(format="rgb24", **options).to_ndarray()


def decoded_frames(folder: Path) -> list:
    """Every frame of the recordings, freshly decoded (a frame converted once keeps PyAV's
    converter, so each timing needs frames of its own)."""
    import av

    frames = []
    for path in sorted(folder.rglob("*.mp4")):
        with av.open(str(path)) as container:
            frames.extend(container.decode(video=0))
    return frames


def conversion_medians(folder: Path, converters: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds to convert every frame of the recordings, per converter, in
    interleaved rounds (decoding untimed)."""
    times: dict[str, list[float]] = {name: [] for name in converters}
    for _ in range(repeats):
        for name, convert in converters.items():
            frames = decoded_frames(folder)
            start = time.perf_counter()
            for frame in frames:
                convert(frame)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=6, help="SynthCCTV sessions written")
    parser.add_argument("--windows", type=int, default=200, help="training windows per round")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker
    kept = decoding.frame_to_rgb

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_synthcctv(folder, args.sessions, seconds=30.0)
        dataset = build_untrimmed_dataset(
            "aihub-cctv",
            folder,
            num_frames=16,
            size=64,
            full_frame=True,
            train=True,
            flip_mode="skip",
            window_s=2.0,
            windows_per_epoch=args.windows,
            quiet=True,
        )
        frames = len(decoded_frames(folder))

        def windows_with(convert):
            def run() -> None:
                decoding.frame_to_rgb = convert
                try:
                    for index in range(len(dataset)):
                        dataset[index]
                finally:
                    decoding.frame_to_rgb = kept

            return run

        window_ms = interleaved_medians(
            {"kept": windows_with(kept), "per_frame": windows_with(per_frame_converter)},
            repeats=args.repeats,
            warmup=1,
        )
        frame_ms = conversion_medians(
            folder, {"kept": kept, "per_frame": per_frame_converter}, args.repeats
        )
        recordings = len(list(folder.rglob("*.mp4")))

    results = {
        "machine": machine(),
        "recordings": recordings,
        "frames": frames,
        "windows": len(dataset),
        "ms_per_window": {name: ms / len(dataset) for name, ms in window_ms.items()},
        "ms_per_frame": {name: ms / frames for name, ms in frame_ms.items()},
    }
    results["ratio"] = {
        "windows": window_ms["per_frame"] / window_ms["kept"],
        "conversion": frame_ms["per_frame"] / frame_ms["kept"],
    }
    if args.json:
        print(json.dumps(results, indent=1))
        return
    info = results["machine"]
    print(f"{info['cpu']}, 1 thread, torch {info['torch']}; medians of {args.repeats} rounds")
    print(
        f"files: {recordings} SynthCCTV recordings (160 x 120, 30 s), {frames} frames; "
        f"{len(dataset)} training windows (16 frames of 2 s, 64 x 64)"
    )
    print("| measurement | PyAV per-frame converter | kept converter | ratio |")
    print("|---|---|---|---|")
    for label, key, unit in (
        ("training window, read and transformed", "windows", "ms_per_window"),
        ("RGB conversion of one frame", "conversion", "ms_per_frame"),
    ):
        per_frame, kept_ms = results[unit]["per_frame"], results[unit]["kept"]
        print(f"| {label} | {per_frame:.3f} ms | {kept_ms:.3f} ms | {results['ratio'][key]:.2f} |")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
