"""``rsanet study CONFIG [--output DIR] [--records DIR] [--smoke] [--resume] [--report-only]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from rsanet.cli._args import add_config_argument, add_output_option, add_overrides_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study",
        help="run the SynthMotion study of the paper's analysis and write its report",
        description=(
            "Train and measure every run of a study YAML (see configs/study_synthmotion.yaml): "
            "the transforms at equal placement and budget, the nine RSA kernel/context "
            "combinations, the ablations, several seeds, untrained networks as negative "
            "controls; then the reversal test, the direction indices and the kernel "
            "pictures. Writes DIR/runs/<variant>/seed<k>/, one JSON record per run in the "
            "records folder (the study's 'records', docs/results/records for the committed "
            "study; DIR/records in smoke mode), DIR/figures/*.png, DIR/results.md and, "
            "outside smoke mode, the study's page (docs/results.md). --report-only writes "
            "the page from the records alone."
        ),
    )
    add_config_argument(parser, help="study YAML file")
    add_output_option(parser, help="study folder (default: runs/<config name>[_smoke])")
    parser.add_argument(
        "--records",
        metavar="DIR",
        help="records folder (default: the study's 'records'; DIR/records in smoke mode)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the study's smoke settings: two variants, tiny data, seconds",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the study in DIR: skip finished runs, resume the interrupted one",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only write the report (page and pictures) from the records",
    )
    parser.add_argument(
        "--page",
        metavar="PATH",
        help="write the report page here too (default: the study's 'page'; none in smoke mode)",
    )
    add_overrides_option(
        parser, help="override run configuration keys of every run, e.g. train.epochs=1"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rsanet.cli import CLIError
    from rsanet.study import load_study, records_folder, run_study, write_report

    study = load_study(args.config, smoke=args.smoke, overrides=args.overrides)
    name = Path(args.config).stem + ("_smoke" if args.smoke else "")
    output = Path(args.output) if args.output else Path("runs") / name
    records = Path(args.records) if args.records else records_folder(study, output)
    page = args.page or (None if args.smoke else study.config.page)
    if args.report_only:
        if not (records / "study.json").is_file():
            raise CLIError(
                f"no records to report: {records / 'study.json'} does not exist (pass the "
                "folder the study wrote its records to with --records DIR)"
            )
    else:
        run_study(study, output, records=records, resume=args.resume, report=False)
    for path in write_report(records, output, page=page, notes=study.notes()):
        print(f"wrote {path}")
    return 0
