"""``benchmarks/models.py`` runs and measures the variants it is asked for (a few seconds at
toy sizes; the numbers themselves are the benchmark's, not a test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rsanet.models import create_model

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "models.py"


def test_channels_last_and_bf16_variants_are_measured_with_the_model_options() -> None:
    options = {"transform_options": {"rsa": {"num_heads": 2, "kernel_size": [3, 3, 3]}}}
    command = [sys.executable, str(SCRIPT), "--models", "rsanet_tiny", "--baseline", "tsn_tiny"]
    command += ["--frames", "4", "--size", "32", "--batch", "2", "--num-classes", "3"]
    command += ["--repeats", "1", "--threads", "1", "--bf16", "--channels-last", "--json"]
    command += ["--model-options", json.dumps(options)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout[result.stdout.index("{") :])["models"]
    assert set(rows) == {
        "tsn_tiny",
        "rsanet_tiny",
        "rsanet_tiny+bf16",
        "tsn_tiny+cl",
        "rsanet_tiny+cl",
        "rsanet_tiny+bf16+cl",
    }
    # every variant ran a training step, and the options reached the factory
    assert all(row["train_step_ms"] > 0 for row in rows.values())
    with_options = create_model("rsanet_tiny", num_classes=3, num_frames=4, **options)
    plain = create_model("rsanet_tiny", num_classes=3, num_frames=4)
    params = sum(p.numel() for p in with_options.parameters())
    assert rows["rsanet_tiny"]["params"] == rows["rsanet_tiny+bf16+cl"]["params"] == params
    assert params != sum(p.numel() for p in plain.parameters())
