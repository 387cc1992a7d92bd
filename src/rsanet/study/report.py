"""The study's page, written from its records alone.

The page's fixed prose is a template (``templates/results.md``); this module fills it
with tables and verdicts computed by :mod:`rsanet.study.claims` and pictures drawn by
:mod:`rsanet.study.figures`. Nothing on the page depends on when or where it is written,
so the same records give the same page, byte for byte.

``write_report(RECORDS, DIR)`` writes ``DIR/results.md`` and ``DIR/figures/*.png``; with
``page`` it also writes that page (e.g. ``docs/results.md``) with its pictures beside it
(``docs/results/``), so it renders where it lies.
"""

from __future__ import annotations

import os
import shutil
import string
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from rsanet.study import claims as c
from rsanet.study.paper import FORM_NAMES, TABLE_4A
from rsanet.study.records import read_records
from rsanet.study.stats import ALPHA, mean_ci


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _claims(claims: Sequence[c.Claim]) -> str:
    return "\n".join(f"- {claim.line()}" for claim in claims) or "- (not enough runs)"


def _provenance(results: dict[str, Any], records: str) -> str:
    runs = results["runs"].values()
    revisions = sorted({r.get("revision", "unknown") for r in runs})
    train_s = sum(float(r.get("train_wall_s") or 0.0) for r in runs)
    m = results.get("machine", {})
    return "\n".join(
        [
            f"- Records: `{records}/` ({len(results['runs'])} runs and `study.json`).",
            f"- Produced by `rsanet study configs/study_synthmotion.yaml` at source revision "
            f"{', '.join(f'`{r}`' for r in revisions) or '-'}; this page by "
            "`rsanet study configs/study_synthmotion.yaml --report-only`.",
            f"- Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, Python "
            f"{m.get('python', '?')}, PyTorch {m.get('torch', '?')}"
            f"{' (CUDA available)' if m.get('cuda') else ', CPU only'}.",
            f"- Wall time of the whole study: **{_duration(results.get('study_wall_s', 0.0))}** "
            f"({len(results['runs'])} runs, {results.get('workers', 1)} at a time; the runs' "
            f"own training times add up to {_duration(train_s)}).",
        ]
    )


def _setup(results: dict[str, Any], summaries: dict[str, c.Group]) -> str:
    base = results.get("base", {})
    data, train, optim = base.get("data", {}), base.get("train", {}), base.get("optim", {})
    lines = [
        f"- Data: SynthMotion, {data.get('num_frames')} frames of {data.get('size')} x "
        f"{data.get('size')}, {data.get('train_options', {}).get('num_videos')} training and "
        f"{data.get('val_options', {}).get('num_videos')} validation clips (generated from "
        "each run's seed), flips that swap direction-bearing labels.",
        f"- Schedule: {optim.get('name')} (weight decay {optim.get('weight_decay')}), batch "
        f"{train.get('batch_size')}, {optim.get('warmup_epochs')} warm-up epochs then cosine; "
        f"seeds {', '.join(str(s) for s in results.get('seeds', []))}. Budget and learning "
        "rate per family (a family gets the epochs it needs to learn; see *Did every "
        "network learn?*):",
        "",
    ]
    rows = [
        [
            g.label,
            str(g.schedule.get("epochs", "?")),
            str(g.schedule.get("lr", "?")),
            _duration(g.wall_s),
        ]
        for g in summaries.values()
    ]
    lines.append(_table(["network", "epochs", "lr", "train time / run"], rows))
    lines += [
        "",
        "- Every network is `rsanet_tiny`'s ResNet (widths 16-32-64-128, Bottleneck 3-4-6-3) "
        "with the compared transform at RSANet's 7 positions; top-1 is measured after the "
        "last epoch (no selection on validation).",
    ]
    if results.get("smoke"):
        lines.append(
            "- **Smoke mode**: tiny data and one epoch; the numbers test the machinery, "
            "not the claims."
        )
    missing = c.missing_runs(results)
    if missing:
        lines.append(
            f"- **Incomplete study**: {len(missing)} of {len(results.get('planned', []))} "
            f"runs have no record: {', '.join(f'`{k}`' for k in missing)}."
        )
    return "\n".join(lines)


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _learning(
    summaries: dict[str, c.Group],
    untrained: dict[str, c.Group],
    classes: int,
    claims: list[c.Claim],
    notes: dict[str, str],
) -> str:
    rows = []
    for prefix, table in (("", summaries), ("untrained ", untrained)):
        for g in table.values():
            tests = g.learned_tests(classes)
            seeds = ", ".join(
                f"{r['metrics']['pair_accuracy']:.1f} ({_p(t.p)})"
                for r, t in zip(g.records, tests, strict=True)
            )
            rows.append(
                [
                    prefix + g.label,
                    seeds,
                    str(g.ci("top1")),
                    "yes" if g.learned(classes) else "**no**",
                ]
            )
    table = _table(
        ["network", "pair accuracy % per seed (binomial p against chance)", "top-1 %", "learned"],
        rows,
    )
    text = table + "\n\n" + _claims(claims)
    ceilings = c.ceiling_notes(summaries)
    if ceilings:
        text += "\n\n" + "\n".join(ceilings)
    budgets = [f"- {g.label}: {notes[g.name]}" for g in summaries.values() if notes.get(g.name)]
    if budgets:
        text += "\n\nBudgets:\n\n" + "\n".join(budgets)
    return text


def _swapped(g: c.Group) -> str:
    if g.order_blind:
        return f"{g.ci('swap_rate')} (by construction)"
    if not g.tells_direction():
        return f"{g.ci('swap_rate')} (does not tell a pair apart)"
    return str(g.ci("swap_rate"))


def _comparison(summaries: dict[str, c.Group], claims: list[c.Claim]) -> str:
    rows = [
        [
            g.label,
            f"`{g.name}`",
            f"{g.mparams:.2f}M",
            f"{g.gflops:.3f}",
            str(g.ci("top1")),
            str(g.ci("pair_accuracy")),
            str(g.ci("reversed_top1")),
            _swapped(g),
            str(g.n),
        ]
        for g in summaries.values()
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
    ]
    return _table(header, rows) + "\n\n" + _claims(claims)


def _pairs(
    results: dict[str, Any],
    summaries: dict[str, c.Group],
    claims: list[c.Claim],
    notes: dict[str, str],
) -> str:
    from rsanet.data import SYNTHMOTION_CLASSES

    names = [n for n in summaries if summaries[n].group != "rsa"]
    reference = results.get("reference_variant")
    if reference in summaries:
        names.append(reference)
    probes = c.probe_groups(results)
    rows = []
    for row in c.pair_table(summaries, names, probes):
        pair = row["pair"]
        title = f"{SYNTHMOTION_CLASSES[2 * pair]} / {SYNTHMOTION_CLASSES[2 * pair + 1]}"
        alone = [str(row["probe"].ci()) if row["probe"] else "-"] if probes else []
        learned = "yes" if row["learned"] else ("alone" if row["learnable"] else "**no**")
        rows.append(
            [title]
            + [str(row["cells"][n]) for n in names]
            + [f"{summaries[row['best']].label}: {row['best_ci']}"]
            + alone
            + [learned]
        )
    header = ["pair"] + [summaries[n].label for n in names] + ["best network"]
    if not probes:
        return _table(header + ["learned"], rows)
    probe = next(iter(probes.values()))
    text = _table(header + [f"{probe.label}, this pair alone", "learned"], rows)
    data = probe.records[0].get("data") or {}
    setting = f"{probe.label} trained on the pair's two classes alone" + (
        f": {data.get('num_frames')} frames of {data.get('size')} x {data.get('size')}, "
        f"{data.get('train_videos')} training and {data.get('val_videos')} validation "
        f"clips, {probe.schedule.get('epochs')} epochs, lr {probe.schedule.get('lr')}, "
        f"seeds {', '.join(str(r['seed']) for r in probe.records)}"
        if data
        else ""
    )
    lines = [
        "",
        "*alone*: learned only by the network trained on that pair alone ("
        + setting
        + "); the pair can be learned, the comparison's budget is too small for it.",
    ]
    if notes.get("pair_probes"):
        lines += ["", notes["pair_probes"]]
    return text + "\n" + "\n".join(lines) + "\n\n" + _claims(claims)


def _combinations(summaries: dict[str, c.Group], claims: list[c.Claim]) -> str:
    rows = []
    for g in summaries.values():
        form = c.rsa_form(g.options)
        if g.group != "rsa" or form not in TABLE_4A:
            continue
        rows.append(
            [
                FORM_NAMES[form[0]],
                FORM_NAMES[form[1]],
                str(g.ci("top1")),
                _swapped(g),
                f"{g.gflops:.3f}",
                f"{TABLE_4A[form]:.1f}",
            ]
        )
    if not rows:
        return "No RSA runs."
    header = ["kernel", "context", "SynthMotion top-1 %", "swapped %", "GFLOPs", "paper top-1 %"]
    return _table(header, rows) + "\n\n" + _claims(claims)


def _ablations(results: dict[str, Any], claims: dict[str, list[c.Claim]]) -> str:
    parts = []
    for name, spec in c.ablations_in_table_order(results):
        points = c.ablation_points(results, name)
        if not points:
            continue
        label = spec.get("label") or name
        rows = [
            [
                p.value + (" (default)" if p.is_default else ""),
                str(p.group.ci("top1")),
                _swapped(p.group),
                f"{p.group.gflops:.3f}",
                f"{p.group.mparams:.2f}M",
                str(p.group.n),
                "-" if p.paper_top1 is None else f"{p.paper_top1:.1f}",
            ]
            for p in points
        ]
        parts += [
            f"**{label}** (`{spec.get('key')}` of `{spec.get('variant')}`; paper Table "
            f"{spec.get('paper_table') or '-'})",
            "",
            _table(
                [label, "top-1 %", "swapped %", "GFLOPs", "params", "seeds", "paper top-1 %"],
                rows,
            ),
            "",
            _claims(claims[name]),
            "",
        ]
    return "\n".join(parts).strip() or "No ablation runs."


def _reversal(
    results: dict[str, Any],
    summaries: dict[str, c.Group],
    untrained: dict[str, c.Group],
    claims: list[c.Claim],
) -> str:
    reference = results.get("reference_variant")
    shown = [(g.label, g) for g in summaries.values() if g.name == reference or g.order_blind]
    shown += [(f"untrained {g.label}", g) for g in untrained.values()]
    rows = []
    for label, g in shown:
        cells = []
        for what, _title in c.DIRECTION_MEASURES:
            values = g.direction_values(what)
            cells.append(mean_ci(values).format(3) if values else "-")
        rows.append([label, *cells, str(g.n)])
    header = ["network", *(title for _w, title in c.DIRECTION_MEASURES), "seeds"]
    return _table(header, rows) + "\n\n" + _claims(claims)


def _kernels(kernels: dict[str, Any] | None, images: dict[str, str]) -> str:
    if not kernels:
        return "No kernel pictures: the RSA run they come from has not finished."
    lines = [
        f"Run `{kernels['run']}`, layer `{kernels['layer']}`, head {kernels['head']}, query "
        f"(t, y, x) = {tuple(kernels['position'])} of validation video {kernels['video']} "
        f'("{kernels["class"]}"), and the same clip played backwards (the query then sits '
        "on the same frame). The reversed clip's kernels are shown as computed; the "
        "direction indices above compare them mirrored in time. One query of one run is an "
        "illustration, not evidence.",
        "",
    ]
    for name in ("kernels", "kernel_query"):
        if name in images:
            lines += [f"![{name}]({images[name]})", ""]
    return "\n".join(lines).strip()


def _tally(every: list[c.Claim]) -> str:
    counts: dict[str, int] = {}
    for claim in every:
        key = ("control: " if claim.control else "") + claim.outcome
        counts[key] = counts.get(key, 0) + 1
    rows = [[outcome, str(n)] for outcome, n in sorted(counts.items())]
    failed_controls = [x for x in every if x.control and x.outcome == "holds"]
    text = _table(["outcome", "claims"], rows)
    if failed_controls:
        text += (
            "\n\n**A negative control came out as holding**, so the analysis it guards is "
            "not evidence: " + "; ".join(x.text for x in failed_controls) + "."
        )
    else:
        text += "\n\nEvery negative control came out as it must: does not hold."
    return text


def render_markdown(
    results: dict[str, Any],
    images: dict[str, str],
    records: str,
    notes: dict[str, str] | None = None,
) -> str:
    """The page's text; ``images`` maps picture names to their paths relative to the page,
    ``records`` is the records folder as the page names it, ``notes`` what the study file
    says of a family's budget (variant -> text)."""
    summaries = c.groups(results)
    untrained = c.groups(results, "untrained")
    classes = c.num_classes(results)
    verdicts = c.verdicts(results)
    pictures = {k: f"![{k}]({images[k]})" for k in images}
    comparison = _comparison(summaries, verdicts.transforms)
    for key in ("accuracy_vs_gflops", "reversal"):
        if key in pictures:
            comparison += "\n\n" + pictures[key]
    combinations = _combinations(summaries, verdicts.combinations)
    if "combinations" in pictures:
        combinations += "\n\n" + pictures["combinations"]
    ablations = _ablations(results, verdicts.ablations)
    if "ablations" in pictures:
        ablations += "\n\n" + pictures["ablations"]
    per_class = results.get("analysis_clips_per_class", 4)
    template = resources.files("rsanet.study").joinpath("templates/results.md").read_text()
    return string.Template(template).substitute(
        alpha=ALPHA,
        provenance=_provenance(results, records),
        setup=_setup(results, summaries),
        chance_pairs=f"{100 * c.PAIR_SIZE / classes:.1f}",
        chance_top1=f"{100 / classes:.1f}",
        pairs=classes // c.PAIR_SIZE,
        pair_table=_pairs(results, summaries, verdicts.probes, notes or {}),
        learning=_learning(summaries, untrained, classes, verdicts.learning, notes or {}),
        comparison=comparison,
        combinations=combinations,
        ablations=ablations,
        analysis_clips=per_class,
        reversal=_reversal(results, summaries, untrained, verdicts.reversal),
        kernels=_kernels(results.get("kernels"), images),
        verdicts=_tally(verdicts.every()),
    )


def write_figures(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Draw every picture the records allow into ``out_dir``; name -> path."""
    from rsanet.study import figures as f

    summaries = c.groups(results)
    drawn: dict[str, Path] = {}
    if summaries:
        drawn["accuracy_vs_gflops"] = f.plot_accuracy_vs_flops(
            summaries, out_dir / "accuracy_vs_gflops.png"
        )
        drawn["reversal"] = f.plot_reversal(summaries, out_dir / "reversal.png")
    combos = f.plot_combinations(summaries, out_dir / "combinations.png")
    if combos:
        drawn["combinations"] = combos
    ablations = f.plot_ablations(results, out_dir / "ablations.png")
    if ablations:
        drawn["ablations"] = ablations
    if results.get("kernels"):
        from rsanet.analysis import draw_kernels
        from rsanet.study.measure import kernel_comparison

        written = draw_kernels(kernel_comparison(results["kernels"]), out_dir / "kernels")
        names = {path.name: path for path in written}
        drawn["kernels"] = names["kernels.png"]
        if "query.png" in names:
            drawn["kernel_query"] = names["query.png"]
    return drawn


def write_report(
    records: str | Path,
    output: str | Path,
    *,
    page: str | Path | None = None,
    notes: dict[str, str] | None = None,
) -> list[Path]:
    """Write ``output/results.md`` and ``output/figures/*.png`` from the records in
    ``records``; with ``page``, also that page with its pictures copied to a folder named
    after it (``docs/results.md`` -> ``docs/results/``). ``notes``: the study file's words
    on each family's budget (:meth:`rsanet.study.Study.notes`). Returns the pages written."""
    records, output = Path(records), Path(output)
    results = read_records(records)
    figures = write_figures(results, output / "figures")
    written = []
    local = {name: os.path.relpath(path, output) for name, path in figures.items()}
    written.append(
        _write(
            output / "results.md", render_markdown(results, local, _posix(records, output), notes)
        )
    )
    if page is not None:
        page = Path(page)
        assets = page.with_suffix("")
        assets.mkdir(parents=True, exist_ok=True)
        copied = {}
        for name, path in figures.items():
            target = assets / f"{name}.png"
            shutil.copyfile(path, target)
            copied[name] = f"{assets.name}/{target.name}"
        written.append(
            _write(page, render_markdown(results, copied, _posix(records, page.parent), notes))
        )
    return written


def _posix(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def _write(path: Path, text: str) -> Path:
    from rsanet.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)
