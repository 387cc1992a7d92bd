"""Errors as one line on stderr and an exit code: the one place that words them.

``rsanet train``, ``eval`` and ``export`` read their inputs and check their arguments first
(a bad one is exit code 2, printed by :func:`rsanet.cli.main`); what can still go wrong
while they work is reported by :func:`guarded`: a full disk (nothing was replaced), memory
exhausted, NaN or infinite numbers, and a file that cannot be written (exit code 1). Any
other command's OSError reaches :func:`rsanet.cli.main`, which words it the same way
(:func:`os_error_message`) and exits with 1 for a full disk, else 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

#: the exit code of a run that failed after its arguments were accepted
RUN_FAILED = 1


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def os_error_message(error: OSError) -> str:
    """``FILE: reason`` on one line (the file named once, none when the error has none)."""
    reason = " ".join((error.strerror or str(error)).split()) or type(error).__name__
    if error.filename is not None and str(error.filename) not in reason:
        reason = f"{error.filename}: {reason}"
    return reason


def report(command: str, message: object, code: int) -> int:
    """Print ``rsanet COMMAND: error: MESSAGE`` on stderr; returns ``code``."""
    print(f"rsanet {command}: error: {message}", file=sys.stderr)
    return code


def _out_of_memory(error: BaseException) -> bool:
    import torch

    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def failure_message(error: BaseException, memory_hint: str) -> str | None:
    """The one-line message for ``error`` when it is a failure of the run (disk full,
    memory, non-finite numbers, an unwritable file), else None. ``memory_hint`` says
    which settings make the run smaller."""
    from rsanet.atomic import DiskFullError
    from rsanet.engine.trainer import NonFiniteError

    if isinstance(error, DiskFullError):
        return error.strerror or str(error)
    if isinstance(error, NonFiniteError):
        return str(error)
    if _out_of_memory(error):
        reason = " ".join(_first_line(error).split())
        if "DefaultCPUAllocator" in reason:
            reason = reason[reason.index("DefaultCPUAllocator") :]
        return f"out of memory ({reason[:160]}): {memory_hint}"
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
        return os_error_message(error)
    return None


def guarded(command: str, body: Callable[[], int], *, memory_hint: str) -> int:
    """``body()``, with a run failure printed as ``rsanet COMMAND: error: ...`` on stderr
    and exit code :data:`RUN_FAILED`; other errors propagate to :func:`rsanet.cli.main`."""
    try:
        return body()
    except Exception as error:
        message = failure_message(error, memory_hint)
        if message is None:
            raise
        return report(command, message, RUN_FAILED)
