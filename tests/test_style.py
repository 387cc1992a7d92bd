"""The code style is part of the suite, so CI (which runs only ``pytest``) enforces it:
``ruff format --check`` and ``ruff check`` over the whole tree (the sources, tests,
benchmarks, record scripts, and the Python examples in the Markdown docs), with the ruff
version pinned in ``pyproject.toml``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["."]


@pytest.mark.parametrize(
    "command", [["format", "--check", "--diff"], ["check"]], ids=["format", "lint"]
)
def test_ruff_passes(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *CHECKED],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        f"ruff {' '.join(command)} failed; run `ruff format {' '.join(CHECKED)}` and "
        f"`ruff check --fix {' '.join(CHECKED)}`:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
    )
