"""Shared measuring helpers for the benchmark scripts: interleaved medians, peak memory, a
description of the machine, on the CPU or a CUDA device, and the RSA layer shapes the layer
benchmarks time. Benchmarks compare code measured in the same run only."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch

from rsanet.layers import RSA, gpu, native


class LayerShape(NamedTuple):
    """An RSA layer and its input: (clips, channels, frames, side, side)."""

    channels: int
    side: int
    frames: int = 8
    heads: int = 8
    kernel_size: tuple[int, int, int] = (5, 7, 7)
    clips: int = 1

    def layer(self, rsa_class: type = RSA) -> RSA:
        """The layer, built by ``rsa_class`` (another revision's ``RSA``, say)."""
        return rsa_class(
            self.channels, self.channels, num_heads=self.heads, kernel_size=self.kernel_size
        )

    def clip(self, clips: int | None = None, device: str = "cpu") -> torch.Tensor:
        """A random input of ``clips`` clips (default: the shape's own)."""
        size = (clips or self.clips, self.channels, self.frames, self.side, self.side)
        return torch.randn(*size, device=device)


#: RSANet-R50's four RSA shapes (8 x 56^2 ... 7^2, nh 8, 5x7x7, one clip), and the two
#: official-order layers of ``rsanet_tiny`` as the CCTV budget job trains it (16 frames of
#: 64 x 64: 16^2 and 8^2 maps, nh 4, 5x3x3, batches of 16 clips)
RSA_SHAPES = {
    "stage1": LayerShape(64, 56),
    "stage2": LayerShape(128, 28),
    "stage3": LayerShape(256, 14),
    "stage4": LayerShape(512, 7),
    "tiny1": LayerShape(16, 16, frames=16, heads=4, kernel_size=(5, 3, 3), clips=16),
    "tiny2": LayerShape(32, 8, frames=16, heads=4, kernel_size=(5, 3, 3), clips=16),
}
R50_SHAPES = ["stage1", "stage2", "stage3", "stage4"]


def machine(device: str = "cpu") -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    probe = torch.empty(0, device=device)
    # RSA's per-position products: fused kernels (C++ on the CPU, Triton on a GPU) or operators
    products = "operators"
    if native.available(probe):
        products = "fused kernels"
    elif gpu.available(probe):
        products = "fused Triton kernels"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(probe.device) if probe.is_cuda else "cpu",
        "torch": torch.__version__,
        "rsa_products": products,
    }


def describe(m: dict) -> str:
    """The first line of a benchmark's table: where it ran."""
    where = f"{m['device']} (host {m['cpu']})" if m["device"] != "cpu" else m["cpu"]
    return f"{where}, {m['threads']} threads, torch {m['torch']}, RSA {m['rsa_products']}"


def synchronize(device: str) -> None:
    """Wait for the device's queued work, so that a timer stops when the work is done."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    candidates: dict[str, Callable[[], object]],
    repeats: int = 7,
    warmup: int = 2,
    device: str = "cpu",
    settle: int = 0,
) -> dict[str, float]:
    """Median milliseconds of each candidate, run in turns (A B C A B C ...) so that drifts
    of a shared machine hit all of them alike. ``settle``: untimed calls of a candidate just
    before each of its timed ones, so that each is timed as it runs in a stream, one call
    after another (its caches and thread pools warm), not just after another candidate."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            for _ in range(settle):
                fn()
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory_mb(fn: Callable[[], object], device: str = "cpu") -> float:
    """Peak of the memory that PyTorch allocated on the device while ``fn`` ran, above what
    was allocated when it started (on the CPU from the profiler's allocation events, on CUDA
    from the caching allocator's statistics)."""
    if torch.device(device).type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - start) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # allocations are attributed to the op that made them, frees outside ops to "[memory]"
    events = [
        (event.time_range.start, event.self_cpu_memory_usage)
        for event in prof.events()
        if event.self_cpu_memory_usage
    ]
    current = peak = 0
    for _, delta in sorted(events):
        current += delta
        peak = max(peak, current)
    return peak / 2**20


def matmul_peak_gflops(size: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """This machine's float32 matmul rate (GFLOP/s, 2 FLOPs per multiply-accumulate): the
    roof against which the layers' achieved rates are read."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best = interleaved_medians({"mm": lambda: a @ b}, repeats, warmup=1, device=device)["mm"]
    return 2 * size**3 / (best / 1e3) / 1e9


def top_operators(
    fn: Callable[[], object], device: str = "cpu", steps: int = 3, rows: int = 8
) -> list[dict]:
    """Where the time of ``fn`` goes: the operators (on a GPU, the kernels) with the most self
    time, from torch.profiler; milliseconds per call and share of the total."""
    from torch.profiler import ProfilerActivity, profile

    on_gpu = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    fn()
    synchronize(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        synchronize(device)
    key = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key) > 0]
    total = sum(getattr(e, key) for e in events)
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    return [
        {"name": e.key, "ms": getattr(e, key) / 1e3 / steps, "share": getattr(e, key) / total}
        for e in events[:rows]
    ]
