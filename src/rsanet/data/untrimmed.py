"""Annotations of untrimmed recordings, read into
:class:`~rsanet.data.events.UntrimmedAnnotations`: the anomaly benchmarks' frame-number
files, our own intervals file, and (in :mod:`rsanet.data.aihub`) AI Hub's class folders.

========================  ==================================================================
format                    files (as downloaded)
========================  ==================================================================
``aihub-cctv``            ``ROOT/NN.한글(english)/.../<name>.mp4`` each with ``<name>.xml``
``ucf-crime``             ``Temporal_Anomaly_Annotation*.txt``: ``video class s1 e1 s2 e2``
                          (frames, -1 for none); videos anywhere under ROOT
``xd-violence``           ``annotations.txt``: ``name s1 e1 [s2 e2 ...]`` (frames); classes in
                          the name after ``label_``; videos ``<name>.mp4`` under ROOT
``intervals``             our CSV / JSON rows ``video, label, start_s, end_s`` (seconds)
========================  ==================================================================

Frame numbers become seconds by dividing by ``fps`` (the videos' rate, not in the files:
30 for UCF-Crime, 24 for XD-Violence by default). A malformed line is a
:class:`~rsanet.data.errors.BadSample` naming ``file:line`` and the fix; a video whose name
is not at ``ROOT/<name>`` is looked for by file name under ROOT (the benchmarks' archives
file videos in class sub-folders).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rsanet.data.aihub import read_aihub_cctv
from rsanet.data.annotations import (
    check_allow_outside_root,
    read_class_names,
    read_json,
    read_lines,
    read_text,
    report_bad_rows,
    sample_path,
)
from rsanet.data.errors import AnnotationError, BadSample, check_policy
from rsanet.data.events import (
    EventInterval,
    UntrimmedAnnotations,
    UntrimmedVideo,
    interval_problem,
    parse_number,
)

UNTRIMMED_FORMATS = ("aihub-cctv", "ucf-crime", "xd-violence", "intervals")

#: the annotation file each format looks for when given a folder
UNTRIMMED_FILES = {
    "ucf-crime": (
        "Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
        "Temporal_Anomaly_Annotation.txt",
    ),
    "xd-violence": ("annotations.txt",),
    "intervals": ("intervals.csv", "intervals.json"),
}

#: frames per second of each benchmark's videos (its files count frames)
DEFAULT_FPS = {"ucf-crime": 30.0, "xd-violence": 24.0}

#: UCF-Crime's 13 anomaly classes (``Normal`` videos have no event)
UCF_CRIME_CLASSES = (
    "Abuse",
    "Arrest",
    "Arson",
    "Assault",
    "Burglary",
    "Explosion",
    "Fighting",
    "RoadAccidents",
    "Robbery",
    "Shooting",
    "Shoplifting",
    "Stealing",
    "Vandalism",
)

#: XD-Violence's label codes (``A`` is normal: no event; ``0`` pads the list)
XD_VIOLENCE_CODES = {
    "B1": "fighting",
    "B2": "shooting",
    "B4": "riot",
    "B5": "abuse",
    "B6": "car_accident",
    "G": "explosion",
}
XD_VIOLENCE_CLASSES = tuple(XD_VIOLENCE_CODES.values())


class _VideoFinder:
    """``ROOT/<name>`` when it exists, else the one file of that name under ROOT (listed once,
    on the first miss), else ``ROOT/<name>`` (reported missing when decoded)."""

    def __init__(self, root: Path, allow_outside_root: bool) -> None:
        self.root, self.allow = root, allow_outside_root
        self.index: dict[str, str] | None = None

    def __call__(self, name: str, where: str) -> str | BadSample:
        path = sample_path(self.root, name, where, allow_outside_root=self.allow)
        if isinstance(path, BadSample) or os.path.exists(path):
            return path
        if self.index is None:
            self.index = {}
            for folder, subfolders, files in os.walk(self.root):
                subfolders.sort()
                for file in sorted(files):
                    self.index.setdefault(file, os.path.join(folder, file))
        return self.index.get(os.path.basename(name), path)


def _frame_pairs(
    fields: Sequence[str], fps: float, where: str
) -> tuple[list[tuple[float, float]], BadSample | None]:
    """Seconds of the ``start end`` frame pairs (``-1 -1``: none), or the problem."""
    numbers = [parse_number(text) for text in fields]
    if len(fields) % 2 or any(n is None or n % 1 for n in numbers):
        return [], BadSample(
            where, f"expected pairs of frame numbers 'start end', got {' '.join(fields)!r}"
        )
    spans = []
    for first, last in zip(numbers[::2], numbers[1::2], strict=True):
        if first == last == -1:
            continue
        if first < 0 or last < 0:
            return [], BadSample(
                where, f"frames {first:g} {last:g}: -1 marks a missing pair, both must be -1"
            )
        problem = interval_problem(first / fps, last / fps, None)
        if problem:
            return [], BadSample(where, f"frames {first:g}-{last:g}: {problem}")
        spans.append((first / fps, last / fps))
    return spans, None


def read_ucf_crime(
    annotations: str | Path,
    root: str | Path,
    *,
    fps: float = DEFAULT_FPS["ucf-crime"],
    allow_outside_root: bool = False,
) -> UntrimmedAnnotations:
    """``Temporal_Anomaly_Annotation*.txt``: ``video class s1 e1 s2 e2`` per line, frame
    numbers, ``-1`` where there is no (second) interval; ``Normal`` videos have none and
    every other class at least one. Seconds are frames / ``fps``."""
    annotations = Path(annotations)
    find = _VideoFinder(Path(root), allow_outside_root)
    by_name = {name.casefold(): name for name in UCF_CRIME_CLASSES}
    videos, bad = [], []
    for number, line in enumerate(read_lines(annotations), start=1):
        if not line.strip():
            continue
        where = f"{annotations}:{number}"
        fields = line.split()
        if len(fields) < 4:
            bad.append(BadSample(where, f"expected 'video class s1 e1 s2 e2', got {line!r}"))
            continue
        name, given = fields[0], fields[1]
        normal = given.casefold() == "normal"
        label = None if normal else by_name.get(given.casefold())
        if not normal and label is None:
            bad.append(
                BadSample(
                    where,
                    f"unknown class {given!r}: not Normal nor one of "
                    f"{', '.join(UCF_CRIME_CLASSES)} (fix the class column)",
                )
            )
            continue
        spans, problem = _frame_pairs(fields[2:], fps, where)
        if problem is None and normal and spans:
            problem = BadSample(where, "a Normal video with an interval (set its frames to -1)")
        if problem is None and not normal and not spans:
            problem = BadSample(where, f"class {label} but every interval is -1 (add one)")
        path = problem or find(name, where)
        if isinstance(path, BadSample):
            bad.append(path)
            continue
        events = tuple(EventInterval(label, start, end) for start, end in spans)
        videos.append(
            UntrimmedVideo(path, events, () if normal else (label,), fps=fps, source=where)
        )
    classes = [c for c in UCF_CRIME_CLASSES if any(c in v.labels for v in videos)]
    return UntrimmedAnnotations(videos, classes, bad, [], str(annotations))


def xd_violence_labels(name: str) -> list[str] | str:
    """The classes in an XD-Violence name (``..._label_B4-G-0`` -> ``["riot",
    "explosion"]``; ``A``: ``[]``), or why they cannot be read."""
    match = re.search(r"label_([A-Za-z0-9-]+)$", name)
    if match is None:
        return "no 'label_<codes>' at the end of the name (e.g. '..._label_B4-G-0')"
    codes = [code for code in match.group(1).split("-") if code != "0"]
    unknown = [code for code in codes if code not in XD_VIOLENCE_CODES and code != "A"]
    if unknown or not codes or "A" in codes and len(codes) > 1:
        return (
            f"unknown class code(s) {'-'.join(unknown or codes)!r} in the name: expected A "
            f"(normal, alone) or up to 3 of {', '.join(XD_VIOLENCE_CODES)} padded with 0"
        )
    return [XD_VIOLENCE_CODES[code] for code in codes if code != "A"]


def read_xd_violence(
    annotations: str | Path,
    root: str | Path,
    *,
    fps: float = DEFAULT_FPS["xd-violence"],
    video_ext: str = "mp4",
    allow_outside_root: bool = False,
) -> UntrimmedAnnotations:
    """``annotations.txt``: ``name s1 e1 [s2 e2 ...]`` per line (frames); the classes come
    from the name. The file does not say which of a video's classes each interval shows,
    so each interval is listed once per class; a normal (``A``) video has no interval."""
    annotations = Path(annotations)
    find = _VideoFinder(Path(root), allow_outside_root)
    videos, bad = [], []
    for number, line in enumerate(read_lines(annotations), start=1):
        if not line.strip():
            continue
        where = f"{annotations}:{number}"
        fields = line.split()
        name = re.sub(rf"\.{re.escape(video_ext)}$", "", fields[0])
        labels = xd_violence_labels(name)
        if isinstance(labels, str):
            bad.append(BadSample(where, labels))
            continue
        spans, problem = _frame_pairs(fields[1:], fps, where)
        if problem is None and not labels and spans:
            problem = BadSample(where, "a normal (A) video with an interval; remove them")
        if problem is None and labels and not spans:
            problem = BadSample(where, f"class {labels[0]} but no interval (add its frames)")
        path = problem or find(f"{name}.{video_ext}", where)
        if isinstance(path, BadSample):
            bad.append(path)
            continue
        events = tuple(EventInterval(lab, s, e) for s, e in spans for lab in labels)
        videos.append(UntrimmedVideo(path, events, tuple(labels), fps=fps, source=where))
    classes = [c for c in XD_VIOLENCE_CLASSES if any(c in v.labels for v in videos)]
    return UntrimmedAnnotations(videos, classes, bad, [], str(annotations))


INTERVAL_FIELDS = ("video", "label", "start_s", "end_s")


def _interval_rows(path: Path) -> Iterable[tuple[str, Mapping]]:
    """``(where, row)`` of an intervals CSV (with a header) or JSON list."""
    if path.suffix.lower() == ".json":
        entries = read_json(path)
        if not isinstance(entries, list):
            raise AnnotationError(str(path), "expected a JSON list of {video, label, ...}")
        for number, entry in enumerate(entries):
            yield f"{path}:entry {number}", entry
        return
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    missing = [name for name in INTERVAL_FIELDS if name not in (reader.fieldnames or [])]
    if missing:
        raise AnnotationError(
            f"{path}:1",
            f"the header lacks {', '.join(missing)} (expected video,label,start_s,end_s)",
        )
    for row in reader:
        yield f"{path}:{reader.line_num}", row


def read_intervals(
    annotations: str | Path,
    root: str | Path,
    *,
    labels: str | Path | Sequence[str] | None = None,
    allow_outside_root: bool = False,
) -> UntrimmedAnnotations:
    """Our own format: rows ``video, label, start_s, end_s`` (seconds; optional
    ``duration_s``), CSV with a header or a JSON list of objects; a video without events is
    one row with the others empty (null). ``labels``: the allowed classes (a file, one per
    line, or a list); without it, the labels met. A video with a bad row is left out."""
    annotations = Path(annotations)
    if isinstance(labels, (str, Path)):
        allowed, labels_source = read_class_names(labels), str(labels)
    else:
        allowed, labels_source = (None if labels is None else list(labels)), ""
    order: dict[str, dict] = {}
    bad = []
    for where, row in _interval_rows(annotations):
        if not isinstance(row, Mapping) or not str(row.get("video") or "").strip():
            bad.append(BadSample(where, f"no 'video' field in {row!r:.80}"))
            continue
        video = str(row["video"]).strip()
        entry = order.setdefault(video, {"where": where, "events": [], "bad": False})
        label = str(row.get("label") or "").strip()
        start, end = parse_number(row.get("start_s")), parse_number(row.get("end_s"))
        duration = parse_number(row.get("duration_s"))
        empty = not label and all(row.get(k) in (None, "") for k in ("start_s", "end_s"))
        problem = None
        if row.get("duration_s") not in (None, "") and (duration is None or duration <= 0):
            problem = f"duration_s {row.get('duration_s')!r} is not a positive number of seconds"
        elif empty:
            pass
        elif not label or start is None or end is None:
            problem = (
                f"missing or not a number: label/start_s/end_s = {row.get('label')!r}/"
                f"{row.get('start_s')!r}/{row.get('end_s')!r} (give all three, or none)"
            )
        elif allowed is not None and label not in allowed:
            problem = f"unknown class {label!r}: not in {labels} (fix the label or the list)"
        else:
            problem = interval_problem(start, end, duration)
        if duration is not None:
            entry["duration"] = duration
        if problem:
            bad.append(BadSample(where, f"{video}: {problem}"))
            entry["bad"] = True
        elif not empty:
            entry["events"].append(EventInterval(label, start, end))
    videos = []
    for video, entry in order.items():
        path = sample_path(root, video, entry["where"], allow_outside_root=allow_outside_root)
        if isinstance(path, BadSample):
            bad.append(path)
        elif not entry["bad"]:
            events = tuple(sorted(entry["events"], key=lambda e: (e.start_s, e.end_s)))
            names = tuple(dict.fromkeys(e.label for e in events))
            videos.append(
                UntrimmedVideo(path, events, names, entry.get("duration"), source=entry["where"])
            )
    met = sorted({label for v in videos for label in v.labels})
    classes = allowed if allowed is not None else met
    return UntrimmedAnnotations(videos, classes, bad, [], str(annotations), labels_source)


def _annotation_file(fmt: str, path: Path) -> Path:
    if not path.is_dir():
        return path
    for name in UNTRIMMED_FILES[fmt]:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(
        f"{fmt}: no annotation file in {path} (looked for {', '.join(UNTRIMMED_FILES[fmt])}); "
        "pass the file itself"
    )


def read_untrimmed(
    format: str,
    annotations: str | Path | None,
    root: str | Path | None = None,
    *,
    policy: str = "skip",
    quiet: bool = False,
    labels: str | Path | Sequence[str] | None = None,
    class_map: Mapping[str, str] | str | Path | None = None,
    fps: float | None = None,
    deduplicate: bool = True,
    allow_outside_root: bool = False,
) -> UntrimmedAnnotations:
    """Read the annotations of untrimmed recordings in one of :data:`UNTRIMMED_FORMATS`.

    ``annotations``: the annotation file (or its folder); for ``aihub-cctv`` the data folder
    (``root`` if given). ``root``: the videos' folder (default: the annotation file's).
    ``labels``: the allowed classes of ``intervals``, or the class map file of
    ``aihub-cctv`` (as ``class_map``). ``fps``: frames per second of the frame-numbered
    formats (:data:`DEFAULT_FPS`). Malformed annotations are kept in ``.bad``, logged
    (unless ``quiet``), or the first raises under ``policy="raise"``; a data set without a
    single video or annotation is an :class:`AnnotationError`."""
    check_policy(policy)
    check_allow_outside_root(allow_outside_root)
    if fps is not None and not (parse_number(fps) or 0) > 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if format not in UNTRIMMED_FORMATS:
        raise ValueError(f"unknown format {format!r}; one of {', '.join(UNTRIMMED_FORMATS)}")
    if annotations is None and root is None:
        raise ValueError(f"{format}: give the annotation file (or its folder) or a root")
    annotations, root = (None if v is None else Path(v).expanduser() for v in (annotations, root))
    if format == "aihub-cctv":
        if labels is not None and class_map is not None:
            raise ValueError("aihub-cctv: give the class map as labels= or class_map=, not both")
        mapping = class_map if class_map is not None else labels
        result = read_aihub_cctv(root or annotations, class_map=mapping, deduplicate=deduplicate)
    else:
        path = _annotation_file(format, annotations or root)
        if not path.is_file():
            raise FileNotFoundError(f"annotation file {path} not found (check the path)")
        folder = root if root is not None else path.parent
        common = {"allow_outside_root": allow_outside_root}
        if format == "intervals":
            result = read_intervals(path, folder, labels=labels, **common)
        else:
            rate = float(fps) if fps is not None else DEFAULT_FPS[format]
            reader = read_ucf_crime if format == "ucf-crime" else read_xd_violence
            result = reader(path, folder, fps=rate, **common)
    if not result.total_rows and not result.duplicates:
        raise AnnotationError(
            result.source,
            "no recordings found (an empty file, or no videos with their XML); check the path",
        )
    report_bad_rows(result.bad, policy, quiet=quiet)
    return result
