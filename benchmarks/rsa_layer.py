"""RSA layer speed and memory against the authors' order of computation, same run.

    python benchmarks/rsa_layer.py [--threads 2] [--repeats 7] [--device cpu] [--batch N]
                                   [--shapes stage1 ... tiny1 tiny2] [--profile] [--json]

Shapes are by default those of RSANet-R50's RSA layers: stages 1-4 (64, 128, 256, 512
channels at 8 x 56^2, 28^2, 14^2, 7^2), nh 8, 5x7x7, basic+relational kernel and context,
float32, batch 1; the speed targets name stages 3-4. ``tiny1`` and ``tiny2`` are the two
layers of ``rsanet_tiny`` that run in the authors' order as the CCTV job trains it (16 and
32 channels at 16 x 16^2 and 8^2, nh 4, 5x3x3, batch 16). ``--batch`` sets every shape's
batch. The
baseline re-states the authors' computation with the same parameters
(:func:`rsanet.layers.rsa_official_order.rsa_official_order`); "ratio" is baseline time /
our time (higher is better), "memory ratio" our peak / baseline peak (lower is better).
Where the fused kernels run (C++ on the CPU, ``rsanet.layers.native``; Triton with
``--device cuda``, ``rsanet.layers.gpu``), the same layer on PyTorch operators
(``RSANET_NATIVE=0 RSANET_TRITON=0``) is timed too, to show what the kernels themselves bring.
``--profile`` adds where our training step's time goes (torch.profiler: the operators, or
on a GPU the kernels, with the most self time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (  # noqa: E402
    R50_SHAPES,
    RSA_SHAPES,
    LayerShape,
    describe,
    interleaved_medians,
    machine,
    matmul_peak_gflops,
    peak_memory_mb,
    top_operators,
)

from rsanet.layers import gpu, native  # noqa: E402
from rsanet.layers.rsa_official_order import rsa_official_order  # noqa: E402

SWITCHES = ("RSANET_NATIVE", "RSANET_TRITON")  # the C++ and the Triton kernels


def without_fused_kernel(fn: Callable[[], object]) -> Callable[[], None]:
    def run():
        for switch in SWITCHES:
            os.environ[switch] = "0"
        try:
            fn()
        finally:
            for switch in SWITCHES:
                del os.environ[switch]

    return run


def measure(
    shape: LayerShape,
    repeats: int,
    device: str = "cpu",
    batch: int | None = None,
    profile: bool = False,
) -> dict:
    torch.manual_seed(0)
    layer = shape.layer().to(device)
    x = shape.clip(batch, device)
    batch, frames, side = x.shape[0], shape.frames, shape.side
    x_grad = x.clone().requires_grad_()
    ours, official = layer, (lambda clip: rsa_official_order(layer, clip))

    def train_step(fn):
        def step():
            fn(x_grad).square().mean().backward()

        return step

    def inference(fn):
        def run():
            with torch.no_grad():
                fn(x)

        return run

    candidates = {
        "official_forward": inference(official),
        "ours_forward": inference(ours),
        "official_train": train_step(official),
        "ours_train": train_step(ours),
    }
    fused = native.available(x) or gpu.available(x)
    if fused:  # the same layer without the fused kernels: what the kernels themselves bring
        candidates["operators_forward"] = without_fused_kernel(inference(ours))
        candidates["operators_train"] = without_fused_kernel(train_step(ours))
    times = interleaved_medians(candidates, repeats=repeats, device=device)
    memory = {
        f"{name}_{kind}_mb": peak_memory_mb(step(fn), device)
        for kind, step in (("train", train_step), ("forward", inference))
        for name, fn in (("official", official), ("ours", ours))
    }
    with torch.no_grad():
        max_difference = (layer(x) - rsa_official_order(layer, x)).abs().max().item()
    ours_macs = batch * layer.macs(frames, side, side)
    official_macs = batch * layer.official_macs(frames, side, side)
    return {
        "batch": batch,
        "computation": "official" if layer.uses_official_order() else "reassociated",
        "ours_gmacs": round(ours_macs / 1e9, 3),
        "official_gmacs": round(official_macs / 1e9, 3),
        "ours_forward_gflops_per_s": round(2 * ours_macs / times["ours_forward"] / 1e6, 1),
        "official_forward_gflops_per_s": round(
            2 * official_macs / times["official_forward"] / 1e6, 1
        ),
        **{f"{name}_ms": round(value, 2) for name, value in times.items()},
        **{name: round(value, 1) for name, value in memory.items()},
        "forward_ratio": round(times["official_forward"] / times["ours_forward"], 2),
        "train_ratio": round(times["official_train"] / times["ours_train"], 2),
        "train_memory_ratio": round(memory["ours_train_mb"] / memory["official_train_mb"], 2),
        **(
            {
                f"fused_{kind}_speedup": round(
                    times[f"operators_{kind}"] / times[f"ours_{kind}"], 2
                )
                for kind in ("forward", "train")
            }
            if fused
            else {}
        ),
        "max_abs_difference": max_difference,
        **({"train_profile": top_operators(train_step(ours), device)} if profile else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--batch", type=int, default=None, help="clips per pass (default: each shape's own)"
    )
    parser.add_argument("--shapes", nargs="+", choices=list(RSA_SHAPES), default=R50_SHAPES)
    parser.add_argument(
        "--profile", action="store_true", help="also show where our training step's time goes"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {
        "machine": machine(args.device),
        "batch": args.batch,
        "matmul_peak_gflops": round(matmul_peak_gflops(device=args.device), 1),
        "shapes": {},
    }
    for name in args.shapes:
        results["shapes"][name] = measure(
            RSA_SHAPES[name], args.repeats, args.device, args.batch, args.profile
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return
    batch = args.batch or "of each shape"
    print(f"{describe(results['machine'])}; batch {batch}, medians of {args.repeats}")
    header = (
        f"{'shape':8} {'pass':8} {'official ms':>12} {'ours ms':>9} {'ratio':>6} "
        f"{'official MB':>12} {'ours MB':>8} {'mem ratio':>9}"
    )
    print(header)
    for name, r in results["shapes"].items():
        for kind, label in (("forward", "fwd"), ("train", "fwd+bwd")):
            print(
                f"{name:8} {label:8} {r[f'official_{kind}_ms']:12.1f} {r[f'ours_{kind}_ms']:9.1f} "
                f"{r[f'{kind}_ratio' if kind == 'train' else 'forward_ratio']:6.2f} "
                f"{r[f'official_{kind}_mb']:12.1f} {r[f'ours_{kind}_mb']:8.1f} "
                f"{r[f'ours_{kind}_mb'] / r[f'official_{kind}_mb']:9.2f}"
            )
        print(
            f"{name:8} {r['computation']} order, batch {r['batch']}; forward {r['ours_gmacs']} "
            f"GMAC at {r['ours_forward_gflops_per_s']} GFLOP/s (authors' order "
            f"{r['official_gmacs']} GMAC at {r['official_forward_gflops_per_s']} GFLOP/s); "
            f"max |ours - official| = {r['max_abs_difference']:.2e}"
        )
        if "fused_train_speedup" in r:
            print(
                f"{name:8} fused kernels against the same layer on PyTorch operators: forward "
                f"{r['fused_forward_speedup']}x, fwd+bwd {r['fused_train_speedup']}x"
            )
    for name, r in results["shapes"].items():
        for row in r.get("train_profile", []):
            print(
                f"{name:8} our training step: {row['ms']:8.2f} ms {100 * row['share']:5.1f} %  "
                f"{row['name'][:90]}"
            )
    print(f"machine matmul peak: {results['matmul_peak_gflops']} GFLOP/s (float32, 2048^2)")


if __name__ == "__main__":
    main()
