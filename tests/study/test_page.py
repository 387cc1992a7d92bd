"""The committed results page is what its committed records give, byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

from rsanet.study import load_study, read_records
from rsanet.study.claims import missing_runs
from rsanet.study.report import write_report

ROOT = Path(__file__).resolve().parents[2]
STUDY = load_study(ROOT / "configs" / "study_synthmotion.yaml")
RECORDS = ROOT / STUDY.config.records
PAGE = ROOT / STUDY.config.page


def test_page_regenerates_from_the_committed_records(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "results.md"
    records = tmp_path / "docs" / "results" / "records"
    # the page names its records relative to itself: lay them out as in the repository
    shutil.copytree(RECORDS, records)
    write_report(records, tmp_path / "out", page=page, notes=STUDY.notes())
    assert page.read_text() == PAGE.read_text()


def test_records_cover_the_planned_study_at_recorded_revisions() -> None:
    results = read_records(RECORDS)
    assert results["planned"] == [run.key for run in STUDY.runs()]
    assert missing_runs(results) == []
    for record in results["runs"].values():
        assert record["revision"] not in ("", "unknown")
