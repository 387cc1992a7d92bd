"""``benchmarks/rsa_layer.py`` and ``benchmarks/rsa_layer_revisions.py`` run on the shapes of
``rsanet_tiny`` (the numbers themselves are the benchmarks', not a test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run(script: str, *arguments: str) -> str:
    command = [sys.executable, str(BENCHMARKS / script), *arguments, "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_layer_benchmark_times_a_tiny_shape_at_its_own_batch() -> None:
    output = run("rsa_layer.py", "--shapes", "tiny2", "--repeats", "1", "--json")
    shape = json.loads(output[output.index("{") :])["shapes"]["tiny2"]
    assert shape["batch"] == 16
    assert shape["computation"] == "official"
    assert shape["ours_train_ms"] > 0 and shape["official_train_ms"] > 0
    assert shape["max_abs_difference"] < 1e-4


def test_the_revision_benchmark_loads_an_earlier_package_beside_this_one() -> None:
    """The old package's ops are renamed with it: both register theirs in one process."""
    output = run("rsa_layer_revisions.py", "HEAD", "--shapes", "tiny2", "--pairs", "2")
    lines = [line for line in output.splitlines() if line.startswith("tiny2")]
    assert [line.split()[1] for line in lines] == ["fwd", "fwd+bwd"]
    assert all("new/old" in line for line in lines)
