"""The study's report, written from ``results.json`` alone: summary tables (mean and
spread over seeds), matplotlib pictures and a Markdown page whose every number and every
statement about the paper's ordering is computed from the records.

``write_report(DIR)`` writes ``DIR/results.md`` and ``DIR/figures/*.png``; with ``page``
it also writes that page (e.g. ``docs/results.md``) with the pictures copied beside it
(``docs/results/``), so it renders where it lies.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsanet.study.config import value_name
from rsanet.study.paper import ABLATIONS, FORM_NAMES, TABLE_4A

METRICS = ("top1", "pair_accuracy", "reversed_top1", "swap_rate", "same_rate")
FORMS = ("basic", "relational", "basic+relational")


# -- summaries ----------------------------------------------------------------------------


@dataclass
class Summary:
    """Mean and sample standard deviation of the runs of one variant (or ablation point)."""

    name: str
    label: str
    group: str
    seeds: list[int]
    mean: dict[str, float]
    std: dict[str, float]
    mparams: float
    gflops: float
    wall_s: float
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.seeds)

    def pm(self, metric: str = "top1") -> str:
        """``mean ± std`` (``mean`` alone for one seed) with one decimal."""
        if self.n < 2:
            return f"{self.mean[metric]:.1f}"
        return f"{self.mean[metric]:.1f} ± {self.std[metric]:.1f}"


def summarise(name: str, records: Sequence[dict[str, Any]]) -> Summary:
    """The :class:`Summary` of ``records`` (runs of one variant)."""
    first = records[0]
    mean, std = {}, {}
    for metric in METRICS:
        values = [r["metrics"][metric] for r in records]
        mean[metric] = statistics.fmean(values)
        std[metric] = statistics.stdev(values) if len(values) > 1 else 0.0
    return Summary(
        name=name,
        label=first.get("label") or name,
        group=first.get("group", "baseline"),
        seeds=sorted(r["seed"] for r in records),
        mean=mean,
        std=std,
        mparams=first["metrics"]["mparams"],
        gflops=first["metrics"]["gflops"],
        wall_s=statistics.fmean(r["train_wall_s"] for r in records),
        options=first.get("options", {}),
    )


def _rsa_form(options: dict[str, Any]) -> tuple[str, str] | None:
    rsa = (options.get("transform_options") or {}).get("rsa")
    if rsa is None:
        return None
    return rsa.get("kernel", "basic+relational"), rsa.get("context", "basic+relational")


def comparison(results: dict[str, Any]) -> dict[str, Summary]:
    """Variant -> summary of its comparison runs, in the order they were defined."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for record in results["runs"].values():
        if record["part"] == "comparison":
            by_variant.setdefault(record["variant"], []).append(record)
    order = results.get("variants") or list(by_variant)
    return {v: summarise(v, by_variant[v]) for v in order if v in by_variant}


@dataclass
class AblationPoint:
    value: str
    summary: Summary
    is_default: bool = False
    paper_top1: float | None = None


def ablation_points(results: dict[str, Any], name: str) -> list[AblationPoint]:
    """The points of ablation ``name``: its values, then the variant's own setting
    (from the variant's runs with the ablation's seeds)."""
    spec = results.get("ablations", {}).get(name, {})
    paper = ABLATIONS.get(spec.get("paper_table") or "", {})
    by_value: dict[str, list[dict[str, Any]]] = {}
    seeds: set[int] = set()
    for record in results["runs"].values():
        if record["part"] == name:
            by_value.setdefault(value_name(record["value"]), []).append(record)
            seeds.add(record["seed"])
    points = [
        AblationPoint(v, summarise(f"{name}={v}", rs), False, paper.get(v))
        for v, rs in by_value.items()
    ]
    base = [
        r
        for r in results["runs"].values()
        if r["part"] == "comparison" and r["variant"] == spec.get("variant") and r["seed"] in seeds
    ]
    if base:
        label = spec.get("default_label") or "default"
        points.append(
            AblationPoint(label, summarise(f"{name}={label}", base), True, paper.get(label))
        )
    order = [value_name(v) for v in spec.get("values", [])]
    points.sort(key=lambda p: order.index(p.value) if p.value in order else len(order))
    return points


def missing_runs(results: dict[str, Any]) -> list[str]:
    return [key for key in results.get("planned", []) if key not in results["runs"]]


# -- statements about the ordering ----------------------------------------------------


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-a of two equally long sequences (ties count as neither)."""
    n = len(a)
    score = 0
    for i in range(n):
        for j in range(i + 1, n):
            score += _sign(a[i] - a[j]) * _sign(b[i] - b[j])
    pairs = n * (n - 1) / 2
    return score / pairs if pairs else float("nan")


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _yes(flag: bool) -> str:
    return "holds" if flag else "does not hold"


def transform_statements(summaries: dict[str, Summary], reference: str | None) -> list[str]:
    """Sentences on RSA against the other transforms and on TSN's blindness to order."""
    lines = []
    if reference and reference in summaries:
        rsa = summaries[reference]
        for s in summaries.values():
            if s.group == "rsa":
                continue
            gap = rsa.mean["top1"] - s.mean["top1"]
            spread = max(rsa.std["top1"], s.std["top1"])
            lines.append(
                f"RSA ({rsa.label}) against {s.label}: {rsa.mean['top1']:.1f} vs "
                f"{s.mean['top1']:.1f} % top-1 ({gap:+.1f} points; largest spread over seeds "
                f"{spread:.1f}): the paper's claim that RSA outperforms it "
                f"{_yes(gap > 0)} on SynthMotion"
                + ("" if gap <= 0 or gap > spread else ", within the spread")
                + "."
            )
    if reference and reference in summaries and len(summaries) > 1:
        rsa = summaries[reference]
        others = [s for s in summaries.values() if s.group != "rsa"]
        top = max(summaries.values(), key=lambda s: s.mean["swap_rate"])
        listed = ", ".join(f"{s.label} {s.mean['swap_rate']:.1f} %" for s in others)
        lines.append(
            f"Reversal test: {rsa.label} turns its answer into the opposite class on "
            f"{rsa.mean['swap_rate']:.1f} % of reversed clips ({listed}); the most "
            f"direction-aware network of the comparison is {top.label} "
            f"({top.mean['swap_rate']:.1f} %)."
        )
    for s in summaries.values():
        if s.group == "baseline" and s.mean["same_rate"] >= 99.0:
            lines.append(
                f"{s.label} gives the same answer to a clip and to the clip played backwards "
                f"{s.mean['same_rate']:.1f} % of the time: it cannot tell the two classes of "
                f"a pair apart (top-1 {s.mean['top1']:.1f} %, pair accuracy "
                f"{s.mean['pair_accuracy']:.1f} %)."
            )
    return lines


def combination_statements(summaries: dict[str, Summary]) -> list[str]:
    """Sentences on Table 4a: rank agreement, best combination, and whether the combined
    forms beat each single form, computed from the means."""
    ours: dict[tuple[str, str], float] = {}
    for s in summaries.values():
        form = _rsa_form(s.options)
        if s.group == "rsa" and form in TABLE_4A:
            ours[form] = s.mean["top1"]
    if len(ours) < 2:
        return []
    forms = [f for f in TABLE_4A if f in ours]
    tau = kendall_tau([TABLE_4A[f] for f in forms], [ours[f] for f in forms])
    best_ours = max(forms, key=lambda f: ours[f])
    best_paper = max(forms, key=lambda f: TABLE_4A[f])

    def name(form: tuple[str, str]) -> str:
        return f"kernel {FORM_NAMES[form[0]]}, context {FORM_NAMES[form[1]]}"

    lines = [
        f"Ordering of the {len(forms)} kernel/context combinations: Kendall's tau between "
        f"the paper's top-1 and SynthMotion's mean top-1 is {tau:+.2f} (+1: the same order, "
        f"0: unrelated, -1: reversed).",
        f"Best combination: {name(best_ours)} on SynthMotion ({ours[best_ours]:.1f} %), "
        f"{name(best_paper)} in the paper; they "
        f"{'agree' if best_ours == best_paper else 'differ'}.",
    ]
    for axis in (0, 1):
        what = "kernel" if axis == 0 else "context"
        for single in ("basic", "relational"):
            wins, paper_wins, margins = 0, 0, []
            for third in FORMS:
                both = ("basic+relational", third) if axis == 0 else (third, "basic+relational")
                one = (single, third) if axis == 0 else (third, single)
                if both in ours and one in ours:
                    margins.append(ours[both] - ours[one])
                    wins += ours[both] > ours[one]
                    paper_wins += TABLE_4A[both] > TABLE_4A[one]
            if margins:
                lines.append(
                    f"basic+relational {what} beats the {single} {what} alone at {wins} of "
                    f"{len(margins)} {'contexts' if axis == 0 else 'kernels'} on SynthMotion "
                    f"(mean margin {statistics.fmean(margins):+.1f} points; paper: "
                    f"{paper_wins} of {len(margins)})."
                )
    rel, basic = [], []
    for kernel in FORMS:
        if (kernel, "relational") in ours and (kernel, "basic") in ours:
            rel.append(ours[(kernel, "relational")])
            basic.append(ours[(kernel, "basic")])
    if rel:
        wins = sum(r > b for r, b in zip(rel, basic, strict=True))
        paper_wins = sum(
            TABLE_4A[(k, "relational")] > TABLE_4A[(k, "basic")]
            for k in FORMS
            if (k, "relational") in ours and (k, "basic") in ours
        )
        margin = statistics.fmean(r - b for r, b in zip(rel, basic, strict=True))
        lines.append(
            f"The relational context alone beats the basic context alone at {wins} of "
            f"{len(rel)} kernels on SynthMotion (mean margin {margin:+.1f} points; paper: "
            f"{paper_wins} of {len(rel)})."
        )
    return lines


def ablation_statement(label: str, points: list[AblationPoint]) -> str | None:
    """Which value is best here and in the paper (over the values both have)."""
    if len(points) < 2:
        return None
    best = max(points, key=lambda p: p.summary.mean["top1"])
    text = (
        f"{label}: best on SynthMotion {best.value} ({best.summary.mean['top1']:.1f} %), "
        f"the network's default {next((p.value for p in points if p.is_default), '-')}"
    )
    both = [p for p in points if p.paper_top1 is not None]
    if len(both) >= 2:
        paper_best = max(both, key=lambda p: p.paper_top1)
        ours_best = max(both, key=lambda p: p.summary.mean["top1"])
        tau = kendall_tau([p.paper_top1 for p in both], [p.summary.mean["top1"] for p in both])
        text += (
            f"; over the {len(both)} values the paper also reports, the best is "
            f"{ours_best.value} here and {paper_best.value} in the paper "
            f"({'agree' if ours_best is paper_best else 'differ'}), Kendall's tau "
            f"{tau:+.2f}"
        )
    return text + "."


# -- pictures -----------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def plot_accuracy_vs_flops(summaries: dict[str, Summary], path: Path) -> Path:
    figure = _figure(7.5, 4.8)
    ax = figure.subplots()
    for group, marker, colour in (("baseline", "s", "tab:gray"), ("rsa", "o", "tab:red")):
        items = [s for s in summaries.values() if s.group == group]
        if not items:
            continue
        ax.errorbar(
            [s.gflops for s in items],
            [s.mean["top1"] for s in items],
            yerr=[s.std["top1"] for s in items],
            fmt=marker,
            color=colour,
            capsize=3,
            label="RSA kernel/context" if group == "rsa" else "other transforms",
        )
        for s in items:
            ax.annotate(
                s.label,
                (s.gflops, s.mean["top1"]),
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
    ax.set_ylabel("validation top-1 (%), mean ± std over seeds")
    ax.set_title("SynthMotion: accuracy against cost")
    ax.legend(fontsize=8, loc="lower right")
    return _save(figure, path)


def plot_reversal(summaries: dict[str, Summary], path: Path) -> Path:
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
            [summaries[n].mean[metric] for n in names],
            width,
            yerr=[summaries[n].std[metric] for n in names],
            label=label,
            capsize=2,
        )
    ax.set_xticks(x, [summaries[n].label for n in names], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("% of validation clips")
    ax.set_ylim(0, 105)
    ax.set_title("The reversal test: each clip and the same clip played backwards")
    ax.legend(fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    return _save(figure, path)


def plot_combinations(summaries: dict[str, Summary], path: Path) -> Path | None:
    import numpy as np

    rows = [(s, _rsa_form(s.options)) for s in summaries.values() if s.group == "rsa"]
    rows = [(s, f) for s, f in rows if f in TABLE_4A]
    if not rows:
        return None
    figure = _figure(9.0, 3.8)
    ours, paper = figure.subplots(1, 2)
    x = np.arange(len(rows))
    labels = [f"{FORM_NAMES[f[0]]} / {FORM_NAMES[f[1]]}" for _, f in rows]
    ours.bar(
        x,
        [s.mean["top1"] for s, _ in rows],
        yerr=[s.std["top1"] for s, _ in rows],
        color="tab:red",
        capsize=3,
    )
    low = min(s.mean["top1"] - s.std["top1"] for s, _ in rows)
    ours.set_ylim(max(0.0, low - 5), 100)
    ours.set_title("SynthMotion (mean ± std)", fontsize=10)
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
            [p.summary.mean["top1"] for p in points],
            yerr=[p.summary.std["top1"] for p in points],
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


# -- the page -----------------------------------------------------------------------------


USAGE = """\
The study behind this page trains every transform of the paper's analysis on SynthMotion
(see [training.md](training.md#synthmotion-on-a-cpu)) at equal placement and budget, with
several seeds, then the ablations, then measures each network on every validation clip and
on the same clip played backwards. One YAML file describes it; runs go through
`rsanet.engine.train`.

```bash
rsanet study configs/study_synthmotion.yaml --output runs/study            # about an hour
rsanet study configs/study_synthmotion.yaml --output runs/study --resume   # after a stop
rsanet study configs/study_synthmotion.yaml --output runs/study --report-only
rsanet study configs/study_synthmotion.yaml --smoke --output /tmp/smoke     # seconds
```

```python
from rsanet.study import load_study, run_study, write_report

study = load_study("configs/study_synthmotion.yaml")
results = run_study(study, "runs/study")         # the content of runs/study/results.json
write_report("runs/study", page="docs/results.md")
```

`DIR/results.json` holds one record per run (variant, seed, options, metrics, parameters,
GFLOPs, wall time); `--resume` skips the runs it holds and continues an interrupted run
from its `last.pt`. `workers: 2` trains two runs at once, one thread each. Everything
below this line is written by the study from `DIR/results.json`; do not edit it by hand,
re-run `--report-only`.
"""


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _setup(results: dict[str, Any]) -> list[str]:
    base = results.get("base", {})
    data, train, optim = base.get("data", {}), base.get("train", {}), base.get("optim", {})
    m = results.get("machine", {})
    runs = results["runs"]
    train_s = sum(r["train_wall_s"] for r in runs.values())
    lines = [
        f"- Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, Python "
        f"{m.get('python', '?')}, PyTorch {m.get('torch', '?')}"
        f"{' (CUDA available)' if m.get('cuda') else ', CPU only'}.",
        f"- Wall time of the whole study: **{_duration(results.get('study_wall_s', 0.0))}** "
        f"({len(runs)} runs, {results.get('workers', 1)} at a time; the runs' own training "
        f"times add up to {_duration(train_s)}).",
        f"- Data: SynthMotion, {data.get('num_frames')} frames of {data.get('size')} x "
        f"{data.get('size')}, {data.get('train_options', {}).get('num_videos')} training and "
        f"{data.get('val_options', {}).get('num_videos')} validation clips (generated from "
        "each run's seed), flips that swap direction-bearing labels.",
        f"- Schedule: {train.get('epochs')} epochs of {optim.get('name')} (lr "
        f"{optim.get('lr')}, weight decay {optim.get('weight_decay')}), batch "
        f"{train.get('batch_size')}, {optim.get('warmup_epochs')} warm-up epochs then cosine; "
        f"seeds {', '.join(str(s) for s in results.get('seeds', []))}.",
        "- Every network is `rsanet_tiny`'s ResNet (widths 16-32-64-128, Bottleneck 3-4-6-3) "
        "with the compared transform at RSANet's 7 positions; top-1 is measured after the "
        "last epoch (no selection on validation).",
    ]
    if results.get("smoke"):
        lines.append(
            "- **Smoke mode**: tiny data and one epoch; the numbers test the "
            "machinery, not the claims."
        )
    return lines + [""]


def _comparison_section(summaries: dict[str, Summary]) -> list[str]:
    rows = [
        [
            s.label,
            f"`{s.name}`",
            f"{s.mparams:.2f}M",
            f"{s.gflops:.3f}",
            s.pm("top1"),
            s.pm("pair_accuracy"),
            s.pm("reversed_top1"),
            s.pm("swap_rate"),
            str(s.n),
            _duration(s.wall_s),
        ]
        for s in summaries.values()
    ]
    header = [
        "transform",
        "variant",
        "params",
        "GFLOPs",
        "top-1 %",
        "pair acc. %",
        "top-1 reversed %",
        "swapped %",
        "seeds",
        "train time / run",
    ]
    return _table(header, rows)


def _combination_table(summaries: dict[str, Summary]) -> list[str]:
    rows = []
    for s in summaries.values():
        form = _rsa_form(s.options)
        if s.group != "rsa" or form not in TABLE_4A:
            continue
        rows.append(
            [
                FORM_NAMES[form[0]],
                FORM_NAMES[form[1]],
                s.pm("top1"),
                s.pm("swap_rate"),
                f"{s.gflops:.3f}",
                f"{TABLE_4A[form]:.1f}",
            ]
        )
    if not rows:
        return []
    return _table(
        [
            "kernel",
            "context",
            "SynthMotion top-1 %",
            "swapped %",
            "GFLOPs",
            "paper top-1 % (SS-V1)",
        ],
        rows,
    )


def _ablation_section(results: dict[str, Any]) -> tuple[list[str], list[str]]:
    lines, statements = [], []
    for name, spec in results.get("ablations", {}).items():
        points = ablation_points(results, name)
        if not points:
            continue
        label = spec.get("label") or name
        lines.append(
            f"**{label}** (`{spec.get('key')}` of `{spec.get('variant')}`; paper "
            f"Table {spec.get('paper_table') or '-'})"
        )
        lines.append("")
        rows = [
            [
                p.value + (" (default)" if p.is_default else ""),
                p.summary.pm("top1"),
                p.summary.pm("swap_rate"),
                f"{p.summary.gflops:.3f}",
                f"{p.summary.mparams:.2f}M",
                str(p.summary.n),
                "-" if p.paper_top1 is None else f"{p.paper_top1:.1f}",
            ]
            for p in points
        ]
        lines += _table(
            [
                label,
                "SynthMotion top-1 %",
                "swapped %",
                "GFLOPs",
                "params",
                "seeds",
                "paper top-1 %",
            ],
            rows,
        )
        statement = ablation_statement(label, points)
        if statement:
            base = comparison(results).get(spec.get("variant"))
            seeds = max(p.summary.n for p in points)
            if base is not None and base.n > seeds:
                statement = statement[:-1] + (
                    f" ({seeds} seed(s) per value; the default setting's own spread over "
                    f"{base.n} seeds is ±{base.std['top1']:.1f} points, so smaller differences "
                    "are not evidence)."
                )
            statements.append(statement)
    return lines, statements


def spread_statement(results: dict[str, Any]) -> str | None:
    """How many RSA runs of the comparison stayed under 50 % top-1 (runs that had not taken
    off by the end of the budget make the spread over seeds large)."""
    runs = [
        r for r in results["runs"].values() if r["part"] == "comparison" and r["group"] == "rsa"
    ]
    if not runs:
        return None
    low = sorted((r for r in runs if r["metrics"]["top1"] < 50.0), key=lambda r: r["key"])
    epochs = results.get("base", {}).get("train", {}).get("epochs")
    listed = ", ".join(f"`{r['key']}` {r['metrics']['top1']:.1f} %" for r in low)
    return (
        f"{len(low)} of {len(runs)} RSA runs of the comparison ended under 50 % top-1"
        + (f" ({listed})" if low else "")
        + f": within {epochs} epoch(s) a run sometimes has not yet taken off, which is what "
        "makes the spread over seeds large; the orderings above compare means of "
        f"{len(results.get('seeds', []))} seeds."
    )


def _kernel_section(
    kernels: dict[str, Any] | None, image: str | None, query: str | None = None
) -> list[str]:
    if not kernels:
        return ["No kernel pictures: the RSA run they come from has not finished.", ""]
    lines = [
        f"Run `{kernels['run']}`, layer `{kernels['layer']}`, head {kernels['head']}, query "
        f"(t, y, x) = {tuple(kernels['position'])} of validation video {kernels['video']} "
        f'("{kernels["class"]}"), and the same clip played backwards (the query then '
        "sits on the same frame).",
        "",
    ]
    rows = []
    for kind, values in kernels["kinds"].items():
        ratio = values["max_change"] / values["max_abs"] if values["max_abs"] else 0.0
        rows.append(
            [
                kind,
                f"{values['max_abs']:.3g}",
                f"{values['max_change']:.3g}",
                f"{100 * ratio:.1f} %",
            ]
        )
    lines += _table(["kernel", "max abs. weight", "max change when reversed", "relative"], rows)
    kinds = kernels["kinds"]
    if "basic" in kinds and "relational" in kinds:
        basic = kinds["basic"]["max_change"] / (kinds["basic"]["max_abs"] or 1.0)
        relational = kinds["relational"]["max_change"] / (kinds["relational"]["max_abs"] or 1.0)
        verdict = "holds" if relational > basic else "does not hold"
        lines += [
            f"The paper's reading of its kernel figure (the basic kernel stays the same when "
            f"the clip is reversed, the relational kernel changes with the motion) {verdict} "
            f"here: relative change {100 * basic:.1f} % for the basic kernel, "
            f"{100 * relational:.1f} % for the relational one.",
            "",
        ]
    if image:
        lines += [f"![kernels]({image})", ""]
    if query:
        lines += [f"![query frame]({query})", ""]
    return lines


def render_markdown(results: dict[str, Any], images: dict[str, str]) -> str:
    """The page's text; ``images`` maps picture names to their paths relative to the page."""
    summaries = comparison(results)
    reference = results.get("reference_variant")
    lines = ["# Results: the paper's analysis reproduced on SynthMotion", "", USAGE, "## Setup", ""]
    lines += _setup(results)
    missing = missing_runs(results)
    if missing:
        lines += [
            f"**Incomplete study**: {len(missing)} of {len(results.get('planned', []))} "
            f"runs are missing: {', '.join(f'`{k}`' for k in missing)}.",
            "",
        ]
        for key, error in results.get("failed", {}).items():
            lines += [f"- `{key}` failed: {error}"]
        lines += [""] if results.get("failed") else []
    lines += [
        "## Which transform captures motion",
        "",
        "Top-1 on the validation clips; pair accuracy counts a prediction in the right "
        "pair of opposite classes; *top-1 reversed* is top-1 on the clips played "
        "backwards (whose true class is the opposite one); *swapped* counts the clips "
        "whose answer turns into the opposite class when the clip is reversed. Mean ± "
        "standard deviation over seeds.",
        "",
    ]
    lines += _comparison_section(summaries)
    for key in ("accuracy_vs_gflops", "reversal"):
        if key in images:
            lines += [f"![{key}]({images[key]})", ""]
    combo = _combination_table(summaries)
    if combo:
        lines += [
            "## Kernel and context (Table 4a)",
            "",
            "V: basic (the query's own content), R: relational (query-key relations for "
            "the kernel, the self-correlation of the values for the context). The paper "
            "inserts one RSA layer into stage 4 of TSN-ResNet50 on SS-V1; here every "
            "RSA position of the network uses the combination.",
            "",
        ]
        lines += combo
        if "combinations" in images:
            lines += [f"![combinations]({images['combinations']})", ""]
    ablation_lines, ablation_statements = _ablation_section(results)
    if ablation_lines:
        lines += [
            "## Ablations (Tables 4b-4d)",
            "",
            "Each row changes one option of the paper's RSA setting in every RSA layer; "
            "the default row is the comparison's runs with the same seeds. `dk` is "
            "C^Q, the key channels per head (4, 8, 16, 32 in stages 1-4 here).",
            "",
        ]
        lines += ablation_lines
        if "ablations" in images:
            lines += [f"![ablations]({images['ablations']})", ""]
    lines += ["## Kernel pictures", ""]
    lines += _kernel_section(
        results.get("kernels"), images.get("kernels"), images.get("kernel_query")
    )
    lines += [
        "## Where SynthMotion agrees with the paper, and where not",
        "",
        "Each statement is computed from the numbers above when the page is written.",
        "",
    ]
    statements = (
        transform_statements(summaries, reference)
        + combination_statements(summaries)
        + [x for x in [spread_statement(results)] if x]
        + ablation_statements
    )
    lines += [f"- {s}" for s in statements] or ["- (not enough runs to compare)"]
    lines += [
        "",
        "SynthMotion is not Something-Something: its 14 classes are pure motion "
        "over random appearance, the networks have a quarter of RSANet-R50's width and "
        "train for minutes, so small differences (within the spread over seeds) say "
        "nothing either way; the paper's numbers differ by tenths of a point.",
        "",
    ]
    return "\n".join(lines)


def write_figures(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Draw every picture the records allow into ``out_dir``; name -> path."""
    summaries = comparison(results)
    figures: dict[str, Path] = {}
    if summaries:
        figures["accuracy_vs_gflops"] = plot_accuracy_vs_flops(
            summaries, out_dir / "accuracy_vs_gflops.png"
        )
        figures["reversal"] = plot_reversal(summaries, out_dir / "reversal.png")
    combos = plot_combinations(summaries, out_dir / "combinations.png")
    if combos:
        figures["combinations"] = combos
    ablations = plot_ablations(results, out_dir / "ablations.png")
    if ablations:
        figures["ablations"] = ablations
    kernels = out_dir / "kernels" / "kernels.png"
    if results.get("kernels") and kernels.is_file():
        figures["kernels"] = kernels
        if (kernels.parent / "query.png").is_file():
            figures["kernel_query"] = kernels.parent / "query.png"
    return figures


def write_report(output: str | Path, *, page: str | Path | None = None) -> list[Path]:
    """Write ``output/results.md`` and ``output/figures/*.png`` from
    ``output/results.json``; with ``page``, also that page with its pictures copied to a
    folder named after it (``docs/results.md`` -> ``docs/results/``). Returns the pages."""
    output = Path(output)
    results = json.loads((output / "results.json").read_text())
    figures = write_figures(results, output / "figures")
    written = []
    local = {name: os.path.relpath(path, output) for name, path in figures.items()}
    written.append(_write(output / "results.md", render_markdown(results, local)))
    if page is not None:
        page = Path(page)
        assets = page.with_suffix("")
        assets.mkdir(parents=True, exist_ok=True)
        copied = {}
        for name, path in figures.items():
            target = assets / f"{name}.png"
            shutil.copyfile(path, target)
            copied[name] = f"{assets.name}/{target.name}"
        written.append(_write(page, render_markdown(results, copied)))
    return written


def _write(path: Path, text: str) -> Path:
    from rsanet.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
