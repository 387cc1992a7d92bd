"""``rsanet demo``: build a network, push a synthetic clip through it, report the figures."""

from __future__ import annotations

import argparse

from rsanet.cli._args import add_model_shape_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="build a model and run one synthetic clip through it (shapes, params, FLOPs, time)",
        description="Build MODEL, push one random clip (1, 3, FRAMES, SIZE, SIZE) through it "
        "and print the output shape, parameters, GFLOPs and forward time. Needs no data.",
    )
    parser.add_argument("--model", default="rsanet_tiny", help="registered model name")
    add_model_shape_options(parser, frames=8, size=64, num_classes=12)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from rsanet.models import create_model, profile_model

    model = create_model(args.model, num_classes=args.num_classes, num_frames=args.frames).eval()
    clip = torch.randn(1, 3, args.frames, args.size, args.size)
    with torch.no_grad():
        model(clip)  # warm-up
        start = time.perf_counter()
        logits = model(clip)
        elapsed = time.perf_counter() - start
    profile = profile_model(model, frames=args.frames, size=args.size)
    print(f"model        {args.model}")
    print(f"input        {tuple(clip.shape)} (N, C, T, H, W)")
    print(f"output       {tuple(logits.shape)} (N, classes)")
    print(f"parameters   {profile.params / 1e6:.2f} M")
    print(f"GFLOPs       {profile.gflops:.3f} (multiply-accumulates of one clip)")
    print(f"forward      {elapsed * 1e3:.1f} ms on {torch.get_num_threads()} CPU threads")
    return 0
