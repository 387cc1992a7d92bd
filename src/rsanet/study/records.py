"""The study's raw records: one JSON file per run, and one for the study as a whole.

Records are what the report is written from, and they are small, so they can be committed
next to the page they back (``docs/results/records/``): anyone can regenerate the page
from them with ``rsanet study CONFIG --report-only`` and compare. Each record carries the
source revision it was produced at.

Layout of a records folder ``R``:

* ``R/study.json``: the study's settings (base configuration, seeds, variants, ablations,
  the planned runs), the machine, the wall time and the kernel-picture data;
* ``R/<variant>/seed<k>.json`` (and ``R/<ablation>_<value>/seed<k>.json``,
  ``R/untrained_<variant>/seed<k>.json``): one finished run each.

:func:`read_records` assembles them into the dictionary the report reads.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from rsanet.atomic import atomic_write_text

STUDY_FILE = "study.json"
RECORDS_VERSION = 2


def source_revision() -> str:
    """The git commit of the rsanet source tree (with ``+dirty`` when files differ from
    it), or ``unknown`` outside a git checkout."""
    root = Path(__file__).resolve().parents[3]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "configs")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def record_path(folder: str | Path, key: str) -> Path:
    """Where the record of run ``key`` (``variant/seed<k>``) lies in ``folder``."""
    return Path(folder) / f"{key}.json"


def _dump(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, allow_nan=True) + "\n"


def write_record(folder: str | Path, record: dict[str, Any]) -> Path:
    """Write one run's record atomically."""
    path = record_path(folder, record["key"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, _dump(record))


def write_study(folder: str | Path, study: dict[str, Any]) -> Path:
    """Write the study-wide record atomically."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return atomic_write_text(Path(folder) / STUDY_FILE, _dump(study))


def run_keys(folder: str | Path) -> set[str]:
    """Keys of the runs recorded in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return set()
    return {
        path.relative_to(folder).with_suffix("").as_posix()
        for path in folder.glob("*/*.json")
        if path.name != STUDY_FILE
    }


def read_study(folder: str | Path) -> dict[str, Any]:
    """``R/study.json`` (empty when there is none yet)."""
    path = Path(folder) / STUDY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def read_records(folder: str | Path) -> dict[str, Any]:
    """The study record with every run's record under ``runs`` (key -> record, sorted by
    key so the report does not depend on the order runs finished in)."""
    folder = Path(folder)
    if not (folder / STUDY_FILE).is_file():
        raise FileNotFoundError(
            f"no study records in {folder}: {folder / STUDY_FILE} does not exist "
            "(run the study first, or pass the folder it wrote its records to)"
        )
    results = read_study(folder)
    runs = {}
    for key in sorted(run_keys(folder)):
        try:
            runs[key] = json.loads(record_path(folder, key).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{record_path(folder, key)}: not valid JSON ({error})") from None
    results["runs"] = runs
    return results
