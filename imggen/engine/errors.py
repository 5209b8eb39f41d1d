"""What can go wrong with one task, sorted into the kinds the runner treats differently.

Backends raise :class:`TaskError` with a :class:`ErrorKind`; the runner decides from the kind
alone whether to wait, back off, record or stop, and it alone sends a request again. Inside one
attempt a backend only repeats reads of what was already asked for, bounded: polling a known
Replicate prediction, and fetching a finished image's file again (at most ``download_attempts``
times), since sending the request again would pay for it again.
"""

from __future__ import annotations

import contextlib
import enum
import errno
from dataclasses import dataclass
from typing import Iterator


class ErrorKind(str, enum.Enum):
    """How the runner treats a failed attempt."""

    RATE_LIMITED = "rate_limited"  # wait as the server says; does not spend the attempt budget
    TRANSIENT = "transient"  # 5xx, timeouts, dropped connections: back off, bounded attempts
    PERMANENT = "permanent"  # e.g. a content-policy refusal: record, never retry
    FATAL = "fatal"  # bad key, quota exhausted: stop the whole run cleanly


@dataclass(frozen=True)
class RateHint:
    """What a provider's rate-limit headers said about its budgets (requests, and tokens where the
    provider limits those too), and what the answer counted against the tokens budget."""

    limit_per_min: float | None = None  # the server's requests-per-minute limit
    remaining: int | None = None  # requests left in the current window
    reset_s: float | None = None  # seconds until the window refills
    tokens_limit_per_min: float | None = None  # the server's tokens-per-minute limit
    tokens_remaining: int | None = None  # tokens left in the current window
    tokens_reset_s: float | None = None  # seconds until the tokens window refills
    tokens_used: float | None = None  # tokens this answer counted (its usage), when it said


class TaskError(Exception):
    """A failed attempt at one task, with the kind that decides what happens next.

    ``message`` must never contain a secret; backends build it from provider error codes and
    messages, and the engine redacts known secrets again before storing or showing it.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        retry_after: float | None = None,
        connection_error: bool = False,
        rate: RateHint | None = None,
        billed: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.kind = ErrorKind(kind)
        self.message = message
        self.retry_after = retry_after
        self.connection_error = connection_error
        self.rate = rate
        self.billed = billed  # US dollars the provider billed for an answer that could not be used

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"


class BudgetReached(Exception):
    """The run's budget cannot pay for the next paid call (see :mod:`.budget`). The runner stops the
    run as a budget stop; the task goes back to pending, nothing of it was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Withdrawn(Exception):
    """The work gave its task back before drawing it: it waited in a local model's queue when the run
    paused or stopped. Nothing was sent; the runner asks again after a resume, or leaves it pending."""


class NotThisRun(Exception):
    """The work will not do this task in this run (batch mode with ``--cancel-batches`` sends nothing
    new): nothing was sent, and the task stays pending for a later run."""


class CannotStart(Exception):
    """A run that cannot start as asked (bad input, unknown model, missing key); the message says why
    and what to change. Raised before anything is sent or paid."""


STARTUP_FAILURES = (FileNotFoundError, ValueError, RuntimeError, TaskError)  # what a run's start may raise


@contextlib.contextmanager
def starting() -> Iterator[None]:
    """The start of a run, before anything is sent: what goes wrong here (a missing file, a bad value,
    no GPU, a missing key, a storage that takes no write) is a :class:`CannotStart` with its message.
    After it, such an error is a run failure, never "cannot start"."""
    try:
        yield
    except CannotStart:
        raise
    except STARTUP_FAILURES as error:
        raise CannotStart(getattr(error, "message", None) or str(error)) from error


# The disk cannot take any more files: every task would fail the same way, so the run stops.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def as_task_error(error: BaseException) -> TaskError:
    """``error`` as the engine sorts it: a TaskError as it is; a file that cannot be written or read
    is permanent for its task (fatal when the disk is full or read-only); anything else (a bug, an
    unexpected library error) is permanent: recorded, never retried."""
    if isinstance(error, TaskError):
        return error
    if is_file_error(error):
        if error.errno in DISK_FULL:
            return TaskError(ErrorKind.FATAL, f"cannot write {error.filename}: {error.strerror}; make room "
                                              "(or make the folder writable) and rerun the same command")
        return TaskError(ErrorKind.PERMANENT, f"{error.filename}: {error.strerror}")
    return TaskError(ErrorKind.PERMANENT, f"{type(error).__name__}: {error}")


def is_file_error(error: BaseException) -> bool:
    """An error of the file system about one file (a folder where the file goes, no permission, a full
    disk): the user's to fix, said in one line, not a bug with a traceback."""
    return isinstance(error, OSError) and error.filename is not None
