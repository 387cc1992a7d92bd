"""``rsanet visualize kernels``: the basic and relational kernels of an RSA layer, for a clip
and for the same clip played backwards (the paper's figure)."""

from __future__ import annotations

import argparse

from rsanet.cli._args import (
    add_checkpoint_option,
    add_crop_size_option,
    check_positive,
    crop_size,
)


def _position(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected t,y,x (three integers), got {text!r}")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "visualize",
        help="pictures of what a model learned",
        description="Pictures of what a model learned.",
    )
    what = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    kernels = what.add_parser(
        "kernels",
        help="basic and relational kernels of an RSA layer, forward and backward",
        description=(
            "Draw the basic and the relational kernel of an RSA layer at a query position "
            "(t x h x w grids of weights on the neighbours) for VIDEO's evaluation clip and "
            "for the same clip played backwards; the query in the backward clip is the same "
            "frame (t -> T - 1 - t). Writes PNGs and kernels.npz to DIR."
        ),
    )
    kernels.add_argument("video", metavar="VIDEO", help="a video file")
    add_checkpoint_option(kernels, required=True)
    kernels.add_argument("--out", metavar="DIR", required=True, help="output folder")
    kernels.add_argument(
        "--layer",
        metavar="NAME",
        help="RSA layer, e.g. layer2.1 or layer2.1.conv2 (default: the first)",
    )
    kernels.add_argument(
        "--position",
        type=_position,
        metavar="t,y,x",
        help="query: clip frame t, pixel row y and column x of the crop (default: the centre)",
    )
    kernels.add_argument("--head", type=int, default=0, help="attention head (0)")
    add_crop_size_option(kernels)
    kernels.add_argument("--list-layers", action="store_true", help="list the RSA layers")
    kernels.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rsanet.analysis import compare_kernels, draw_kernels, rsa_layers, video_clip
    from rsanet.cli import CLIError
    from rsanet.inference import load_classifier, parse_source

    classifier = load_classifier(args.checkpoint)
    if args.list_layers:
        for name, layer in rsa_layers(classifier.model):
            print(f"{name}: {layer.num_heads} heads, kernel {layer.kernel_size}")
        return 0
    check_positive(args, "size")
    spec = parse_source(args.video)
    if spec.kind != "file":
        raise CLIError(f"VIDEO must be a video file, got a {spec.kind}: {spec}")
    size = crop_size(args.size, classifier.input_size)
    clip, frames = video_clip(spec.target, num_frames=classifier.num_frames, size=size)
    comparison = compare_kernels(
        classifier.model,
        clip,
        layer=args.layer,
        position=args.position,
        head=args.head,
        frames=frames,
    )
    written = draw_kernels(comparison, args.out)
    print(comparison.describe())
    print("wrote " + ", ".join(str(path) for path in written))
    return 0
