"""Untrimmed recordings: what every reader of long surveillance videos returns.

A recording is an :class:`UntrimmedVideo`: its path, its length when the annotations say
it (seconds, frames per second, frames), the labelled :class:`EventInterval` spans in
seconds, the finer per-actor actions when the annotations have them, and free metadata
(camera, place, day or night, ...). A reader returns :class:`UntrimmedAnnotations`: the good
videos, the class names, a :class:`~rsanet.data.errors.BadSample` for every malformed
annotation (never an exception), and the videos dropped as byte-identical copies of
another (:class:`Duplicate`).

The helpers here are shared by the readers: :func:`parse_seconds` (``HH:MM:SS.f``),
:func:`interval_problem` (a span that is negative or outside its video) and
:func:`find_duplicates` (content hashes, computed only where file sizes collide).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rsanet.data.errors import BadSample

#: how far (seconds) an event may pass the end of its video before it is "outside": the
#: declared durations are rounded (to 0.1 s in AI Hub headers)
END_TOLERANCE_S = 0.1


@dataclass(frozen=True)
class EventInterval:
    """One labelled span ``[start_s, end_s]`` of a recording, in seconds from its start.
    ``actor`` names who acts (an AI Hub object such as ``person_1``), else ``""``."""

    label: str
    start_s: float
    end_s: float
    actor: str = ""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict:
        out = {"label": self.label, "start_s": self.start_s, "end_s": self.end_s}
        return {**out, "actor": self.actor} if self.actor else out


@dataclass(frozen=True)
class UntrimmedVideo:
    """One long recording and what its annotations say about it.

    ``events``: the labelled spans (none for a normal video); ``labels``: the video's
    classes (a video may have several, or none); ``duration_s``, ``fps``, ``frames``: as the
    annotations declare them, else None (nothing is decoded); ``actions``: finer per-actor
    spans (AI Hub); ``metadata``: strings such as ``camera`` or ``season``; ``source``: the
    annotation file (and line) it comes from."""

    path: str
    events: tuple[EventInterval, ...] = ()
    labels: tuple[str, ...] = ()
    duration_s: float | None = None
    fps: float | None = None
    frames: int | None = None
    actions: tuple[EventInterval, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    source: str = ""


@dataclass(frozen=True)
class Duplicate:
    """A video left out because its bytes are those of ``same_as`` (kept)."""

    path: str
    same_as: str
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "same_as": self.same_as, "sha256": self.sha256}


@dataclass
class UntrimmedAnnotations:
    """The good recordings, the class names, the malformed annotations and the duplicates
    left out, of one data set."""

    videos: list[UntrimmedVideo]
    classes: list[str]
    bad: list[BadSample] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    source: str = ""
    #: the class-name or class-map file read ("" when there is none)
    labels_source: str = ""

    @property
    def total_rows(self) -> int:
        """Videos kept plus malformed annotations (duplicates are not counted)."""
        return len(self.videos) + len(self.bad)

    @property
    def records(self) -> list[UntrimmedVideo]:
        """The videos (the name :class:`~rsanet.data.annotations.Annotations` uses)."""
        return self.videos


_CLOCK = re.compile(r"\s*([+-]?)\s*(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d*)?|\.\d+)\s*")


def parse_seconds(text: str | None) -> float | None:
    """Seconds of ``HH:MM:SS.f``, ``MM:SS.f`` or ``S.f`` (a sign allowed), else None."""
    match = _CLOCK.fullmatch(text or "")
    if match is None:
        return None
    sign, hours, minutes, seconds = match.groups()
    value = int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds)
    return -value if sign == "-" else value


def parse_number(text: object) -> float | None:
    """A finite float of ``text`` (a number or a string of one), else None."""
    if isinstance(text, bool) or text is None:
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def interval_problem(
    start_s: float, end_s: float, duration_s: float | None, what: str = "event"
) -> str | None:
    """Why ``[start_s, end_s]`` cannot be a span of a video lasting ``duration_s`` (None:
    unknown), or None when it can."""
    if end_s < start_s:
        return (
            f"negative duration: the {what} ends at {end_s:g} s before it starts at "
            f"{start_s:g} s (fix the end or the duration)"
        )
    if start_s < 0:
        return f"the {what} starts before the video, at {start_s:g} s (fix the start)"
    if duration_s is not None and end_s > duration_s + END_TOLERANCE_S:
        return (
            f"the {what} [{start_s:g}, {end_s:g}] s is outside the video, which lasts "
            f"{duration_s:g} s (fix the times, or the declared duration)"
        )
    return None


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in chunks (videos need not fit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def find_duplicates(paths: Iterable[str]) -> list[Duplicate]:
    """The files of ``paths`` whose bytes equal those of an earlier one. Only files whose
    size another shares are hashed, so a data set without copies is not read at all; a
    file that cannot be read is not a duplicate (decoding it reports it)."""
    by_size: dict[int, list[str]] = {}
    for path in paths:
        try:
            by_size.setdefault(os.stat(path).st_size, []).append(path)
        except OSError:
            continue
    found = []
    for group in by_size.values():
        if len(group) < 2:
            continue
        first: dict[str, str] = {}
        for path in group:
            try:
                digest = file_sha256(path)
            except OSError:
                continue
            if digest in first:
                found.append(Duplicate(path, first[digest], digest))
            else:
                first[digest] = path
    return found
