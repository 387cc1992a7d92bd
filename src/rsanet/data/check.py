"""``rsanet data check``: decode every sample of a split once, in parallel, and report.

Each video is decoded whole (each frame of a frame folder opened and decoded), so that a
run that starts after a clean check meets no bad sample. The report counts the annotation
rows (``total``), the samples that decoded (``ok``) and lists every problem with its path
(or ``file:line``) and reason. A JSON report written to a file is written atomically, and
never over one of the files it is about.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rsanet.atomic import atomic_write_text, refuse_overwrite, remove_stale_temporaries
from rsanet.data.annotations import VideoRecord, read_annotations
from rsanet.data.decoding import FrameFolder, decode_all, open_video
from rsanet.data.errors import BadSample, BadSampleError
from rsanet.data.events import Duplicate
from rsanet.data.untrimmed import UNTRIMMED_FORMATS, read_untrimmed


@dataclass
class CheckReport:
    """What :func:`check_dataset` found."""

    total: int
    ok: int
    bad: list[BadSample] = field(default_factory=list)
    #: videos left out as byte-identical copies (untrimmed formats; None for the others)
    duplicates: list[Duplicate] | None = None

    def to_dict(self) -> dict:
        """``{"total": int, "ok": int, "bad": [{"path": str, "reason": str}, ...]}``, and
        ``"duplicates": [{"path", "same_as", "sha256"}, ...]`` for untrimmed formats."""
        out = {"total": self.total, "ok": self.ok, "bad": [b.to_dict() for b in self.bad]}
        if self.duplicates is not None:
            out["duplicates"] = [d.to_dict() for d in self.duplicates]
        return out

    def summary(self, limit: int = 50) -> str:
        """A human-readable report: one line per problem (at most ``limit``), then totals."""
        lines = [str(bad) for bad in self.bad[:limit]]
        if len(self.bad) > limit:
            lines.append(f"... and {len(self.bad) - limit} more (use --json for all)")
        for duplicate in (self.duplicates or [])[:limit]:
            lines.append(f"{duplicate.path}: left out, the same bytes as {duplicate.same_as}")
        lines.append(f"checked {self.total} samples: {self.ok} ok, {len(self.bad)} bad")
        if self.duplicates:
            lines[-1] += f", {len(self.duplicates)} duplicate(s) left out"
        return "\n".join(lines)

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` atomically (a temporary file renamed
        over it: a crash or a full disk leaves the previous report intact)."""
        remove_stale_temporaries(path)
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")


def check_report_path(
    out: str | Path, inputs: Iterable[str | Path | None], records: Iterable[VideoRecord] = ()
) -> None:
    """Refuse (``ValueError``) a report path that is a folder, one of ``inputs`` (the
    annotation and label files), a sample, or a file inside a frame folder of a sample."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise ValueError(
            f"the report path {out} is a folder; give a file name such as {out / 'check.json'}"
        )
    refuse_overwrite(out, inputs, what="report")
    spellings = {os.path.abspath(out), str(out.resolve())}
    folders = {os.path.dirname(name) for name in spellings}
    for record in records:
        sample = os.path.abspath(record.path)
        if sample in spellings or sample in folders:
            raise ValueError(
                f"the report {str(out)!r} would overwrite the sample {record.path!r} "
                f"({record.source}) or a frame in it; choose another path"
            )


def check_source(
    path: str,
    *,
    backend: str = "pyav",
    min_frames: int = 1,
    declared_frames: int | None = None,
    start_frame: int = 0,
    end_frame: int | None = None,
) -> BadSample | None:
    """Decode all of one video or frame folder; None if it is good, else the problem."""
    try:
        if os.path.isdir(path):
            folder = FrameFolder(path)
            count = folder.num_frames()
            for index in range(count):
                folder.read([index])
            if declared_frames is not None and declared_frames > count:
                return BadSample(
                    path,
                    f"too short: the annotations declare {declared_frames} "
                    f"frames, the folder has {count} (fix the count)",
                )
        elif backend == "pyav":
            count = decode_all(path, to_rgb=False, threads=1)
        else:
            source = open_video(path, backend=backend)
            count = source.num_frames()
            for first in range(0, count, 32):
                source.read(range(first, min(count, first + 32)))
            source.close()
    except BadSampleError as error:
        return error.bad
    except (OSError, ValueError, RuntimeError, EOFError) as error:
        return BadSample(path, f"unreadable: {type(error).__name__}: {error}")
    end = count if end_frame is None else min(end_frame, count)
    usable = end - min(start_frame, count)
    if usable < min_frames:
        return BadSample(path, f"too short: {usable} frames, at least {min_frames} needed")
    return None


def _check_job(job: tuple) -> BadSample | None:
    path, backend, min_frames, declared, start, end = job
    return check_source(
        path,
        backend=backend,
        min_frames=min_frames,
        declared_frames=declared,
        start_frame=start,
        end_frame=end,
    )


def check_dataset(
    format: str,
    annotations: str | Path | None,
    root: str | Path | None = None,
    *,
    split: str = "train",
    workers: int | None = None,
    progress: bool = True,
    min_frames: int = 8,
    backend: str = "pyav",
    out: str | Path | None = None,
    **options,
) -> CheckReport:
    """Read the annotations (malformed rows are reported, not raised) and decode every
    sample, in ``workers`` processes (default: all cores; 0 or 1: in this process), with a
    progress bar on stderr. ``min_frames``: fewer usable frames is "too short".
    ``options`` go to :func:`~rsanet.data.annotations.read_annotations` (``labels``,
    ``allow_outside_root``, ...), or for the untrimmed formats (``aihub-cctv``,
    ``ucf-crime``, ``xd-violence``, ``intervals``) to
    :func:`~rsanet.data.untrimmed.read_untrimmed` (``labels``, ``fps``, ...), whose
    recordings are decoded whole and whose duplicates the report lists. ``out``: also write
    the JSON report there, atomically; a path that is an input or a sample is refused before
    anything is decoded."""
    if out is not None:
        check_report_path(out, [annotations, options.get("labels")])
    if root is not None and not Path(root).expanduser().is_dir():
        raise FileNotFoundError(f"data root {root} is not a folder (check the path)")
    untrimmed = format in UNTRIMMED_FORMATS
    if untrimmed:  # long recordings: each video decoded whole, its events not cut out
        result = read_untrimmed(format, annotations, root, policy="skip", quiet=True, **options)
    else:
        result = read_annotations(
            format, annotations, root, split=split, policy="skip", quiet=True, **options
        )
    if out is not None:
        inputs = [result.source, result.labels_source or None]
        if untrimmed:  # the per-video annotation files (AI Hub XML) are inputs too
            inputs += [r.source for r in result.records] + [b.path for b in result.bad]
        check_report_path(out, inputs, result.records)
    jobs = [
        (r.path, backend, min_frames, None, 0, None)
        if untrimmed
        else (r.path, backend, min_frames, r.num_frames, r.start_frame, r.end_frame)
        for r in result.records
    ]
    workers = (os.cpu_count() or 1) if workers is None else workers
    from tqdm import tqdm

    bar = tqdm(
        total=len(jobs), desc="checking", unit="video", disable=not progress, file=sys.stderr
    )
    found: list[BadSample] = []
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        chunk = max(1, min(64, len(jobs) // (workers * 8)))
        with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
            for problem in pool.map(_check_job, jobs, chunksize=chunk):
                bar.update()
                if problem is not None:
                    found.append(problem)
    else:
        for job in jobs:
            problem = _check_job(job)
            bar.update()
            if problem is not None:
                found.append(problem)
    bar.close()
    report = CheckReport(
        total=result.total_rows,
        ok=len(jobs) - len(found),
        bad=list(result.bad) + found,
        duplicates=list(result.duplicates) if untrimmed else None,
    )
    if out is not None:
        report.write_json(Path(out).expanduser())
    return report
