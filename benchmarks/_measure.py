"""Shared measuring helpers for the benchmark scripts: interleaved medians, peak memory, and
a description of the machine. Benchmarks compare code measured in the same run only."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from rsanet.layers import native


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        # RSA's per-position products: the fused CPU kernels, or PyTorch operators
        "rsa_products": "fused kernels" if native.available(torch.empty(0)) else "operators",
    }


def interleaved_medians(
    candidates: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 2
) -> dict[str, float]:
    """Median milliseconds of each candidate, run in turns (A B C A B C ...) so that drifts
    of a shared machine hit all of them alike."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory_mb(fn: Callable[[], object]) -> float:
    """Peak of the memory that PyTorch allocated on the CPU while ``fn`` ran, above what was
    allocated when it started (from the profiler's allocation events)."""
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


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matmul rate (GFLOP/s, 2 FLOPs per multiply-accumulate): the
    roof against which the layers' achieved rates are read."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = interleaved_medians({"mm": lambda: a @ b}, repeats=repeats, warmup=1)["mm"]
    return 2 * size**3 / (best / 1e3) / 1e9
