"""Annotation formats of the benchmarks, read as their users download them.

Each reader returns :class:`Annotations`: the :class:`VideoRecord` of every good row, the
class names by id, and a :class:`~rsanet.data.errors.BadSample` for every malformed row
(``file:line`` or ``file:entry N``, and the reason). :func:`read_annotations` picks the
reader by format name, finds the standard split and label files, and applies the policy
to malformed rows.

========================  ==================================================================
format                    files (as downloaded)
========================  ==================================================================
``something-v1``          ``something-something-v1-{train,validation}.csv`` (``id;label``),
                          ``something-something-v1-labels.csv``; frames ``ROOT/<id>/00001.jpg``
``something-v2``          ``something-something-v2-{train,validation}.json`` (label = the
                          ``template`` without brackets), ``something-something-v2-labels.json``;
                          videos ``ROOT/<id>.webm``
``diving48``              ``Diving48_V2_{train,test}.json`` (``vid_name``, ``label``,
                          ``start_frame``, ``end_frame``), ``Diving48_vocab.json``;
                          videos ``ROOT/<vid_name>.mp4``
``finegym``               ``gym99_{train_element_v1.1,val_element}.txt`` (``<clip_id> <label>``),
                          ``gym99_categories.txt`` (or the gym288 files);
                          clips ``ROOT/<clip_id>.mp4``
``list``                  TSN/TSM/RSA lists: ``path num_frames label`` per line (frame folders
                          or videos, relative to ROOT); class names from ``classes.txt``
``folder``                ``ROOT/<class name>/<video or frame folder>``
========================  ==================================================================

Data stays inside its root: a row whose path, joined to ROOT and normalised, is not inside
ROOT (an absolute path elsewhere, or one climbing out with ``..``) is a malformed row
("outside the data root"), unless ``allow_outside_root=True``. The rule is lexical, on what
the row says; symbolic links inside ROOT are followed (a root of links to another disk is
common), and the normalised path is the one read, so ``link/..`` cannot climb out either.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rsanet.data.errors import AnnotationError, BadSample, check_policy, logger

#: formats read from files (``synthmotion`` is generated in memory)
FILE_FORMATS = ("something-v1", "something-v2", "diving48", "finegym", "list", "folder")
#: every format :func:`rsanet.data.build_dataset` accepts
FORMATS = (*FILE_FORMATS, "synthmotion")

#: file extensions taken for videos (lower case)
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")

#: the split files each format looks for when ``annotations`` is a folder
SPLIT_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    "something-v1": {
        "train": ("something-something-v1-train.csv",),
        "val": ("something-something-v1-validation.csv",),
    },
    "something-v2": {
        "train": ("something-something-v2-train.json",),
        "val": ("something-something-v2-validation.json",),
    },
    "diving48": {"train": ("Diving48_V2_train.json",), "val": ("Diving48_V2_test.json",)},
    "finegym": {
        "train": ("gym99_train_element_v1.1.txt", "gym288_train_element_v1.1.txt"),
        "val": ("gym99_val_element.txt", "gym288_val_element.txt"),
    },
    "list": {
        "train": ("train.txt", "train_videofolder.txt"),
        "val": ("val.txt", "val_videofolder.txt"),
    },
}

#: the class-name file of each format, looked for next to the annotations, then in ROOT
LABEL_FILES = {
    "something-v1": "something-something-v1-labels.csv",
    "something-v2": "something-something-v2-labels.json",
    "diving48": "Diving48_vocab.json",
    "finegym": "gym99_categories.txt",
    "list": "classes.txt",
}

SPLITS = ("train", "val")


@dataclass(frozen=True)
class VideoRecord:
    """One sample: ``path`` is a video file or a folder of frames.

    ``num_frames`` is the count an annotation declares (the list format), else None (counted
    from the source when read). Frames ``[start_frame, end_frame)`` are used (Diving48).
    ``source`` is the ``file:line`` of the row, for messages.
    """

    path: str
    label: int
    num_frames: int | None = None
    start_frame: int = 0
    end_frame: int | None = None
    source: str = ""


@dataclass
class Annotations:
    """The good rows, the class names by id, and the malformed rows of one split."""

    records: list[VideoRecord]
    classes: list[str]
    bad: list[BadSample] = field(default_factory=list)
    source: str = ""
    #: the class-name file read ("" when there is none)
    labels_source: str = ""

    @property
    def total_rows(self) -> int:
        return len(self.records) + len(self.bad)


# -- helpers ------------------------------------------------------------------------------


def read_text(path: str | Path) -> str:
    """The text of an annotation or class-name file. A file that is missing, unreadable,
    binary (a video, an archive, UTF-16) or not UTF-8 is one error naming it, never a
    traceback or a silently empty data set."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} not found (check the path)")
    try:
        with open(path, "rb") as handle:
            data = handle.read(8192)  # a video given by mistake is not read whole
            if b"\x00" not in data:
                data += handle.read()
    except OSError as error:
        raise AnnotationError(
            str(path), f"cannot be read: {error.strerror or error} (check its permissions)"
        ) from None
    if b"\x00" in data:
        raise AnnotationError(
            str(path),
            "a binary file (a video, an archive or UTF-16 text?), not a UTF-8 text "
            "annotation file; pass the annotation file itself, saved as UTF-8",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise AnnotationError(
            f"{path}:{line}",
            f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "save the file as UTF-8, or check that the path names the annotation file",
        ) from None


def read_lines(path: str | Path) -> list[str]:
    """The lines of a text file, numbered as editors number them (only ``\\n``, ``\\r\\n``
    and ``\\r`` end a line)."""
    return re.split(r"\r\n|\r|\n", read_text(path))


def read_json(path: str | Path) -> object:
    """The JSON value of a file; an :class:`AnnotationError` naming the file and the line
    where it does not parse."""
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise AnnotationError(
            f"{path}:{error.lineno}",
            f"invalid JSON: {error.msg} at column {error.colno} (re-download the file)",
        ) from None
    except RecursionError:
        raise AnnotationError(str(path), "invalid JSON: nested too deeply") from None


def _find_labels(fmt: str, annotations: Path, root: Path | None, labels: str | None) -> Path:
    """The label file: ``labels`` if given, else the standard name next to the annotations
    file or in ``root``."""
    if labels is not None:
        if not Path(labels).is_file():
            raise FileNotFoundError(f"label file {labels} not found (check the labels= path)")
        return Path(labels)
    name = LABEL_FILES[fmt]
    if fmt == "finegym" and annotations.name.lower().startswith("gym288"):
        name = "gym288_categories.txt"
    candidates = [annotations.parent / name] + ([root / name] if root is not None else [])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{fmt}: label file {name} not found next to {annotations}"
        + (f" nor in {root}" if root is not None else "")
        + " (pass labels=PATH, or --labels PATH on the command line)"
    )


def _class_index(classes: Sequence[str], source: Path) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, name in enumerate(classes):
        if name in index:
            raise AnnotationError(str(source), f"class {name!r} is listed twice")
        index[name] = i
    return index


def _int_field(value: object) -> int | None:
    """``value`` as an int if it is one (or a string of one), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def check_allow_outside_root(value: object) -> bool:
    """``value`` if it is a bool; a string such as ``"false"`` is refused, not taken as
    true."""
    if not isinstance(value, bool):
        raise TypeError(f"allow_outside_root must be true or false, got {value!r}")
    return value


def sample_path(
    root: str | Path, name: str, where: str, *, allow_outside_root: bool = False
) -> str | BadSample:
    """The path of the sample a row names (``name`` relative to ``root``), or a
    :class:`BadSample` at ``where`` when it leads outside ``root`` (an absolute path
    elsewhere, or ``..`` climbing out) and ``allow_outside_root`` is false.

    The test is lexical and the normalised path is returned, so the file read is the one
    checked; symbolic links inside ``root`` are followed."""
    if allow_outside_root:
        return str(Path(root) / name)
    path = os.path.normpath(os.path.join(root, name))
    base, full = os.path.abspath(root), os.path.abspath(path)
    if os.path.commonpath([base, full]) != base:
        return BadSample(
            where,
            f"outside the data root: {name!r} leads to {full}, not into {base} (an absolute "
            "path or one climbing out with '..'); fix the row or the root, or allow it "
            "explicitly with allow_outside_root=True (--allow-outside-root)",
        )
    return path


def _media(
    root: Path, name: str, ext: str | None, where: str, allow_outside_root: bool
) -> str | BadSample:
    name += f".{ext.lstrip('.')}" if ext else ""
    return sample_path(root, name, where, allow_outside_root=allow_outside_root)


# -- Something-Something ------------------------------------------------------------------


def read_something_v1_labels(path: str | Path, class_order: str = "sorted") -> list[str]:
    """Class names of ``something-something-v1-labels.csv`` (one per line). ``sorted`` gives
    the ids of the TSN/TSM/RSA code (names sorted), ``file`` keeps the file's order."""
    if class_order not in ("sorted", "file"):
        raise ValueError(f"class_order must be 'sorted' or 'file', got {class_order!r}")
    names = [line.strip() for line in read_lines(path) if line.strip()]
    if not names:
        raise AnnotationError(str(path), "no class names (expected one name per line)")
    return sorted(names) if class_order == "sorted" else names


def read_something_v1(
    annotations: str | Path,
    root: str | Path,
    *,
    labels: str | Path,
    class_order: str = "sorted",
    allow_outside_root: bool = False,
) -> Annotations:
    """``something-something-v1-{train,validation}.csv`` rows ``<id>;<label name>``; the
    frames of each video in ``ROOT/<id>/`` (an id may hold spaces; it ends at the ``;``)."""
    annotations, root = Path(annotations), Path(root)
    classes = read_something_v1_labels(labels, class_order)
    index = _class_index(classes, Path(labels))
    records, bad = [], []
    for number, line in enumerate(read_lines(annotations), start=1):
        if not line.strip():
            continue
        where = f"{annotations}:{number}"
        video_id, sep, name = line.partition(";")
        video_id, name = video_id.strip(), name.strip()
        if not sep or not video_id or not name:
            bad.append(BadSample(where, f"expected '<video id>;<label name>', got {line!r}"))
        elif name not in index:
            bad.append(BadSample(where, f"label {name!r} is not a class of {labels}"))
        else:
            path = sample_path(root, video_id, where, allow_outside_root=allow_outside_root)
            if isinstance(path, BadSample):
                bad.append(path)
            else:
                records.append(VideoRecord(path, index[name], source=where))
    return Annotations(records, classes, bad, str(annotations), str(labels))


def something_v2_label_name(template: str) -> str:
    """The class name of a V2 ``template``: ``"Putting [something] on a surface"`` ->
    ``"Putting something on a surface"``."""
    return template.replace("[", "").replace("]", "").strip()


def read_something_v2_labels(path: str | Path) -> list[str]:
    """Class names by id of ``something-something-v2-labels.json`` (``{name: "id"}``)."""
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise AnnotationError(str(path), "expected a JSON object {class name: id}")
    by_id: dict[int, str] = {}
    for name, value in data.items():
        label = _int_field(value)
        if label is None or label in by_id:
            raise AnnotationError(str(path), f"class {name!r} has a bad or repeated id {value!r}")
        by_id[label] = name
    if sorted(by_id) != list(range(len(by_id))):
        raise AnnotationError(str(path), f"class ids are not 0..{len(by_id) - 1}")
    return [by_id[i] for i in range(len(by_id))]


def read_something_v2(
    annotations: str | Path,
    root: str | Path,
    *,
    labels: str | Path,
    video_ext: str = "webm",
    allow_outside_root: bool = False,
) -> Annotations:
    """``something-something-v2-{train,validation}.json``: a list of ``{"id", "template",
    ...}``; the label is the template without brackets; videos ``ROOT/<id>.webm``."""
    annotations, root = Path(annotations), Path(root)
    classes = read_something_v2_labels(labels)
    index = _class_index(classes, Path(labels))
    entries = read_json(annotations)
    if not isinstance(entries, list):
        raise AnnotationError(str(annotations), "expected a JSON list of {id, template} objects")
    records, bad = [], []
    for number, entry in enumerate(entries):
        where = f"{annotations}:entry {number}"
        if not isinstance(entry, dict) or "id" not in entry:
            bad.append(BadSample(where, f"expected an object with 'id', got {entry!r:.80}"))
            continue
        where = f"{annotations}:entry {number} (id {entry['id']})"
        template = entry.get("template")
        if not isinstance(template, str):
            bad.append(BadSample(where, "no 'template' field (the test split has no labels)"))
            continue
        name = something_v2_label_name(template)
        if name not in index:
            bad.append(BadSample(where, f"template {template!r} is not a class of {labels}"))
            continue
        path = _media(root, str(entry["id"]).strip(), video_ext, where, allow_outside_root)
        if isinstance(path, BadSample):
            bad.append(path)
            continue
        records.append(VideoRecord(path, index[name], source=where))
    return Annotations(records, classes, bad, str(annotations), str(labels))


# -- Diving-48 ----------------------------------------------------------------------------


def read_diving48_vocab(path: str | Path) -> list[str]:
    """Class names of ``Diving48_vocab.json``: a list of ``[takeoff, somersault, twist,
    flight]`` lists, joined by spaces (``"Back 15som 05Twis FREE"``)."""
    data = read_json(path)
    if not isinstance(data, list) or not data:
        raise AnnotationError(str(path), "expected a JSON list of class descriptions")
    names = []
    for number, item in enumerate(data):
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, list) and all(isinstance(part, str) for part in item):
            names.append(" ".join(item))
        else:
            raise AnnotationError(f"{path}:entry {number}", f"expected a list of strings: {item!r}")
    return names


def read_diving48(
    annotations: str | Path,
    root: str | Path,
    *,
    labels: str | Path,
    video_ext: str = "mp4",
    allow_outside_root: bool = False,
) -> Annotations:
    """``Diving48_V2_{train,test}.json``: ``{"vid_name", "label", "start_frame",
    "end_frame"}`` objects; videos ``ROOT/<vid_name>.mp4``, frames ``[start, end)`` used."""
    annotations, root = Path(annotations), Path(root)
    classes = read_diving48_vocab(labels)
    entries = read_json(annotations)
    if not isinstance(entries, list):
        raise AnnotationError(str(annotations), "expected a JSON list of {vid_name, label, ...}")
    records, bad = [], []
    for number, entry in enumerate(entries):
        where = f"{annotations}:entry {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("vid_name"), str):
            bad.append(BadSample(where, f"expected an object with 'vid_name', got {entry!r:.80}"))
            continue
        where = f"{annotations}:entry {number} ({entry['vid_name']})"
        label = _int_field(entry.get("label"))
        start = _int_field(entry.get("start_frame", 0))
        end = _int_field(entry.get("end_frame")) if "end_frame" in entry else None
        if label is None or not 0 <= label < len(classes):
            bad.append(
                BadSample(
                    where,
                    f"field 'label' = {entry.get('label')!r} is not a class id "
                    f"0..{len(classes) - 1}",
                )
            )
        elif start is None or start < 0 or ("end_frame" in entry and (end is None or end <= start)):
            bad.append(
                BadSample(
                    where,
                    f"fields start_frame/end_frame = {entry.get('start_frame')!r}/"
                    f"{entry.get('end_frame')!r} are not a frame range",
                )
            )
        else:
            path = _media(root, entry["vid_name"], video_ext, where, allow_outside_root)
            if isinstance(path, BadSample):
                bad.append(path)
            else:
                records.append(VideoRecord(path, label, None, start, end, source=where))
    return Annotations(records, classes, bad, str(annotations), str(labels))


# -- FineGym ------------------------------------------------------------------------------

_GYM_CATEGORY = re.compile(r"\s*Clabel:\s*(\d+)\s*;[^;]*;[^;]*;\s*(.*\S)\s*$")


def read_finegym_categories(path: str | Path) -> list[str]:
    """Class names of ``gym99_categories.txt`` / ``gym288_categories.txt``: lines
    ``Clabel: N; set: S; Glabel: G; (VT) name``."""
    by_id: dict[int, str] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        match = _GYM_CATEGORY.match(line)
        if match is None:
            raise AnnotationError(
                f"{path}:{number}", f"expected 'Clabel: N; set: S; Glabel: G; name', got {line!r}"
            )
        by_id[int(match.group(1))] = match.group(2)
    if sorted(by_id) != list(range(len(by_id))) or not by_id:
        raise AnnotationError(str(path), f"Clabel ids are not 0..{len(by_id) - 1}")
    return [by_id[i] for i in range(len(by_id))]


def read_finegym(
    annotations: str | Path,
    root: str | Path,
    *,
    labels: str | Path,
    video_ext: str = "mp4",
    allow_outside_root: bool = False,
) -> Annotations:
    """Gym99 / Gym288 element lists ``<clip_id> <label>``; clips ``ROOT/<clip_id>.mp4``.
    The label is the last field, so a clip id may hold spaces."""
    annotations, root = Path(annotations), Path(root)
    classes = read_finegym_categories(labels)
    records, bad = [], []
    for number, line in enumerate(read_lines(annotations), start=1):
        if not line.strip():
            continue
        where = f"{annotations}:{number}"
        fields = line.strip().rsplit(None, 1)
        label = _int_field(fields[1]) if len(fields) == 2 else None
        if len(fields) != 2:
            bad.append(BadSample(where, f"expected '<clip_id> <label>', got {line!r}"))
        elif label is None or not 0 <= label < len(classes):
            bad.append(
                BadSample(where, f"label {fields[1]!r} is not a class id 0..{len(classes) - 1}")
            )
        else:
            path = _media(root, fields[0], video_ext, where, allow_outside_root)
            if isinstance(path, BadSample):
                bad.append(path)
            else:
                records.append(VideoRecord(path, label, source=where))
    return Annotations(records, classes, bad, str(annotations), str(labels))


# -- TSN list and class folders -----------------------------------------------------------


def read_class_names(path: str | Path) -> list[str]:
    """One class name per line (``classes.txt``, ``category.txt``)."""
    names = [line.strip() for line in read_lines(path) if line.strip()]
    if not names:
        raise AnnotationError(str(path), "no class names (expected one name per line)")
    return names


def read_list(
    annotations: str | Path,
    root: str | Path,
    *,
    labels: str | Path | None = None,
    allow_outside_root: bool = False,
) -> Annotations:
    """TSN/TSM/RSA list: ``path num_frames label`` per line, ``path`` a frame folder or a
    video relative to ``root``; the last two fields are the numbers, so ``path`` may hold
    spaces. Names from ``labels`` (one per line) if given, else ``str(id)``."""
    annotations, root = Path(annotations), Path(root)
    classes = read_class_names(labels) if labels is not None else None
    records, bad = [], []
    for number, line in enumerate(read_lines(annotations), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{annotations}:{number}"
        fields = line.strip().rsplit(None, 2)
        if len(fields) != 3:
            bad.append(
                BadSample(where, f"expected 3 fields 'path num_frames label', got {len(fields)}")
            )
            continue
        num_frames, label = _int_field(fields[1]), _int_field(fields[2])
        if num_frames is None or num_frames < 0:
            bad.append(BadSample(where, f"num_frames {fields[1]!r} is not a count of frames"))
        elif label is None or label < 0 or (classes is not None and label >= len(classes)):
            limit = f" 0..{len(classes) - 1}" if classes is not None else ""
            bad.append(BadSample(where, f"label {fields[2]!r} is not a class id{limit}"))
        else:
            path = sample_path(root, fields[0], where, allow_outside_root=allow_outside_root)
            if isinstance(path, BadSample):
                bad.append(path)
            else:
                records.append(VideoRecord(path, label, num_frames, source=where))
    if classes is None:
        count = max((record.label for record in records), default=-1) + 1
        classes = [str(i) for i in range(count)]
    return Annotations(
        records, classes, bad, str(annotations), "" if labels is None else str(labels)
    )


def _is_media(entry: os.DirEntry) -> bool:
    if entry.name.startswith("."):
        return False
    if entry.is_dir():
        return True
    return os.path.splitext(entry.name)[1].lower() in VIDEO_EXTENSIONS


def _list_folder(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as error:
        raise AnnotationError(
            str(folder), f"cannot be listed: {error.strerror or error} (check its permissions)"
        ) from None


def read_folder(root: str | Path) -> Annotations:
    """``ROOT/<class name>/<video file or frame folder>``; classes sorted by name. Every
    path is a folder entry, so none can lead outside ROOT (links are followed)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder {root} not found (expected ROOT/<class>/<videos>)")
    classes = sorted(
        entry.name
        for entry in _list_folder(root)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not classes:
        raise AnnotationError(str(root), "no class folders (expected ROOT/<class>/<videos>)")
    records = []
    for label, name in enumerate(classes):
        media = sorted(entry.name for entry in _list_folder(root / name) if _is_media(entry))
        records += [
            VideoRecord(str(root / name / item), label, source=str(root / name / item))
            for item in media
        ]
    return Annotations(records, classes, [], str(root))


# -- dispatch -----------------------------------------------------------------------------


def _split_file(fmt: str, folder: Path, split: str) -> Path:
    names = SPLIT_FILES[fmt][split]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"{fmt}: no {split} annotation file in {folder} (looked for {', '.join(names)}); "
        "pass the file itself"
    )


def read_annotations(
    format: str,
    annotations: str | Path | None,
    root: str | Path | None,
    *,
    split: str = "train",
    policy: str = "skip",
    labels: str | Path | None = None,
    quiet: bool = False,
    allow_outside_root: bool = False,
    **options,
) -> Annotations:
    """Read one split of a benchmark.

    ``annotations`` is the split file, or a folder holding the standard split files (see
    :data:`SPLIT_FILES`); ``root`` the folder of the videos or frame folders (default: the
    annotation file's folder). ``labels`` overrides the class-name file (see
    :data:`LABEL_FILES`). Malformed rows are kept in ``.bad``, logged (unless ``quiet``) and
    dropped (``policy="skip"``), or the first raises :class:`AnnotationError` (``"raise"``).
    ``options``: ``video_ext`` (something-v2, diving48, finegym), ``class_order``
    (something-v1).

    A row that leads outside ``root`` is malformed ("outside the data root") unless
    ``allow_outside_root`` (see :func:`sample_path`). A file without a single row is an
    :class:`AnnotationError`, not an empty data set.
    """
    check_policy(policy)
    check_allow_outside_root(allow_outside_root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    annotations, root, labels = (
        None if value is None else Path(value).expanduser() for value in (annotations, root, labels)
    )
    if format == "folder":
        folder = root if root is not None else annotations or Path()
        if options:
            raise TypeError(f"folder: unexpected options {sorted(options)}")
        split_names = {"train": ("train",), "val": ("val", "validation", "test")}[split]
        for name in split_names:
            if (folder / name).is_dir() and any(
                (folder / other).is_dir()
                for other in ("train", "val", "validation")
                if other != name
            ):
                folder = folder / name
                break
        result = read_folder(folder)
    elif format in SPLIT_FILES:
        if annotations is None:
            if root is None:
                raise ValueError(f"{format}: give the annotation file (or its folder) or a root")
            annotations = root
        path = Path(annotations)
        if path.is_dir():
            path = _split_file(format, path, split)
        root_path = Path(root) if root is not None else path.parent
        readers = {
            "something-v1": read_something_v1,
            "something-v2": read_something_v2,
            "diving48": read_diving48,
            "finegym": read_finegym,
        }
        if format == "list":
            if labels is None and (path.parent / LABEL_FILES["list"]).is_file():
                labels = path.parent / LABEL_FILES["list"]
            if options:
                raise TypeError(f"list: unexpected options {sorted(options)}")
            result = read_list(
                path, root_path, labels=labels, allow_outside_root=allow_outside_root
            )
        else:
            label_file = _find_labels(
                format, path, root_path, None if labels is None else str(labels)
            )
            result = readers[format](
                path,
                root_path,
                labels=label_file,
                allow_outside_root=allow_outside_root,
                **options,
            )
    else:
        raise ValueError(f"unknown annotation format {format!r}; one of {', '.join(FILE_FORMATS)}")
    if not result.total_rows:
        raise AnnotationError(
            result.source,
            "no videos or frame folders in the class folders"
            if format == "folder"
            else "no annotation rows (an empty file, or only comments); check the path",
        )
    report_bad_rows(result.bad, policy, quiet=quiet)
    return result


def report_bad_rows(bad: Iterable[BadSample], policy: str, *, quiet: bool = False) -> None:
    """Log each malformed row (unless ``quiet``), or raise the first one under the
    ``raise`` policy."""
    bad = list(bad)
    if bad and policy == "raise":
        raise AnnotationError(bad[0].path, bad[0].reason + " (bad_sample_policy='raise')")
    if not quiet:
        for row in bad:
            logger.warning("malformed annotation row %s (skipped)", row)
