#!/usr/bin/env bash
# The GPU checks in one short run on a CUDA machine with PyTorch and Triton installed
# (the project's `device` machine: about 5 minutes, most of it Triton compiling and the
# network benchmark). Run from anywhere; results go to $OUT (default: ./cuda-results).
#   1. the Triton kernels' numerics, compiled, against PyTorch's operators and the reference;
#   2. the RSA layer against the authors' computation at stages 3-4 (same run, ratios), and
#      the kernels that take our training step's time (do the neighbourhood products dominate?);
#   3. rsanet_r50 against tsn_r50: inference, training step, activation memory.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-cuda-results}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import torch, triton; assert torch.cuda.is_available(), 'no CUDA device'; \
print(torch.__version__, triton.__version__, torch.cuda.get_device_name())"
failed=0  # a failing test must not cost the benchmarks of the same (scarce) GPU run
python3 -m pytest -q tests/layers/test_gpu_kernels.py tests/layers/test_rsa.py 2>&1 \
    | tee "$out/tests.log" || failed=1
python3 benchmarks/rsa_layer.py --device cuda --batch 8 --repeats 20 --shapes stage3 stage4 --profile \
    2>&1 | tee "$out/rsa_layer.txt" || failed=1
python3 benchmarks/models.py --device cuda --batch 8 --repeats 10 --checkpointing \
    2>&1 | tee "$out/models.txt" || failed=1
exit "$failed"
