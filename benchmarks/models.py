"""Whole-network cost: inference and training-step time, activation and peak memory, against
``tsn_r50`` (the same backbone without temporal modelling) measured in the same run.

    python benchmarks/models.py [--models rsanet_r50 tsm_r50 uniformer_s ...] [--baseline tsn_r50]
                                [--frames 8] [--native-frames] [--size 224] [--batch 2]
                                [--repeats 3] [--checkpointing] [--bf16] [--channels-last]
                                [--model-options JSON] [--inference-only] [--device cpu] [--json]

Inference is one clip (1, 3, T, S, S) without gradients; a training step is forward,
cross-entropy and backward of a batch. ``--native-frames`` gives every model a clip of its
own length (its factory's ``num_frames``: 16 for MViT and UniFormer, 32 for ViViT-B) instead of
``--frames``; ``--bf16`` adds each model run under bfloat16 autocast (``MODEL+bf16``, as
``train.precision=bf16`` trains), so that ``--baseline`` set to one of the models gives
that model's bf16 speed-up; ``--channels-last`` adds each model (and each bf16 variant) fed
channels-last clips (``MODEL+cl``, as ``train.channels_last`` trains); ``--model-options``
passes the same keyword arguments to every model's factory (e.g. the RSA layers'
neighbourhood); ``--inference-only`` measures parameters, GFLOPs and inference time only
(the full-size video transformers' training steps take minutes on a CPU). "Activation
memory" is the size of the tensors that autograd keeps for backward (distinct storages,
parameters excluded); "peak" is the most memory PyTorch allocated during the step. Ratios
are model / baseline (lower is better).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import describe, interleaved_medians, machine, peak_memory_mb  # noqa: E402

from rsanet.layers import set_activation_checkpointing  # noqa: E402
from rsanet.models import create_model, profile_model  # noqa: E402


def activation_memory_mb(
    model: torch.nn.Module, clip: torch.Tensor, precision: contextlib.AbstractContextManager
) -> float:
    """Distinct storages that autograd saves for backward in one forward (run under
    ``precision``), parameters excluded."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor), precision:
        logits = model(clip)
    del logits
    return sum(storages.values()) / 2**20


def gflops(name: str, frames: int, size: int, num_classes: int, options: dict) -> float:
    """The model's GFLOPs on one clip (fvcore), or NaN where fvcore is not installed."""
    try:
        return profile_model(
            name, frames=frames, size=size, num_classes=num_classes, **options
        ).gflops
    except ImportError:
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["rsanet_r50"])
    parser.add_argument("--baseline", default="tsn_r50")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument(
        "--native-frames", action="store_true", help="each model at its own clip length"
    )
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2, help="clips per training step")
    parser.add_argument("--num-classes", type=int, default=174)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--checkpointing", action="store_true", help="also measure with RSA checkpointing"
    )
    parser.add_argument("--bf16", action="store_true", help="also measure under bfloat16 autocast")
    parser.add_argument(
        "--channels-last", action="store_true", help="also measure on channels-last clips"
    )
    parser.add_argument(
        "--model-options", type=json.loads, default={}, help="factory keyword arguments (JSON)"
    )
    parser.add_argument(
        "--inference-only", action="store_true", help="skip training steps and memory"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    device = args.device
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    names = [args.baseline, *args.models]
    variants = {name: name for name in names}
    if args.checkpointing:
        variants.update({f"{name}+ckpt": name for name in args.models})
    if args.bf16:
        variants.update({f"{name}+bf16": name for name in args.models})
    if args.channels_last:  # every variant but the checkpointed ones, on channels-last clips
        variants.update(
            {f"{label}+cl": name for label, name in variants.items() if "+ckpt" not in label}
        )
    models, frames = {}, {}
    for label, name in variants.items():
        kwargs = {} if args.native_frames else {"num_frames": args.frames}
        model = create_model(name, num_classes=args.num_classes, **kwargs, **args.model_options)
        if label.endswith("+ckpt"):
            set_activation_checkpointing(model)
        models[label] = model.to(device)
        frames[label] = int(getattr(model, "num_frames", args.frames))
    clips = {
        t: torch.randn(1, 3, t, args.size, args.size, device=device) for t in set(frames.values())
    }
    batches = {t: torch.randn(args.batch, 3, t, args.size, args.size, device=device) for t in clips}
    labels = torch.randint(0, args.num_classes, (args.batch,), device=device)

    device_type = torch.device(device).type

    def precision(label: str) -> torch.autocast:
        return torch.autocast(device_type, torch.bfloat16, enabled="+bf16" in label)

    def layout(label: str, clip: torch.Tensor) -> torch.Tensor:
        """The clip as the variant reads it (converted in the timed call, as training does)."""
        return (
            clip.contiguous(memory_format=torch.channels_last_3d) if label.endswith("+cl") else clip
        )

    def inference(label, model, clip):
        def run():
            model.eval()
            with torch.no_grad(), precision(label):
                model(layout(label, clip))

        return run

    def train_step(label, model, batch):
        def run():
            model.train()
            with precision(label):
                logits = model(layout(label, batch))
            F.cross_entropy(logits.float(), labels).backward()
            model.zero_grad(set_to_none=True)

        return run

    candidates = {}
    for label, model in models.items():
        if not label.endswith("+ckpt"):
            candidates[f"{label}/inference"] = inference(label, model, clips[frames[label]])
        if not args.inference_only:
            candidates[f"{label}/train"] = train_step(label, model, batches[frames[label]])
    times = interleaved_medians(candidates, repeats=args.repeats, warmup=1, device=device)

    nan = float("nan")
    rows = {}
    for label, model in models.items():
        name = variants[label]
        model.train()
        batch = batches[frames[label]]
        rows[label] = {
            "frames": frames[label],
            "params": sum(p.numel() for p in model.parameters()),
            "gflops": round(
                gflops(name, frames[label], args.size, args.num_classes, args.model_options), 2
            ),
            "inference_ms": round(times.get(f"{label}/inference", nan), 1),
            "train_step_ms": round(times.get(f"{label}/train", nan), 1),
            "activation_mb": nan
            if args.inference_only
            else round(activation_memory_mb(model, layout(label, batch), precision(label)), 1),
            "train_peak_mb": nan
            if args.inference_only
            else round(peak_memory_mb(train_step(label, model, batch), device), 1),
        }
    base = rows[args.baseline]
    for row in rows.values():
        row["inference_ratio"] = round(row["inference_ms"] / base["inference_ms"], 2)
        row["train_ratio"] = round(row["train_step_ms"] / base["train_step_ms"], 2)
        row["activation_ratio"] = round(row["activation_mb"] / base["activation_mb"], 2)
        row["gflops_ratio"] = round(row["gflops"] / base["gflops"], 2)

    result = {
        "machine": machine(device),
        "frames": "native" if args.native_frames else args.frames,
        "size": args.size,
        "batch": args.batch,
        "baseline": args.baseline,
        "models": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    length = "native frames" if args.native_frames else f"{args.frames} frames"
    print(
        f"{describe(result['machine'])}; "
        f"{length} x {args.size} x {args.size}, train batch {args.batch}, "
        f"medians of {args.repeats}; ratios against {args.baseline}"
    )
    print(
        f"{'model':20} {'T':>3} {'params':>8} {'GFLOPs':>7} {'x':>5} {'infer ms':>9} {'x':>5} "
        f"{'train ms':>9} {'x':>5} {'act MB':>8} {'x':>5} {'peak MB':>8}"
    )
    for label, r in rows.items():
        print(
            f"{label:20} {r['frames']:3d} {r['params'] / 1e6:7.2f}M "
            f"{r['gflops']:7.2f} {r['gflops_ratio']:5.2f} {r['inference_ms']:9.1f} "
            f"{r['inference_ratio']:5.2f} {r['train_step_ms']:9.1f} {r['train_ratio']:5.2f} "
            f"{r['activation_mb']:8.1f} {r['activation_ratio']:5.2f} {r['train_peak_mb']:8.1f}"
        )


if __name__ == "__main__":
    main()
