"""The study's pictures (matplotlib, Agg), drawn from its records alone.

Each picture shows means with their 95 % confidence intervals over seeds. PNGs are written
without a timestamp or software tag, so the same records give the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsanet.study.claims import Group, ablation_points, rsa_form
from rsanet.study.paper import FORM_NAMES, TABLE_4A


def _err(interval) -> float:
    """Error-bar half-width: the CI's, 0 where there is none (one seed)."""
    width = interval.half_width
    return 0.0 if width != width else width


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    return path


def plot_accuracy_vs_flops(summaries: dict[str, Group], path: Path) -> Path:
    figure = _figure(7.5, 4.8)
    ax = figure.subplots()
    for group, marker, colour in (("baseline", "s", "tab:gray"), ("rsa", "o", "tab:red")):
        items = [s for s in summaries.values() if s.group == group]
        if not items:
            continue
        ax.errorbar(
            [s.gflops for s in items],
            [s.mean("top1") for s in items],
            yerr=[_err(s.ci("top1")) for s in items],
            fmt=marker,
            color=colour,
            capsize=3,
            label="RSA kernel/context" if group == "rsa" else "other transforms",
        )
        for s in items:
            ax.annotate(
                s.label,
                (s.gflops, s.mean("top1")),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
    ax.axhline(50.0, color="k", lw=0.8, ls="--")
    ax.text(
        ax.get_xlim()[0],
        50.5,
        " 50 %: the best a model blind to frame order can do",
        fontsize=7,
        va="bottom",
    )
    ax.set_xlabel("GFLOPs (multiply-accumulates of one clip)")
    ax.set_ylabel("validation top-1 (%), mean ± 95 % CI over seeds")
    ax.set_title("SynthMotion: accuracy against cost")
    ax.legend(fontsize=8, loc="lower right")
    return _save(figure, path)


def plot_reversal(summaries: dict[str, Group], path: Path) -> Path:
    import numpy as np

    names = list(summaries)
    x = np.arange(len(names))
    figure = _figure(max(7.0, 0.7 * len(names) + 2), 4.2)
    ax = figure.subplots()
    bars = (
        ("top1", "top-1"),
        ("pair_accuracy", "pair accuracy"),
        ("reversed_top1", "top-1 on reversed clips"),
        ("swap_rate", "answer swapped"),
    )
    width = 0.8 / len(bars)
    for i, (metric, label) in enumerate(bars):
        ax.bar(
            x + (i - 1.5) * width,
            [summaries[n].mean(metric) for n in names],
            width,
            yerr=[_err(summaries[n].ci(metric)) for n in names],
            label=label,
            capsize=2,
        )
    ax.set_xticks(x, [summaries[n].label for n in names], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("% of validation clips")
    ax.set_ylim(0, 105)
    ax.set_title("The reversal test: each clip and the same clip played backwards")
    ax.legend(fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    return _save(figure, path)


def plot_combinations(summaries: dict[str, Group], path: Path) -> Path | None:
    import numpy as np

    rows = [(s, rsa_form(s.options)) for s in summaries.values() if s.group == "rsa"]
    rows = [(s, f) for s, f in rows if f in TABLE_4A]
    if not rows:
        return None
    figure = _figure(9.0, 3.8)
    ours, paper = figure.subplots(1, 2)
    x = np.arange(len(rows))
    labels = [f"{FORM_NAMES[f[0]]} / {FORM_NAMES[f[1]]}" for _, f in rows]
    ours.bar(
        x,
        [s.mean("top1") for s, _ in rows],
        yerr=[_err(s.ci("top1")) for s, _ in rows],
        color="tab:red",
        capsize=3,
    )
    low = min(s.mean("top1") - _err(s.ci("top1")) for s, _ in rows)
    ours.set_ylim(max(0.0, low - 5), 100)
    ours.set_title("SynthMotion (mean ± 95 % CI)", fontsize=10)
    paper.bar(x, [TABLE_4A[f] for _, f in rows], color="tab:blue")
    paper.set_ylim(44, 47.5)
    paper.set_title("paper, SS-V1 (Table 4a)", fontsize=10)
    for ax in (ours, paper):
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("kernel / context")
        ax.set_ylabel("top-1 (%)")
    return _save(figure, path)


def plot_ablations(results: dict[str, Any], path: Path) -> Path | None:
    names = [n for n in results.get("ablations", {}) if ablation_points(results, n)]
    if not names:
        return None
    figure = _figure(4.0 * len(names), 3.6)
    axes = figure.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        points = ablation_points(results, name)
        spec = results["ablations"][name]
        x = list(range(len(points)))
        ax.errorbar(
            x,
            [p.group.mean("top1") for p in points],
            yerr=[_err(p.group.ci("top1")) for p in points],
            marker="o",
            color="tab:red",
            capsize=3,
            label="SynthMotion",
        )
        ax.set_xticks(x, [p.value + (" *" if p.is_default else "") for p in points], fontsize=8)
        ax.set_xlabel(spec.get("label") or name)
        ax.set_ylabel("SynthMotion top-1 (%)")
        known = [(i, p.paper_top1) for i, p in enumerate(points) if p.paper_top1 is not None]
        if known:
            twin = ax.twinx()
            twin.plot(
                [i for i, _ in known],
                [v for _, v in known],
                "s--",
                color="tab:blue",
                label="paper (SS-V1)",
            )
            twin.set_ylabel("paper top-1 (%)", color="tab:blue", fontsize=8)
            handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
            ax.legend(handles=handles, fontsize=7, loc="lower right")
        ax.set_title(f"{spec.get('label') or name} (* network default)", fontsize=9)
    return _save(figure, path)
