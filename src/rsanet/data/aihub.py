"""AI Hub "abnormal behaviour CCTV video" (Korea): class folders of long recordings, each
``.mp4`` with a same-name ``.xml``, read into
:class:`~rsanet.data.events.UntrimmedAnnotations`.

Layout as extracted: ``ROOT/01.폭행(assult)/inside_croki_01/101-1/101-1_cam01_assault01_
place01_day_spring.mp4`` (+ ``.xml``); any depth works, the class folder is the first one
whose name the class map knows. The XML ``<annotation>`` gives ``header/fps|frames|duration``
(and ``inout``, ``location``, ``season``, ``weather``, ``time``, ``population``),
``event/eventname|starttime|duration`` (times ``HH:MM:SS.f``; an XML without ``<event>`` is
a normal recording, with no event) and, per ``object``, its ``action/actionname`` with
``frame/start|end`` frame numbers.

The 12 classes get short English ids (:data:`AIHUB_CLASSES`); :data:`AIHUB_CLASS_NAMES`
maps every spelling met to them: Korean names, the folders' misspelled English (``assult``,
``swoon``, ``wander``, ...) and the event names. Names are compared after Unicode NFC
(archives made on macOS store decomposed Hangul), case folding and without spaces, ``_``
and ``-``. A user's map (a dict, or a JSON / YAML file ``{name: class}``) is laid over it.
Object names are normalised (``Person01``, ``person_1`` -> ``person_1``). Byte-identical
videos filed twice (``insidedoor_01`` copies of ``inside_croki_01``) are kept once.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import yaml

from rsanet.data.annotations import VIDEO_EXTENSIONS, read_text
from rsanet.data.errors import AnnotationError, BadSample
from rsanet.data.events import (
    EventInterval,
    UntrimmedAnnotations,
    UntrimmedVideo,
    find_duplicates,
    interval_problem,
    parse_number,
    parse_seconds,
)

#: the canonical class ids, in the order of the data set's folders (01 to 12)
AIHUB_CLASSES = (
    "assault",
    "fight",
    "theft",
    "vandalism",
    "fainting",
    "loitering",
    "intrusion",
    "dumping",
    "robbery",
    "date_violence",
    "kidnapping",
    "drunkenness",
)

#: every spelling met (Korean, folder English, event names) -> canonical class id
AIHUB_CLASS_NAMES: dict[str, str] = {
    name: canonical
    for canonical, names in {
        "assault": ("폭행", "assult", "assault"),
        "fight": ("싸움", "fight", "fighting"),
        "theft": ("절도", "burglary", "theft"),
        "vandalism": ("기물파손", "vandalism"),
        "fainting": ("실신", "swoon", "fainting", "faint"),
        "loitering": ("배회", "wander", "loitering"),
        "intrusion": ("침입", "trespass", "intrusion"),
        "dumping": ("투기", "dump", "dumping"),
        "robbery": ("강도", "robbery"),
        "date_violence": ("데이트 폭력 및 추행", "datefight", "date violence", "molestation"),
        "kidnapping": ("납치", "kidnap", "kidnapping"),
        "drunkenness": ("주취행동", "drunken", "drunkenness"),
    }.items()
    for name in (canonical, *names)
}

#: header fields copied into the metadata
HEADER_FIELDS = ("inout", "location", "season", "weather", "time", "population", "character")

_FOLDER = re.compile(r"\s*\d+\s*\.\s*(?P<ko>[^()]*?)\s*\((?P<en>[^()]*)\)\s*")
_FILE_NAME = re.compile(
    r"(?P<session>[^_]+)_(?P<camera>cam\d+)_(?P<event>[^_]+)_(?P<place>place\d+)_"
    r"(?P<daynight>day|night)_(?P<season>[^_]+)",
    re.IGNORECASE,
)
_DECLARED = re.compile(rb"\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)")
_OBJECT = re.compile(r"([^\W\d_]+)[\s_-]*0*(\d+)")


def name_key(name: str) -> str:
    """How names are compared: NFC, case-folded, without spaces, ``_`` and ``-``."""
    return re.sub(r"[\s_\-]+", "", unicodedata.normalize("NFC", name).casefold())


def normalise_object_name(name: str) -> str:
    """``Person01``, ``person_1``, ``PERSON 1`` -> ``person_1``; other names lower-cased."""
    text = unicodedata.normalize("NFC", name).strip().casefold()
    match = _OBJECT.fullmatch(text)
    return f"{match.group(1)}_{int(match.group(2))}" if match else text


def load_class_map(class_map: Mapping[str, str] | str | Path | None) -> tuple[dict, list, str]:
    """The name -> class map (keys as :func:`name_key`), the class list (the 12, then the new
    classes of ``class_map`` in its order) and the map file read ("" for none or a dict)."""
    source, user = "", class_map
    if isinstance(class_map, (str, Path)):
        source = str(class_map)
        text = read_text(class_map)
        try:
            user = json.loads(text) if source.lower().endswith(".json") else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as error:
            raise AnnotationError(source, f"not a JSON / YAML class map: {error}") from None
    user = {} if user is None else user
    if not isinstance(user, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in user.items()
    ):
        raise AnnotationError(
            source or "class_map",
            "expected a mapping {name: class} of strings, e.g. {'폭행': 'assault'}",
        )
    merged = {name_key(k): v for k, v in AIHUB_CLASS_NAMES.items()}
    merged.update({name_key(k): v.strip() for k, v in user.items()})
    classes = list(AIHUB_CLASSES)
    classes += [v for v in dict.fromkeys(merged.values()) if v not in classes]
    used = set(merged.values())
    return merged, [c for c in classes if c in used], source


def folder_class(name: str, names: Mapping[str, str]) -> str | None:
    """The class of a folder name (``01.폭행(assult)``, ``폭행``, ``assult``), else None."""
    match = _FOLDER.fullmatch(unicodedata.normalize("NFC", name))
    candidates = (match.group("en"), match.group("ko")) if match else ()
    for candidate in (*candidates, name):
        if name_key(candidate) in names:
            return names[name_key(candidate)]
    return None


def _text(node: ET.Element, path: str) -> str | None:
    found = node.find(path)
    return None if found is None or found.text is None else found.text.strip() or None


def parse_xml(data: bytes) -> ET.Element:
    """The root element of XML bytes: UTF-8 (a BOM is skipped), or the encoding the
    declaration names (expat reads no multi-byte encoding but UTF-8, e.g. not EUC-KR)."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    declared = _DECLARED.match(data)
    if declared and declared.group(1).lower().replace(b"-", b"") != b"utf8":
        text = data.decode(declared.group(1).decode("ascii"))
        return ET.fromstring(text[declared.end(0) :].partition("?>")[2])
    return ET.fromstring(data)


def parse_aihub_xml(
    xml_path: str, video_path: str, names: Mapping[str, str], folder_label: str | None
) -> UntrimmedVideo | BadSample:
    """One recording from its XML, or the :class:`BadSample` saying what is wrong."""

    def bad(reason: str) -> BadSample:
        return BadSample(xml_path, reason)

    try:
        with open(xml_path, "rb") as handle:
            root = parse_xml(handle.read())
    except OSError as error:
        return bad(f"cannot be read: {error.strerror or error} (check its permissions)")
    except (ET.ParseError, ValueError, LookupError) as error:
        return bad(f"unparseable XML: {error} (re-download or re-extract the file)")
    if root.tag != "annotation":
        return bad(f"the root element is <{root.tag}>, not <annotation> (not an AI Hub label)")
    fps = parse_number(_text(root, "header/fps"))
    frames = parse_number(_text(root, "header/frames"))
    if (fps is not None and fps <= 0) or (frames is not None and (frames < 0 or frames % 1)):
        return bad(f"header/fps or header/frames is not valid ({fps}, {frames}); fix the header")
    duration = parse_seconds(_text(root, "header/duration"))
    if fps and frames is not None:
        duration = frames / fps
    events: tuple[EventInterval, ...] = ()  # no <event> element at all: a normal recording
    eventname = _text(root, "event/eventname")
    if root.find("event") is not None:
        for field in ("event/starttime", "event/duration"):
            if _text(root, field) is None:
                return bad(f"missing field {field} (the event's time; add it or remove the file)")
        start, length = (
            parse_seconds(_text(root, f)) for f in ("event/starttime", "event/duration")
        )
        if start is None or length is None:
            return bad(
                f"event/starttime or event/duration ({_text(root, 'event/starttime')!r}, "
                f"{_text(root, 'event/duration')!r}) is not a time HH:MM:SS.f; fix it"
            )
        label = names.get(name_key(eventname)) if eventname else None
        label = label or folder_label
        if label is None:
            return bad(
                f"unknown class: event/eventname {eventname!r} and no class folder above it are "
                "in the class map (add the name to the map: class_map= or --labels MAP.yaml)"
            )
        problem = interval_problem(start, start + length, duration, "event/starttime+duration")
        if problem:
            return bad(problem)
        events = (EventInterval(label, start, start + length),)
    actions = []
    for number, obj in enumerate(root.findall("object"), start=1):
        actor = normalise_object_name(_text(obj, "objectname") or f"object_{number}")
        for action in obj.findall("action"):
            name = _text(action, "actionname") or "action"
            for frame in action.findall("frame"):
                first = parse_number(_text(frame, "start"))
                last = parse_number(_text(frame, "end"))
                if first is None or last is None:
                    return bad(f"object {actor} action {name}: frame/start|end missing; fix it")
                if not fps:
                    return bad("actions are in frames but header/fps is missing; add header/fps")
                problem = interval_problem(first / fps, last / fps, duration, f"action {name}")
                if problem:
                    return bad(f"object {actor}: {problem}")
                actions.append(EventInterval(name, first / fps, last / fps, actor))
    metadata = {key: value for key in HEADER_FIELDS if (value := _text(root, f"header/{key}"))}
    match = _FILE_NAME.fullmatch(Path(video_path).stem)
    if match:
        metadata.update({k: v.lower() for k, v in match.groupdict().items()})
    if eventname:
        metadata["eventname"] = eventname
    return UntrimmedVideo(
        video_path,
        events,
        tuple(event.label for event in events),
        duration,
        fps,
        None if frames is None else int(frames),
        tuple(actions),
        metadata,
        xml_path,
    )


def read_aihub_cctv(
    root: str | Path,
    *,
    class_map: Mapping[str, str] | str | Path | None = None,
    deduplicate: bool = True,
) -> UntrimmedAnnotations:
    """Every recording under ``root`` (see the module text). A video without its XML, an
    XML without its video and every malformed XML are :class:`BadSample` entries.
    ``deduplicate``: leave out videos byte-identical to one earlier in path order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder {root} not found (expected ROOT/<class folder>/...)")
    names, classes, map_source = load_class_map(class_map)
    videos: list[UntrimmedVideo] = []
    bad: list[BadSample] = []
    for folder, subfolders, files in os.walk(root, onerror=_raise_listing):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        parts = Path(folder).relative_to(root).parts
        label = next((c for part in parts if (c := folder_class(part, names))), None)
        stems: dict[str, dict[str, str]] = {}
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            kind = "xml" if ext.lower() == ".xml" else "video"
            if kind == "video" and ext.lower() not in VIDEO_EXTENSIONS or name.startswith("."):
                continue
            stems.setdefault(stem, {}).setdefault(kind, os.path.join(folder, name))
        for stem, found in stems.items():
            if "xml" not in found:
                reason = f"no annotation: {stem}.xml is missing next to it (re-extract it)"
                bad.append(BadSample(found["video"], reason))
            elif "video" not in found:
                reason = f"no video: {stem}.mp4 is missing next to it (re-extract it)"
                bad.append(BadSample(found["xml"], reason))
            else:
                result = parse_aihub_xml(found["xml"], found["video"], names, label)
                (bad if isinstance(result, BadSample) else videos).append(result)
    duplicates = find_duplicates(v.path for v in videos) if deduplicate else []
    dropped = {d.path for d in duplicates}
    videos = [v for v in videos if v.path not in dropped]
    return UntrimmedAnnotations(videos, classes, bad, duplicates, str(root), map_source)


def _raise_listing(error: OSError) -> None:
    raise AnnotationError(
        str(error.filename), f"cannot be listed: {error.strerror or error} (check permissions)"
    )
