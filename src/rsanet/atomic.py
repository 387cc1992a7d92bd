"""Atomic file writes: a temporary file in the target's folder, flushed to disk, then renamed
over the target (``os.replace``), so a crash never leaves a half-written file and the
previous version stays intact. Used by checkpoints, configurations, exports and reports
alike. Also the guards every writer shares: an output must not be one of its own inputs,
a full disk is one clear error, and temporaries left by a killed save are swept away.

>>> with atomic_path("model.onnx") as tmp:           # doctest: +SKIP
...     torch.onnx.export(model, clip, tmp)           # a writer that wants a file name
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any


class OverwriteError(ValueError):
    """An output path is (or resolves to) one of the inputs it is made from."""


class DiskFullError(OSError):
    """The disk filled up during a write; the previous file at the path is intact."""


def refuse_overwrite(
    output: str | Path, inputs: Iterable[str | Path | None], *, what: str = "output"
) -> None:
    """Raise :class:`OverwriteError` before anything is written if ``output`` is, or
    resolves to (links, ``..``, another spelling), the same file as one of ``inputs``."""
    target = Path(output)
    for source in inputs:
        if source is None or not isinstance(source, (str, os.PathLike)):
            continue  # a stream URL or an in-memory object cannot be overwritten
        source = Path(source)
        same = target.resolve() == source.resolve()
        if not same and target.exists() and source.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(target, source)
        if same:
            raise OverwriteError(
                f"the {what} {str(output)!r} is the input {str(source)!r}: writing it would "
                "destroy the input; choose another path"
            )


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporary files that an interrupted atomic write of ``path`` left beside it."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete what :func:`stale_temporaries` finds (a killed save's leftovers); returns
    the files removed."""
    removed = []
    for leftover in stale_temporaries(path):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed.append(leftover)
    return removed


def disk_full_error(
    error: OSError,
    path: str | Path,
    advice: str = "nothing was replaced (the previous file, if any, is intact): free some "
    "space and retry",
) -> OSError:
    """``error`` as a :class:`DiskFullError` naming ``path`` (with ``advice``) when it is
    a full disk or quota, else ``error`` itself; for writers that do not go through
    :func:`atomic_write` (append-only logs)."""
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            error.errno, f"no space left on the device while writing {str(path)!r}; {advice}"
        )
    return error


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[Any]], object], mode: str = "wb") -> Path:
    """Call ``write(handle)`` on a temporary file opened with ``mode``, then rename it to
    ``path`` (with the permissions of a normally created file); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError):
            raise disk_full_error(error, path) from error
        raise
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str | None = None) -> Iterator[Path]:
    """A temporary file name in ``path``'s folder for writers that take a file name
    (TorchScript, ONNX, video encoders, SQLite dumps); on leaving the block without an
    error it is flushed to disk and renamed over ``path``, on an error it is removed.
    ``suffix`` (default: ``path``'s) keeps writers that look at the extension happy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.",
        suffix=(suffix if suffix is not None else path.suffix) + ".tmp",
        dir=path.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(error, OSError):
            raise disk_full_error(error, path) from error
        raise


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically. The object is serialised in memory
    first: torch's zip writer turns a full disk into an unrelated error ("unexpected
    pos"), while a plain write reports it as :class:`DiskFullError`."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, lambda handle: handle.write(buffer.getbuffer()), "wb")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(text), "w")
