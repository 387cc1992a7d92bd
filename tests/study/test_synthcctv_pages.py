"""The SynthCCTV results pages are what their scripts make from the committed records, byte
for byte: a page edited by hand, or a script changed without regenerating its page, fails."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results" / "synthcctv"


def _page(script: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_seeds_page_regenerates_from_the_committed_reports() -> None:
    page = RESULTS / "recipe" / "seeds.md"
    assert _page(RESULTS / "recipe" / "seeds.py") == page.read_text()


@pytest.mark.parametrize(
    "page", ["recipe_test.md", "recipe_train_seed0.md", "windows6s_test.md", "scale_test.md"]
)
def test_a_phases_page_regenerates_from_the_committed_window_scores(page: str) -> None:
    """The page names its score files as given, from the repository's root."""
    text = (RESULTS / "phases" / page).read_text()
    files = text.split("`python docs/results/synthcctv/phases.py ", 1)[1].split("`", 1)[0]
    assert _page(RESULTS / "phases.py", *files.split()) == text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "args", "page"),
    [
        ("rules/compare.py", ("report", "seed0", "seed1", "seed2", "seed3"), "rules/compare.md"),
        ("sources.py", ("windows", "0"), "windows/compare.md"),
        ("sources.py", ("hard_negatives", "0"), "hard_negatives/compare.md"),
        ("sources.py", ("scale", "0", "1", "2"), "scale/compare.md"),
        ("sources.py", ("budget", "0", "1", "2"), "budget/compare.md"),
        ("sources.py", ("networks", "0", "1"), "networks/compare.md"),
        ("sources.py", ("budget20", "0", "1", "2"), "budget20/compare.md"),
        ("sources.py", ("latency", "0", "1", "2"), "latency/compare.md"),
        ("sources.py", ("onset", "0"), "onset/compare.md"),
        ("sources.py", ("context", "0"), "context/compare.md"),
        ("sources.py", ("background", "0", "1"), "background/compare.md"),
        ("sources.py", ("channels_last", "0", "1"), "channels_last/compare.md"),
        ("sources.py", ("channels_last_tsm", "0"), "channels_last_tsm/compare.md"),
        ("sources.py", ("time_budget", "0", "1"), "time_budget/compare.md"),
        ("sources.py", ("background_rsanet", "0", "1", "2"), "background_rsanet/compare.md"),
        ("sources.py", ("long_rsanet", "0", "1"), "long_rsanet/compare.md"),
        ("rescorer/compare.py", ("report", "tsm_tiny", "0", "1", "2"), "rescorer/compare.md"),
        ("rescorer/compare.py", ("report", "rsanet_tiny", "0", "1"), "rescorer/rsanet_tiny.md"),
        (
            "rescorer/compare.py",
            ("report", "tsm_tiny_x5", "0", "1", "2"),
            "rescorer/tsm_tiny_x5.md",
        ),
        (
            "rescorer/compare.py",
            ("report", "rsanet_tiny_x5", "0", "1"),
            "rescorer/rsanet_tiny_x5.md",
        ),
        (
            "rescorer/compare.py",
            ("report", "rsanet_tiny_context_x5", "0", "1", "2"),
            "rescorer/rsanet_tiny_context_x5.md",
        ),
    ],
)
def test_a_comparison_page_regenerates_from_the_committed_window_scores(script, args, page):
    """Each rule set calibrated and replayed again from the stored window scores (about
    half a minute per seed and source)."""
    assert _page(RESULTS / script, *args) == (RESULTS / page).read_text()


def _ceiling_module():
    spec = importlib.util.spec_from_file_location("ceiling", RESULTS / "ceiling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ceiling_page_regenerates_from_its_committed_counts() -> None:
    assert _page(RESULTS / "ceiling.py", "page") == (RESULTS / "ceiling" / "ceiling.md").read_text()


def test_the_ceiling_counts_are_what_the_committed_scores_give() -> None:
    """One seed of one source at 2 false alarms per hour, its scores and its control, with
    per-class rules and with the any-event rule, swept again from the test-hour scores (the
    whole file takes minutes)."""
    ceiling = _ceiling_module()
    name = next(n for n in ceiling.SOURCES if n.startswith("rsanet_tiny"))
    folders, how = ceiling.SOURCES[name]
    again = ceiling.seed_results(folders[1], 1, how, budgets=(2.0,), any_event_budgets=(2.0,))
    recorded = json.loads((RESULTS / "ceiling" / "results.json").read_text())[name][1]
    for kind in ("network", "shuffled", "any_event", "any_event_shuffled"):
        assert again[kind]["2"] == recorded[kind]["2"]
    for kind, control in (("network", "shuffled"), ("any_event", "any_event_shuffled")):
        assert recorded[kind]["2"]["detected"] > recorded[control]["2"]["detected"]
    # the any-event rule's detections, told apart by the events' own classes
    found = recorded["any_event"]["2"]
    assert sum(found["per_class"].values()) == found["detected"]


def test_the_ceiling_computes_the_sources_asked_for_and_keeps_the_others(monkeypatch) -> None:
    ceiling = _ceiling_module()
    swept = []
    monkeypatch.setattr(
        ceiling, "seed_results", lambda folder, number, how: swept.append(folder) or folder
    )
    names = list(ceiling.SOURCES)
    kept = {name: ["kept"] for name in names}
    (asked,) = [name for name in names if name.startswith("rescorer")]
    results = ceiling.compute(["rescorer"], kept)
    assert list(results) == names  # the page's order
    assert results[asked] == ceiling.SOURCES[asked][0] == swept
    assert all(results[name] == ["kept"] for name in names if name != asked)
    with pytest.raises(SystemExit, match="no source's name starts with 'nothing'"):
        ceiling.compute(["nothing"], kept)
