"""What the OpenAI emulator's Files and Batch APIs hold while it runs, and how batch emulation behaves.

:class:`BatchEmulatorConfig` sets the batch knobs (processing time, partial failures, expiry,
cancel time). :class:`BatchStore` keeps the uploaded and generated files, the batches, and the
counts tests read: every request line accepted into a created batch (``submitted``, by
``custom_id``) and every image a batch line drew (``billed``). ``tripwire``, when set, is called
with the name of each step the routes pass (see :data:`STEPS`), so a test can kill its client at
an exact point of the protocol; :meth:`BatchStore.hang_at` makes a step go unanswered.

Object shapes follow the openai SDK's types (openai 3.57.0: ``types/file_object.py``,
``types/batch.py``, ``types/batch_request_counts.py``, ``types/batch_error.py``); the limits come
from ``types/batch_create_params.py`` (50,000 requests and 200 MB per input file, ``24h`` window).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

from imggen.backends.openai_models import batch_terms

DAY_S = 24 * 3600.0
BATCH_FILE_TTL_S = 30 * DAY_S  # files.create: purpose=batch files expire after 30 days by default
STEPS = (
    "upload_received",  # a file upload arrived; nothing stored yet
    "upload_stored",  # the file is stored; its id is not yet answered
    "create_received",  # a batch create arrived; nothing created yet
    "batch_created",  # the batch exists; its id is not yet answered
    "batch_retrieved",  # a batch was read back (a poll)
    "content_served",  # a file's content is about to be answered
    "files_listed",  # a page of the file list is about to be answered
    "batches_listed",  # a page of the batch list is about to be answered
)


@dataclass(frozen=True)
class BatchEmulatorConfig:
    """How emulated batches behave. Times are seconds; the real service takes minutes to hours."""

    validating_s: float = 0.0  # time in ``validating`` before the lines are checked
    line_s: float = 0.0  # processing time per request line while ``in_progress``
    finalizing_s: float = 0.0  # time in ``finalizing`` before the output files appear
    cancelling_s: float = 0.0  # time in ``cancelling`` before ``cancelled`` (the API: up to 10 minutes)
    completion_window_s: float = DAY_S  # the 24h window; a batch still running after it expires
    line_error_rate: float = 0.0  # share of lines answered 500 server_error in the error file
    shuffle_output: bool = True  # output lines in another order than the input, as the API allows
    max_requests: int = batch_terms().max_requests_per_file
    max_file_bytes: int = batch_terms().max_input_file_bytes


@dataclass
class StoredUpload:
    """A file of the Files API: an uploaded input, or a batch's output or error file."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: float = field(default_factory=time.time)
    expires_at: float | None = None

    def describe(self) -> dict[str, Any]:
        """The FileObject the API returns (``status`` is deprecated but still sent)."""
        return {
            "id": self.id, "object": "file", "bytes": len(self.data), "created_at": int(self.created_at),
            "filename": self.filename, "purpose": self.purpose, "status": "processed", "status_details": None,
            "expires_at": int(self.expires_at) if self.expires_at else None,
        }


@dataclass
class BatchJob:
    """One batch and its lifecycle: validating → in_progress → finalizing → completed, or failed,
    expired, cancelling → cancelled."""

    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: float = field(default_factory=time.time)
    status: str = "validating"
    times: dict[str, float] = field(default_factory=dict)  # in_progress_at, finalizing_at, ... when reached
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] | None = None
    cancel_requested: bool = False

    window_s: float = DAY_S  # the completion window in seconds (tests shorten it)

    @property
    def expires_at(self) -> float:
        return self.created_at + self.window_s

    def move(self, status: str) -> None:
        self.status = status
        self.times[_TIMESTAMP_OF[status]] = time.time()

    def describe(self) -> dict[str, Any]:
        """The Batch object the API returns."""
        body: dict[str, Any] = {
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "input_file_id": self.input_file_id,
            "completion_window": self.completion_window, "status": self.status, "created_at": int(self.created_at),
            "expires_at": int(self.expires_at), "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id, "metadata": self.metadata,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
        }
        for stamp in _TIMESTAMP_OF.values():
            body[stamp] = int(self.times[stamp]) if stamp in self.times else None
        return body


_TIMESTAMP_OF = {
    "in_progress": "in_progress_at", "finalizing": "finalizing_at", "completed": "completed_at",
    "failed": "failed_at", "expired": "expired_at", "cancelling": "cancelling_at", "cancelled": "cancelled_at",
}


class BatchStore:
    """The emulator's files and batches, newest last; safe to read from a test's thread."""

    def __init__(self, config: BatchEmulatorConfig) -> None:
        self.config = config
        self.files: dict[str, StoredUpload] = {}
        self.batches: dict[str, BatchJob] = {}
        self.submitted: collections.Counter[str] = collections.Counter()  # custom_id → lines in created batches
        self.billed: collections.Counter[str] = collections.Counter()  # custom_id → images drawn by batch lines
        self.steps: collections.Counter[str] = collections.Counter()
        self.tripwire: Callable[[str], None] | None = None
        self._hangs: dict[str, tuple[int, float]] = {}  # step -> (requests left to hang there, for how long)
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    def hang_at(self, name: str, *, times: int = 1, seconds: float = 60.0) -> None:
        """The next ``times`` requests that reach step ``name`` get no answer for ``seconds`` (a server
        that has done the work but does not answer; the client's timeout is what ends the wait)."""
        with self.lock:
            self._hangs[name] = (times, seconds)

    async def step(self, name: str) -> None:
        """Count a protocol step, let the test's tripwire act on it, and hang there if told to."""
        with self.lock:
            self.steps[name] += 1
            times, seconds = self._hangs.get(name, (0, 0.0))
            if times:
                self._hangs[name] = (times - 1, seconds)
        if self.tripwire is not None:
            self.tripwire(name)
        if times:
            await asyncio.sleep(seconds)

    def new_id(self, prefix: str) -> str:
        # Sequence first so ids sort by creation, then random so they are never guessable or reused.
        return f"{prefix}{next(self._ids):08d}{uuid.uuid4().hex[:16]}"

    def add_file(self, filename: str, purpose: str, data: bytes) -> StoredUpload:
        ttl = BATCH_FILE_TTL_S if purpose in ("batch", "batch_output") else None
        stored = StoredUpload(self.new_id("file-"), filename, purpose, data)
        stored.expires_at = stored.created_at + ttl if ttl else None
        with self.lock:
            self.files[stored.id] = stored
        return stored

    def file(self, file_id: str) -> StoredUpload | None:
        stored = self.files.get(file_id)
        if stored is None or (stored.expires_at is not None and stored.expires_at < time.time()):
            return None
        return stored


BATCHES = web.AppKey("openai_emulator_batches", BatchStore)
