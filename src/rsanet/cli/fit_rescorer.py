"""``rsanet fit-rescorer SCORES --out FILE [--target-fa-per-hour N]``: learn a second stage
over a camera's window scores from annotated recordings (see
:mod:`rsanet.inference.rescorer` and ``docs/events.md``)."""

from __future__ import annotations

import argparse

from rsanet.cli._args import add_calibration_options, add_json_option, count, number

COMMAND = "fit-rescorer"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        COMMAND,
        help="learn a rescorer of window scores (a causal head) from annotated recordings",
        description=(
            "Fit a rescorer on the window scores that `rsanet eval-events` wrote for "
            "annotated recordings (OUT/window_scores.npz): a small causal GRU per fold that "
            "reads a stream's recent window scores and gives the probability of each class "
            "for the event going on now. Cross-fitted by session (a recording's folder): "
            "each fold's head scores the sessions it did not learn from, and with "
            "--target-fa-per-hour the thresholds are picked on those out-of-fold scores, "
            "as eval-events picks them. The heads of all folds, averaged, are the rescorer "
            "that `rsanet eval-events`, `rsanet predict` and `rsanet serve` run with "
            "--rescorer FILE (on the window, stride and smoothing the scores were made "
            "with). Scores made every 0.5 s without smoothing suit it best: "
            "`rsanet eval-events ... --stride-seconds 0.5 --smoothing 1`."
        ),
    )
    parser.add_argument(
        "scores", metavar="SCORES", help="window_scores.npz written by rsanet eval-events"
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="the rescorer to write")
    parser.add_argument(
        "--smoothing",
        type=count(1, 1000),
        metavar="N",
        help="the smoothing SCORES were made with, for a file that does not record it "
        "(written before rsanet recorded it)",
    )
    parser.add_argument(
        "--normal-class",
        dest="normal",
        metavar="NAME",
        help="the class of windows without an event (default: the class named normal, "
        "background, none or no_event)",
    )
    parser.add_argument(
        "--folds", type=count(2, 100), default=5, help="cross-fitting folds over sessions (5)"
    )
    parser.add_argument(
        "--repeats",
        type=count(1, 100),
        default=1,
        metavar="R",
        help="cross-fits, each dealing the sessions into folds anew (1). With R > 1 each "
        "recording's out-of-fold score averages R heads, as the rescorer's average of all "
        "folds x R heads scores new recordings, so the thresholds picked on them fit it "
        "better (5 is what docs/events.md measured); fitting and the file grow R times",
    )
    parser.add_argument("--epochs", type=count(1, 10000), default=40, help="training epochs (40)")
    parser.add_argument(
        "--hidden", type=count(1, 4096), default=48, help="the GRU's hidden size (48)"
    )
    parser.add_argument("--seed", type=int, default=0, help="folds and initialisation (0)")
    parser.add_argument(
        "--target-fa-per-hour",
        type=number(0, 1e6),
        metavar="N",
        help="also write rules for at most N false alarms per hour, picked on the "
        "out-of-fold scores as rsanet eval-events --target-fa-per-hour picks them",
    )
    add_calibration_options(parser, default_split="recall")
    parser.add_argument(
        "--rules-out",
        metavar="FILE",
        help="where the rules go (default: rules.yaml beside --out)",
    )
    parser.add_argument(
        "--scores-out",
        metavar="FILE",
        help="also write the out-of-fold rescored window scores (.npz, as SCORES)",
    )
    add_json_option(parser, "print the summary as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from collections import Counter
    from pathlib import Path
    from types import SimpleNamespace

    import yaml

    from rsanet.atomic import atomic_write, atomic_write_text, refuse_overwrite
    from rsanet.cli import CLIError
    from rsanet.inference.event_eval import (
        NORMAL_NAMES,
        EventEvaluation,
        read_window_scores,
        window_scores_npz,
    )
    from rsanet.inference.rescorer import fit_rescorer, step_labels

    if args.target_fa_per_hour is None:
        for flag, given in (
            ("--min-durations", args.min_durations),
            ("--rules-out", args.rules_out),
        ):
            if given:
                raise CLIError(f"{flag} needs --target-fa-per-hour")
    rules_out = Path(args.rules_out or Path(args.out).parent / "rules.yaml")
    inputs = [args.scores]
    refuse_overwrite(args.out, inputs, what="rescorer")
    if args.target_fa_per_hour is not None:
        refuse_overwrite(rules_out, inputs, what="rules file")
    scores = read_window_scores(args.scores)
    settings = scores.settings
    if settings is None:
        if args.smoothing is None:
            raise CLIError(
                f"{args.scores} does not record the smoothing its scores were made with: "
                "give --smoothing N"
            )
        settings = inferred_settings(scores.runs, args.smoothing, args.scores)
    elif args.smoothing is not None and args.smoothing != settings.smoothing:
        raise CLIError(
            f"--smoothing {args.smoothing}: {args.scores} was made with smoothing "
            f"{settings.smoothing}"
        )
    normal = args.normal or next((c for c in scores.classes if c.casefold() in NORMAL_NAMES), None)
    if normal is None:
        raise CLIError(
            f"{args.scores}: no class named {', '.join(NORMAL_NAMES)}: give --normal-class NAME"
        )
    runs = [run for run in scores.runs if run.scores]
    rescorer, out_of_fold = fit_rescorer(
        runs,
        scores.classes,
        window_s=settings.window_s,
        stride_s=settings.stride_s,
        smoothing=settings.smoothing,
        normal=normal,
        folds=args.folds,
        repeats=args.repeats,
        hidden=args.hidden,
        epochs=args.epochs,
        seed=args.seed,
    )
    rescorer.save(args.out)
    windows = Counter(
        scores.classes[i]
        for run in runs
        for i in step_labels(run, scores.classes, scores.classes.index(normal))
    )
    summary = {
        "rescorer": str(args.out),
        "scores": str(args.scores),
        "recordings": len(runs),
        "heads": len(rescorer.heads),
        "settings": {
            "window_s": settings.window_s,
            "stride_s": settings.stride_s,
            "smoothing": settings.smoothing,
        },
        "windows_per_class": dict(sorted(windows.items())),
    }
    if args.scores_out:
        data = window_scores_npz(out_of_fold, scores.classes, settings)
        atomic_write(args.scores_out, lambda handle: handle.write(data))
        summary["scores_out"] = str(args.scores_out)
    if args.target_fa_per_hour is not None:
        # thresholds on scores alone: the evaluation needs the classes, not a network
        evaluation = EventEvaluation(
            SimpleNamespace(classes=scores.classes, smoothing=settings.smoothing),
            window=settings.window_s,
            stride=settings.stride_s,
            normal=[normal],
        )
        try:
            sweep = evaluation.sweep(
                out_of_fold,
                args.target_fa_per_hour,
                tolerance=args.tolerance,
                split=args.budget_split,
                min_durations=args.min_durations,
            )
        except ValueError as error:
            raise CLIError(f"{args.scores}: {error}") from None
        atomic_write_text(
            rules_out, yaml.safe_dump(sweep["rules"], sort_keys=False, allow_unicode=True)
        )
        overall = sweep["overall"]
        summary["out_of_fold"] = {
            "target_fa_per_hour": args.target_fa_per_hour,
            "detected": overall["detected"],
            "events": overall["events"],
            "fa_per_hour": overall["fa_per_hour"],
            "rules": str(rules_out),
        }
    if args.json:
        print(json.dumps(summary, allow_nan=False))
        return 0
    print(
        f"rescorer: {len(rescorer.heads)} heads fitted on {len(runs)} recordings "
        f"(windows of {settings.window_s:g} s every {settings.stride_s:g} s, smoothing "
        f"{settings.smoothing}) -> {args.out}"
    )
    print("windows per class: " + ", ".join(f"{k} {v}" for k, v in windows.most_common()))
    if "out_of_fold" in summary:
        fold = summary["out_of_fold"]
        rate = "-" if fold["fa_per_hour"] is None else f"{fold['fa_per_hour']:.2f}"
        print(
            f"out-of-fold, rules for {args.target_fa_per_hour:g} false alarms per hour: "
            f"{fold['detected']} of {fold['events']} events detected, {rate} false alarms "
            f"per hour -> {rules_out}"
        )
    return 0


def inferred_settings(runs, smoothing: int, path: str):
    """Window and stride read off the windows of a scores file that does not record them."""
    import numpy as np

    from rsanet.cli import CLIError
    from rsanet.inference.event_eval import StreamSettings

    lengths = [e - s for run in runs for s, e in zip(run.starts, run.ends, strict=True)]
    steps = [np.diff(run.starts) for run in runs if len(run.starts) > 1]
    steps = np.concatenate(steps) if steps else []
    if not lengths or not len(steps):
        raise CLIError(f"{path}: too few windows to tell their length and stride")
    return StreamSettings(
        round(float(np.median(lengths)), 6), round(float(np.median(steps)), 6), smoothing
    )
