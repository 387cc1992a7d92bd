"""Inference in each precision against eager fp32 TSN-R50, measured in one run.

    python benchmarks/inference.py [--models rsanet_r50 tsn_r50] [--precisions fp32 bf16 int8]
                                   [--batches 1 4] [--frames 8] [--size 224] [--threads 2]
                                   [--repeats 5] [--calibration-clips 8]
                                   [--float-from layer4 ...] [--json]

Every model runs in every precision through
:func:`rsanet.inference.precision.prepare_model` (the code ``rsanet predict/serve
--precision`` run); the baseline, eager fp32 ``tsn_r50``, runs in the same interleaved
loop, so each ratio (time / baseline's time at the same batch) is measured under the same
conditions. Each timed call follows an untimed call of the same model, as in a stream of
windows: a model is not timed cold right after another one (ONNX Runtime's thread pools
and the caches would be measured along with it). int8 is calibrated on random clips here:
the speed does not depend on what it was calibrated on (the accuracy does: ``rsanet eval
--precision int8``). The achieved rate of each precision (2 x the model's multiply-
accumulates per clip / time: operations per second, whatever their type) is printed beside
the peak of a large matrix product in that precision on this machine (fp32 and bf16 by
PyTorch, int8 by ONNX Runtime's u8 x s8 MatMulInteger), measured in the same run.
fp32 and bf16 run twice: as predict and serve run them on a CPU (a ResNet-family network
is handed its clips in channels-last memory order) and with the clips as given (the rows
ending in "contiguous"); the line "channels-last clips ..., speed-up over contiguous"
gives each pair's ratio (contiguous time / channels-last time). ``--float-from BLOCK``
adds, for each model, int8 with that block and the rest in float (``rsanet predict
--precision int8 --float-from BLOCK``): what keeping the last layers in float costs.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import describe, interleaved_medians, machine  # noqa: E402

from rsanet.inference.precision import prepare_model, resolve_precision  # noqa: E402
from rsanet.models import create_model, profile_model  # noqa: E402

BASELINE = "tsn_r50"
#: the precisions run both ways: clips channels-last (what predict and serve do on a CPU)
#: and as given, the key of the second ending in CONTIGUOUS
FLOAT = ("fp32", "bf16")
CONTIGUOUS = " contiguous"


def torch_peak_gflops(dtype: torch.dtype, size: int = 2048) -> float:
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    ms = interleaved_medians({"mm": lambda: a @ b}, repeats=5, warmup=1)["mm"]
    return 2 * size**3 / (ms / 1e3) / 1e9


def int8_peak_gflops(threads: int, size: int = 2048) -> float:
    """ONNX Runtime's u8 x s8 integer matrix product (the kernel its int8 convolutions use)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    weight = np.random.default_rng(0).integers(-127, 127, (size, size), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])],
        "int8_peak",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    buffer = io.BytesIO()
    onnx.save(model, buffer)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    a = np.random.default_rng(1).integers(0, 255, (size, size), dtype=np.uint8)
    ms = interleaved_medians({"mm": lambda: session.run(None, {"a": a})}, repeats=5, warmup=1)
    return 2 * size**3 / (ms["mm"] / 1e3) / 1e9


def measure_peaks(precisions, threads: int) -> dict[str, float]:
    """GFLOP/s of a 2048^3 matrix product in fp32 and in each of ``precisions``."""
    peaks = {"fp32": torch_peak_gflops(torch.float32)}
    if "bf16" in precisions:
        peaks["bf16"] = torch_peak_gflops(torch.bfloat16)
    if "int8" in precisions:
        peaks["int8"] = int8_peak_gflops(threads)
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["rsanet_r50", "tsn_r50"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=174)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calibration-clips", type=int, default=8)
    parser.add_argument(
        "--float-from",
        nargs="+",
        default=[],
        metavar="BLOCK",
        help="also int8 with the network from BLOCK on in float (e.g. layer4)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    shape = (args.frames, args.size)
    gflops = {
        name: profile_model(name, frames=args.frames, size=args.size, num_classes=174).gflops
        for name in {BASELINE, *args.models}
    }
    runnable = {p: resolve_precision(p) for p in args.precisions}
    baseline = create_model(BASELINE, num_classes=args.num_classes).eval()
    candidates: dict[str, torch.nn.Module] = {}
    setup_s: dict[str, float] = {}
    for name in args.models:
        model = create_model(name, num_classes=args.num_classes).eval()
        variants = [(p, None, True) for p in args.precisions]
        variants += [(p, None, False) for p in args.precisions if p in FLOAT]
        if "int8" in args.precisions:
            variants += [("int8", block, True) for block in args.float_from]
        for precision, float_from, channels_last in variants:
            if runnable[precision] != precision:
                continue  # resolve_precision said why (one warning)
            calibration = [
                torch.randn(2, 3, *shape[:1], shape[1], shape[1])
                for _ in range(max(1, args.calibration_clips // 2))
            ]
            key = f"{name} {precision}" + (f" float-from {float_from}" if float_from else "")
            key += "" if channels_last else CONTIGUOUS
            start = time.perf_counter()
            candidates[key] = prepare_model(
                model,
                precision,
                calibration=lambda c=calibration: c,
                threads=args.threads,
                float_from=float_from,
                channels_last=channels_last,
            )
            setup_s[key] = time.perf_counter() - start

    # the roofs, measured before and after the models (the larger is kept: a shared machine
    # can be slowed at either moment)
    before = measure_peaks(runnable.values(), args.threads)
    rows = []
    for batch in args.batches:
        clip = torch.randn(batch, 3, args.frames, args.size, args.size)

        def run(model, clip=clip):
            with torch.inference_mode():
                return model(clip)

        timed = {f"{BASELINE} fp32 eager (baseline)": lambda: run(baseline)}
        timed.update({key: (lambda m=model: run(m)) for key, model in candidates.items()})
        ms = interleaved_medians(timed, repeats=args.repeats, warmup=1, settle=1)
        base = ms[f"{BASELINE} fp32 eager (baseline)"]
        for key, value in ms.items():
            name = key.split()[0]
            rows.append(
                {
                    "batch": batch,
                    "model": key,
                    "ms_per_clip": value / batch,
                    "vs_baseline": value / base,
                    # the profile's GFLOPs are multiply-accumulates (the papers' count): 2
                    # operations each, as in the peak
                    "gflops_per_s": 2 * gflops[name] * batch / (value / 1e3),
                }
            )
    after = measure_peaks(runnable.values(), args.threads)
    peaks = {key: max(value, after[key]) for key, value in before.items()}
    times = {(row["batch"], row["model"]): row["ms_per_clip"] for row in rows}
    channels_last = []
    for (batch, key), contiguous in times.items():
        if key.endswith(CONTIGUOUS):
            model = key.removesuffix(CONTIGUOUS)
            speed_up = contiguous / times[batch, model]
            channels_last.append({"batch": batch, "model": model, "speed_up": speed_up})

    result = {
        "machine": machine(),
        "clip": [3, args.frames, args.size, args.size],
        "gflops_per_clip": gflops,
        "precisions_run": runnable,
        "setup_s": setup_s,
        "rows": rows,
        "channels_last_speed_up": channels_last,
        "peak_gflops_per_s": peaks,
        "peak_gflops_per_s_before_after": [before, after],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{describe(result['machine'])}; clips 3 x {args.frames} x {args.size}^2; "
        f"baseline {BASELINE} fp32 eager; medians of {args.repeats}, interleaved"
    )
    for precision, ran in runnable.items():
        if ran != precision:
            print(f"  {precision}: not run on this machine (falls back to {ran})")
    print(f"{'batch':>5}  {'model':<34} {'ms/clip':>9} {'x baseline':>10} {'GFLOP/s':>8}")
    for row in rows:
        print(
            f"{row['batch']:>5}  {row['model']:<34} {row['ms_per_clip']:>9.1f} "
            f"{row['vs_baseline']:>10.2f} {row['gflops_per_s']:>8.0f}"
        )
    if channels_last:
        print(
            "channels-last clips (predict and serve on a CPU), speed-up over contiguous: "
            + ", ".join(
                f"{row['model']} batch {row['batch']} {row['speed_up']:.2f}x"
                for row in channels_last
            )
        )
    print(
        "peak GFLOP/s of a 2048^3 matrix product (the larger of before and after): "
        + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
    )
    print("set-up (s): " + ", ".join(f"{k} {v:.1f}" for k, v in setup_s.items()))


if __name__ == "__main__":
    main()
