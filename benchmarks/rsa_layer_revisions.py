"""The RSA layer of this checkout against the same layer at an earlier git revision, timed in
one process in ABBA order; or a whole model's training step.

    python benchmarks/rsa_layer_revisions.py REV [--threads 2] [--pairs 20]
                                             [--shapes stage1 ... tiny1 tiny2]
    python benchmarks/rsa_layer_revisions.py REV --model rsanet_tiny [--model-options JSON]
        [--frames 16] [--size 64] [--batch 16] [--num-classes 13] [--bf16] [--channels-last]

Separate runs of ``benchmarks/rsa_layer.py`` on a shared machine move by more than a
refactoring changes, and even two calls in a fixed order favour the first (the second one
meets the allocator and caches the first left behind). So both versions are loaded side by
side (the old package from ``git archive REV``, renamed ``rsanet_at_rev``), built with the
same parameters, and called in turns whose order flips each pair (old-new, new-old, ...).
Printed per shape and pass: the median milliseconds of each, and the median over pairs of
new / old (below 1: this checkout is faster). Shapes as in ``rsa_layer.py``: RSANet-R50's
RSA layers (batch 1, 8 frames, nh 8, 5x7x7, float32) by default, ``tiny1``/``tiny2`` those
of ``rsanet_tiny`` that run in the authors' order (batch 16, 16 frames, nh 4, 5x3x3).
With ``--model`` both revisions build the registered model with the same weights and time
its training step (cross-entropy, forward and backward; under bfloat16 autocast with
``--bf16``, on channels-last clips with ``--channels-last``, as ``train.precision`` and
``train.channels_last`` train it).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import io
import json
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rsanet.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import R50_SHAPES, RSA_SHAPES, LayerShape  # noqa: E402

OLD_NAME = "rsanet_at_rev"


def import_revision(revision: str, folder: Path) -> None:
    """Makes the ``rsanet`` package of ``revision`` importable as ``rsanet_at_rev`` (from
    ``folder``)."""
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
        text = re.sub(r"\brsanet(\.|::)", rf"{OLD_NAME}\1", text)  # modules and op names
        text = re.sub(r"\bfrom rsanet import\b", f"from {OLD_NAME} import", text)
        text = re.sub(r"^import rsanet$", f"import {OLD_NAME}", text, flags=re.M)
        path.write_text(text)
    sys.path.insert(0, str(folder))


def old(module: str):
    """A module of the earlier revision's package, e.g. ``old("layers")``."""
    return importlib.import_module(f"{OLD_NAME}.{module}")


def run(layer, clip: torch.Tensor, mode: str) -> None:
    """One inference forward ("fwd") or one training step's forward and backward."""
    if mode == "fwd":
        with torch.no_grad():
            layer(clip)
    else:  # a dense output gradient, as a network's (that of .sum() is one broadcast value)
        layer(clip).square().mean().backward()


def abba(earlier, new, step, count: int) -> str:
    """Median milliseconds of ``step(earlier)`` and ``step(new)`` in turns whose order flips each
    pair, and the median of new / old over the pairs."""
    for module in (earlier, new, earlier, new):  # warm-up
        step(module)
    times: dict[str, list[float]] = {"old": [], "new": []}
    ratios = []
    for pair in range(count):
        order = [("old", earlier), ("new", new)]
        for name, module in order if pair % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            step(module)
            times[name].append((time.perf_counter() - start) * 1e3)
        ratios.append(times["new"][-1] / times["old"][-1])
    return (
        f"old {statistics.median(times['old']):7.1f} ms  new "
        f"{statistics.median(times['new']):7.1f} ms  new/old {statistics.median(ratios):.3f} "
        f"({count} pairs)"
    )


def compare(shape: LayerShape, pairs: int) -> list[str]:
    torch.manual_seed(0)
    new = shape.layer()
    earlier = shape.layer(old("layers").RSA)
    earlier.load_state_dict(new.state_dict())
    x = shape.clip()
    with torch.no_grad():
        difference = (new(x) - earlier(x)).abs().max().item()
    lines = []
    for mode, count in (("fwd", pairs), ("fwd+bwd", max(6, pairs // 2))):
        clip = x.clone().requires_grad_(mode != "fwd")
        timing = abba(earlier, new, functools.partial(run, clip=clip, mode=mode), count)
        lines.append(f"{mode:8s} {timing}; max |new - old| = {difference:.2e}")
    return lines


def compare_models(args: argparse.Namespace) -> str:
    """The training step of ``args.model`` at both revisions, with the same weights."""
    torch.manual_seed(0)
    options = dict(num_classes=args.num_classes, num_frames=args.frames, **args.model_options)
    new = create_model(args.model, **options).train()
    earlier = old("models").create_model(args.model, **options).train()
    earlier.load_state_dict(new.state_dict())
    clips = torch.randn(args.batch, 3, args.frames, args.size, args.size)
    labels = torch.randint(0, args.num_classes, (args.batch,))

    def train_step(model) -> None:
        batch = (
            clips.contiguous(memory_format=torch.channels_last_3d) if args.channels_last else clips
        )
        with torch.autocast("cpu", torch.bfloat16, enabled=args.bf16):
            logits = model(batch)
        F.cross_entropy(logits.float(), labels).backward()
        model.zero_grad(set_to_none=True)

    return abba(earlier, new, train_step, args.pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="the git revision to compare with (e.g. HEAD~3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=20, help="forward pairs (training: half)")
    parser.add_argument("--shapes", nargs="+", choices=list(RSA_SHAPES), default=R50_SHAPES)
    model = parser.add_argument_group("a model's training step instead of the layer's")
    model.add_argument("--model", help="a registered model name, e.g. rsanet_tiny")
    model.add_argument("--model-options", type=json.loads, default={}, help="factory arguments")
    model.add_argument("--frames", type=int, default=16)
    model.add_argument("--size", type=int, default=64)
    model.add_argument("--batch", type=int, default=16)
    model.add_argument("--num-classes", type=int, default=13)
    model.add_argument("--bf16", action="store_true", help="under bfloat16 autocast")
    model.add_argument("--channels-last", action="store_true", help="on channels-last clips")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        import_revision(args.revision, Path(folder))
        what = f"{args.model} training step" if args.model else "RSA layer"
        print(f"{what}: this checkout (new) against {args.revision} (old), {args.threads} threads")
        if args.model:
            variant = "+bf16" * args.bf16 + "+cl" * args.channels_last
            print(f"{args.model + variant:20s} {compare_models(args)}", flush=True)
            return
        for shape in args.shapes:
            for line in compare(RSA_SHAPES[shape], args.pairs):
                print(f"{shape:7s}{line}", flush=True)


if __name__ == "__main__":
    main()
