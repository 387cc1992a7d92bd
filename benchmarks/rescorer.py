"""What a rescorer adds to each window of a camera: one step of its stream against the
network's forward pass on that window, measured in one run.

    python benchmarks/rescorer.py [--models tsm_tiny rsanet_tiny] [--frames 16] [--size 64]
                                  [--classes 13] [--heads 5] [--hidden 48] [--threads 2]
                                  [--repeats 21] [--json]

The rescorer is the one ``rsanet fit-rescorer`` writes (``--heads`` GRUs of ``--hidden``
units; untrained: the time does not depend on the weights); a step is
:class:`rsanet.inference.rescorer.RescorerStream` called on one window's scores, as the
predictor calls it per camera. The networks run one clip (1, 3, T, S, S) in float32 under
``torch.no_grad``, the SynthCCTV jobs' shape by default. All are timed in one interleaved
loop (each timed call after an untimed one of the same candidate), and the rescorer's
median is printed as a share of each network's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import describe, interleaved_medians, machine  # noqa: E402

import rsanet  # noqa: E402
from rsanet.inference.rescorer import Rescorer, TemporalHead  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tsm_tiny", "rsanet_tiny"])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=13)
    parser.add_argument("--heads", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    classes = [f"class{i}" for i in range(args.classes)]
    heads = [TemporalHead(args.classes, args.hidden) for _ in range(args.heads)]
    stream = Rescorer(heads, classes, 2.0, 0.5, 1).stream()
    scores = np.random.default_rng(0).dirichlet(np.ones(args.classes))
    clip = torch.randn(1, 3, args.frames, args.size, args.size)
    networks = {
        name: rsanet.create_model(name, num_classes=args.classes, num_frames=args.frames).eval()
        for name in args.models
    }

    def forward(model):
        def run():
            with torch.no_grad():
                model(clip)

        return run

    candidates = {"rescorer step": lambda: stream(scores)}
    candidates.update({name: forward(model) for name, model in networks.items()})
    medians = interleaved_medians(candidates, repeats=args.repeats, warmup=3, settle=1)
    shares = {name: medians["rescorer step"] / medians[name] for name in networks}
    info = machine()
    if args.json:
        print(json.dumps({"machine": info, "ms": medians, "rescorer_share": shares}))
        return
    print(f"# {describe(info)}")
    print(
        f"# one window: clip (1, 3, {args.frames}, {args.size}, {args.size}), {args.classes} "
        f"classes; rescorer {args.heads} x GRU {args.hidden}; medians of {args.repeats}, "
        "interleaved"
    )
    for name, ms in medians.items():
        print(f"{name:<16} {ms:9.3f} ms")
    for name, share in shares.items():
        print(f"rescorer / {name:<12} {100 * share:6.2f} % of the forward pass")


if __name__ == "__main__":
    main()
