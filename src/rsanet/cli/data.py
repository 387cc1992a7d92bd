"""``rsanet data check`` (decode a benchmark split once, report bad samples), ``rsanet
data synth`` (write SynthMotion to disk with list files) and ``rsanet data synth-cctv``
(write SynthCCTV recordings in the AI Hub layout)."""

from __future__ import annotations

import argparse
import json
import sys

from rsanet.cli._args import add_json_option

FORMATS = ("something-v1", "something-v2", "diving48", "finegym", "list", "folder")
#: long recordings with event intervals (rsanet.data.untrimmed)
UNTRIMMED_FORMATS = ("aihub-cctv", "ucf-crime", "xd-violence", "intervals")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="check a benchmark's files, write SynthMotion or SynthCCTV to disk",
        description="Data tools: 'check' decodes every sample of a split and reports the bad "
        "ones; 'synth' writes SynthMotion videos and list files; 'synth-cctv' writes SynthCCTV "
        "camera recordings in the AI Hub layout.",
    )
    commands = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    parser.set_defaults(func=lambda args: _missing_subcommand(parser))

    check = commands.add_parser(
        "check",
        help="decode every sample once and report the bad ones",
        description="Decode every sample of a split once (in parallel, progress bar on "
        "stderr) and print each bad sample (path: reason) and a summary. A row leading "
        "outside the data root is a bad sample unless --allow-outside-root. Exit code 0 "
        "when all samples are good, 1 when some are bad, 2 when the files cannot be used "
        "(one line on stderr).",
    )
    check.add_argument(
        "annotations",
        metavar="ANNOTATIONS",
        help="the split file (or its folder; for --format folder, the folder)",
    )
    check.add_argument(
        "--format", required=True, choices=FORMATS + UNTRIMMED_FORMATS, help="annotation format"
    )
    check.add_argument(
        "--root", help="folder of the videos / frame folders (default: the folder of ANNOTATIONS)"
    )
    check.add_argument(
        "--split",
        default="train",
        choices=("train", "val"),
        help="split whose standard file is read when ANNOTATIONS is a folder",
    )
    check.add_argument(
        "--labels",
        help="class-name file (default: the standard one next to ANNOTATIONS); for "
        "aihub-cctv a class map {name: class} (YAML or JSON)",
    )
    check.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frames per second of ucf-crime (default 30) and xd-violence (default 24) videos",
    )
    check.add_argument(
        "--min-frames", type=int, default=8, help="fewer usable frames is 'too short' (default 8)"
    )
    check.add_argument(
        "--backend",
        default="pyav",
        choices=("pyav", "decord", "torchcodec"),
        help="video decoder (default pyav)",
    )
    check.add_argument(
        "--workers", type=int, default=None, help="decoding processes (default: all cores)"
    )
    add_json_option(
        check, help='print one JSON object {"total", "ok", "bad": [{"path", "reason"}]}'
    )
    check.add_argument(
        "--out",
        metavar="PATH",
        help="also write the JSON report to PATH (atomically; never over an input or a sample)",
    )
    check.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="accept rows whose path leads outside the data root (absolute paths elsewhere, "
        "'..'); by default they are bad samples",
    )
    check.set_defaults(func=run_check)

    synth = commands.add_parser(
        "synth",
        help="write SynthMotion videos and list files",
        description="Write SynthMotion to OUT: videos/<split>/N.mp4 (or frames/<split>/N/"
        "00001.jpg), train.txt and val.txt ('path num_frames label'), classes.txt. Read it "
        "back with build_dataset('list', 'OUT/train.txt', 'OUT').",
    )
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--videos", type=int, required=True, help="training videos")
    synth.add_argument(
        "--val-videos",
        type=int,
        default=None,
        help="validation videos (default: a quarter of --videos)",
    )
    synth.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    synth.add_argument("--size", type=int, default=112, help="frame side (default 112)")
    synth.add_argument(
        "--format",
        default="mp4",
        choices=("mp4", "frames"),
        help="H.264 mp4 files or JPEG frame folders (default mp4)",
    )
    synth.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    synth.add_argument(
        "--workers", type=int, default=0, help="rendering processes (default 0: this process)"
    )
    synth.set_defaults(func=run_synth)

    cctv = commands.add_parser(
        "synth-cctv",
        help="write SynthCCTV recordings (AI Hub layout)",
        description="Write SynthCCTV to OUT: multi-camera sessions of untrimmed surveillance "
        "recordings with at most one event each, as AI Hub class folders of .mp4 files with "
        "their .xml (normal recordings under 00.정상(normal), XML without <event>), and "
        "OUT/synthcctv.json. Read it back with --format aihub-cctv. Deterministic from "
        "--seed; a second run with the same options completes an interrupted one.",
    )
    cctv.add_argument("--out", required=True, help="output folder")
    cctv.add_argument("--sessions", type=int, default=40, help="sessions (default 40)")
    cctv.add_argument(
        "--cameras", default="2-3", help="cameras per session, N or MIN-MAX within 1-3 (2-3)"
    )
    cctv.add_argument(
        "--seconds", type=float, default=30.0, help="length of each recording (default 30)"
    )
    cctv.add_argument("--fps", type=int, default=10, help="frames per second (default 10)")
    cctv.add_argument("--size", default="160x120", help="frame size WxH (default 160x120)")
    cctv.add_argument(
        "--classes",
        nargs="+",
        metavar="CLASS",
        help="event classes (names or comma lists; default all ten: "
        "assault fight theft vandalism fainting loitering intrusion dumping kidnapping "
        "drunkenness)",
    )
    cctv.add_argument(
        "--normal-fraction",
        type=float,
        default=0.25,
        help="fraction of sessions without an event (default 0.25)",
    )
    cctv.add_argument(
        "--events-per-scene",
        type=int,
        default=1,
        metavar="K",
        help="stage every scene with an event K times, with K different classes, so that "
        "the place tells nothing of the class (default 1; the CCTV job uses 2)",
    )
    cctv.add_argument(
        "--person-scale",
        type=float,
        metavar="S",
        help="size of the people (and what they carry or strike), 0.5-3 (default 1.8: "
        "30-54 %% of the picture's height, far to near; 1: 17-30 %%)",
    )
    cctv.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    cctv.add_argument(
        "--workers", type=int, default=0, help="rendering processes (default 0: this process)"
    )
    cctv.set_defaults(func=run_synth_cctv)


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_check(args: argparse.Namespace) -> int:
    from rsanet.cli import CLIError
    from rsanet.data import check_dataset

    if args.min_frames < 1:
        raise CLIError(f"--min-frames must be >= 1, got {args.min_frames}")
    if args.workers is not None and args.workers < 0:
        raise CLIError(f"--workers must be >= 0, got {args.workers}")
    options = {"labels": args.labels} if args.labels else {}
    if args.fps is not None:
        if args.format not in ("ucf-crime", "xd-violence") or not args.fps > 0:
            raise CLIError(f"--fps (> 0) is for ucf-crime and xd-violence, got {args.fps}")
        options["fps"] = args.fps
    root = args.root
    if args.format in ("folder", "aihub-cctv"):
        root = root or args.annotations
    try:
        report = check_dataset(
            args.format,
            args.annotations,
            root,
            split=args.split,
            workers=args.workers,
            progress=True,
            min_frames=args.min_frames,
            backend=args.backend,
            out=args.out,
            allow_outside_root=args.allow_outside_root,
            **options,
        )
    except OSError as error:
        if isinstance(error, FileNotFoundError) and not error.filename:
            raise  # already one line naming the path
        where = f"cannot write the report {args.out}: " if args.out else ""
        raise CLIError(f"{where}{error}") from None
    print(json.dumps(report.to_dict()) if args.json else report.summary())
    return 1 if report.bad else 0


def run_synth(args: argparse.Namespace) -> int:
    from rsanet.cli import CLIError
    from rsanet.data import write_synthmotion

    if args.videos < 1:
        raise CLIError(f"--videos must be >= 1, got {args.videos}")
    if args.val_videos is not None and args.val_videos < 0:
        raise CLIError(f"--val-videos must be >= 0, got {args.val_videos}")
    if args.frames < 2:
        raise CLIError(f"--frames must be >= 2, got {args.frames}")
    if args.size < 16 or (args.format == "mp4" and args.size % 2):
        raise CLIError(f"--size must be >= 16 (and even for mp4), got {args.size}")
    try:
        paths = write_synthmotion(
            args.out,
            args.videos,
            num_val_videos=args.val_videos,
            num_frames=args.frames,
            size=args.size,
            format=args.format,
            seed=args.seed,
            workers=args.workers,
            progress=True,
        )
    except OSError as error:
        if isinstance(error, FileNotFoundError) and not error.filename:
            raise
        raise CLIError(
            f"cannot write SynthMotion to {args.out}: {error} (files already complete are "
            "intact; fix the cause and run the same command again)"
        ) from None
    print(f"wrote SynthMotion to {args.out}: {paths['train']}, {paths['val']}, {paths['classes']}")
    print(f"read it with: build_dataset('list', '{paths['train']}', '{args.out}')")
    return 0


def _range(text: str, what: str) -> tuple[int, int]:
    from rsanet.cli import CLIError

    low, _, high = text.partition("-")
    try:
        values = (int(low), int(high or low))
    except ValueError:
        raise CLIError(f"{what} must be N or MIN-MAX, got {text!r}") from None
    return values


def run_synth_cctv(args: argparse.Namespace) -> int:
    from rsanet.cli import CLIError
    from rsanet.data.synthcctv import PERSON_SCALE, SYNTHCCTV_CLASSES, write_synthcctv

    cameras = _range(args.cameras, "--cameras")
    if not 1 <= cameras[0] <= cameras[1] <= 3:
        raise CLIError(f"--cameras must be within 1-3 (e.g. 2-3), got {args.cameras}")
    width, _, height = args.size.lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        raise CLIError(f"--size must be WxH (e.g. 160x120), got {args.size!r}") from None
    if min(size) < 32 or size[0] % 2 or size[1] % 2:
        raise CLIError(f"--size must be even and at least 32x32, got {args.size}")
    if args.sessions < 1:
        raise CLIError(f"--sessions must be >= 1, got {args.sessions}")
    if args.seconds < 3 or args.fps < 1:
        raise CLIError(f"--seconds must be >= 3 and --fps >= 1, got {args.seconds}, {args.fps}")
    if not 0 <= args.normal_fraction <= 1:
        raise CLIError(f"--normal-fraction must be in [0, 1], got {args.normal_fraction}")
    if args.workers < 0:
        raise CLIError(f"--workers must be >= 0, got {args.workers}")
    if args.events_per_scene < 1:
        raise CLIError(f"--events-per-scene must be >= 1, got {args.events_per_scene}")
    if args.person_scale is not None and not 0.5 <= args.person_scale <= 3:
        raise CLIError(f"--person-scale must be within 0.5-3, got {args.person_scale}")
    classes = None
    if args.classes:
        classes = [c for item in args.classes for c in item.split(",") if c]
        unknown = [c for c in classes if c not in SYNTHCCTV_CLASSES]
        if unknown or not classes:
            choices = ", ".join(SYNTHCCTV_CLASSES)
            raise CLIError(f"unknown --classes {', '.join(unknown)}; choose from {choices}")
    try:
        summary = write_synthcctv(
            args.out,
            args.sessions,
            cameras=cameras,
            seconds=args.seconds,
            fps=args.fps,
            size=size,
            classes=classes,
            normal_fraction=args.normal_fraction,
            seed=args.seed,
            events_per_scene=args.events_per_scene,
            person_scale=PERSON_SCALE if args.person_scale is None else args.person_scale,
            workers=args.workers,
            progress=True,
        )
    except ValueError as error:
        raise CLIError(str(error)) from None
    except OSError as error:
        raise CLIError(
            f"cannot write SynthCCTV to {args.out}: {error} (recordings already complete are "
            "intact; fix the cause and run the same command again)"
        ) from None
    print(
        f"wrote SynthCCTV to {args.out}: {len(summary['recordings'])} recordings "
        f"({summary['written']} written, {summary['skipped']} already there), "
        f"{summary['bytes'] / 1e6:.1f} MB"
    )
    print(f"check it with: rsanet data check {args.out} --format aihub-cctv")
    return 0
