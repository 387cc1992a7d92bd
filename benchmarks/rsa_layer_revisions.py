"""The RSA layer of this checkout against the same layer at an earlier git revision, timed in
one process in ABBA order.

    python benchmarks/rsa_layer_revisions.py REV [--threads 2] [--pairs 20]
                                             [--shapes stage1 ...]

Separate runs of ``benchmarks/rsa_layer.py`` on a shared machine move by more than a
refactoring changes, and even two calls in a fixed order favour the first (the second one
meets the allocator and caches the first left behind). So both versions are loaded side by
side (the old package from ``git archive REV``, renamed ``rsanet_at_rev``), built with the
same parameters, and called in turns whose order flips each pair (old-new, new-old, ...).
Printed per shape and pass: the median milliseconds of each, and the median over pairs of
new / old (below 1: this checkout is faster). Shapes as in ``rsa_layer.py`` (RSANet-R50's
RSA layers, batch 1, 8 frames, nh 8, 5x7x7, float32).
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from rsanet.layers import RSA

SHAPES = {"stage1": (64, 56), "stage2": (128, 28), "stage3": (256, 14), "stage4": (512, 7)}
OLD_NAME = "rsanet_at_rev"


def import_revision(revision: str, folder: Path):
    """``rsanet.layers.RSA`` of ``revision``, imported as ``rsanet_at_rev`` from ``folder``."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "src/rsanet"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / OLD_NAME
    (folder / "src" / "rsanet").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text()
        text = re.sub(r"\brsanet\.", f"{OLD_NAME}.", text)
        text = re.sub(r"\bfrom rsanet import\b", f"from {OLD_NAME} import", text)
        text = re.sub(r"^import rsanet$", f"import {OLD_NAME}", text, flags=re.M)
        path.write_text(text)
    sys.path.insert(0, str(folder))
    from rsanet_at_rev.layers import RSA as OldRSA

    return OldRSA


def run(layer, clip: torch.Tensor, mode: str) -> None:
    """One inference forward ("fwd") or one training step's forward and backward."""
    if mode == "fwd":
        with torch.no_grad():
            layer(clip)
    else:
        layer(clip).sum().backward()


def compare(old_cls, channels: int, side: int, pairs: int) -> list[str]:
    torch.manual_seed(0)
    new = RSA(channels, channels, num_heads=8, kernel_size=(5, 7, 7))
    old = old_cls(channels, channels, num_heads=8, kernel_size=(5, 7, 7))
    old.load_state_dict(new.state_dict())
    x = torch.randn(1, channels, 8, side, side)
    with torch.no_grad():
        difference = (new(x) - old(x)).abs().max().item()
    lines = []
    for mode, count in (("fwd", pairs), ("fwd+bwd", max(6, pairs // 2))):
        clip = x.clone().requires_grad_(mode != "fwd")

        for layer in (old, new, old, new):  # warm-up
            run(layer, clip, mode)
        times: dict[str, list[float]] = {"old": [], "new": []}
        ratios = []
        for pair in range(count):
            order = [("old", old), ("new", new)]
            for name, layer in order if pair % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                run(layer, clip, mode)
                times[name].append((time.perf_counter() - start) * 1e3)
            ratios.append(times["new"][-1] / times["old"][-1])
        lines.append(
            f"{mode:8s} old {statistics.median(times['old']):7.1f} ms  new "
            f"{statistics.median(times['new']):7.1f} ms  new/old {statistics.median(ratios):.3f} "
            f"({count} pairs); max |new - old| = {difference:.2e}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="the git revision to compare with (e.g. HEAD~3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=20, help="forward pairs (training: half)")
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=sorted(SHAPES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        old_cls = import_revision(args.revision, Path(folder))
        print(
            f"RSA layer: this checkout (new) against {args.revision} (old), {args.threads} threads"
        )
        for shape in args.shapes:
            for line in compare(old_cls, *SHAPES[shape], args.pairs):
                print(f"{shape:7s}{line}", flush=True)


if __name__ == "__main__":
    main()
