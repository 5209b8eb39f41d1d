"""The OpenAI Batch API for images: request lines, input files, batches, and their result lines.

Built on the official ``openai.AsyncOpenAI`` client (``max_retries=0``: callers decide when to try
again). It uploads a JSONL file of request lines with the Files API (purpose ``batch``), creates
a batch on ``/v1/images/generations`` with a ``24h`` window and the caller's metadata, finds a
file again by its name (``files.list``) and a batch again by a metadata value (``batches.list``),
reads batches, cancels them and downloads their output and error files as :class:`ResultLine`.
Failures of these calls are sorted into engine error kinds as for any OpenAI call.

The formats are the Batch API's, as the openai 3.57.0 SDK documents them: a request line is
``{"custom_id", "method": "POST", "url", "body"}``; a result line is ``{"id", "custom_id",
"response": {"status_code", "request_id", "body"} | null, "error": {"code", "message"} | null}``;
a batch (``types/batch.py``) has ``status``, ``request_counts`` (``total``, ``completed``,
``failed``), ``output_file_id``, ``error_file_id``, ``errors`` and ``metadata`` (at most 16 pairs,
``types/shared/metadata.py``); limits and the endpoint list are in ``types/batch_create_params.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

import openai
from openai.types import Batch

from imggen.backends.openai_errors import status_error, task_error
from imggen.backends.openai_models import batch_terms
from imggen.engine.errors import ErrorKind, TaskError
from imggen.settings import credential, load_settings, redact

FINISHED_STATUSES = ("completed", "failed", "expired", "cancelled")
NOT_RUN_CODES = {"batch_expired", "batch_cancelled"}  # the request never ran: nothing was paid
CALL_TIMEOUT_S = 300.0
T = TypeVar("T")


def request_line(custom_id: str, body: dict[str, Any], endpoint: str | None = None) -> bytes:
    """One JSONL request line for the batch's endpoint."""
    line = {"custom_id": custom_id, "method": "POST", "url": endpoint or batch_terms().endpoint, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


@dataclass(frozen=True)
class ResultLine:
    """One line of a batch's output or error file."""

    custom_id: str
    status_code: int | None  # None when the request did not run (``error`` says why)
    body: dict[str, Any] | None
    error: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.status_code == 200 and isinstance(self.body, dict)

    def failure(self, secret: str | None = None) -> TaskError | None:
        """The engine's error for a failed line, or None when the request never ran (expired or
        cancelled before its turn) and should simply be sent again."""
        if self.status_code is None:
            code = (self.error or {}).get("code")
            if code in NOT_RUN_CODES:
                return None
            message = redact(str((self.error or {}).get("message", "")), [secret])
            return TaskError(ErrorKind.TRANSIENT, f"OpenAI batch request failed ({code}): {message}")
        error = (self.body or {}).get("error") or {}
        code = error.get("code") or (error.get("type") if self.status_code == 429 else None)
        return status_error(self.status_code, code, redact(str(error.get("message", "")), [secret]),
                            what="batch image generation", headers={})


def parse_result_lines(data: bytes) -> list[ResultLine]:
    """The result lines of an output or error file; lines that are not JSON objects are skipped."""
    lines = []
    for text in data.decode("utf-8", errors="replace").splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            continue
        response = line.get("response") if isinstance(line.get("response"), dict) else {}
        lines.append(ResultLine(line["custom_id"], response.get("status_code"), response.get("body"),
                                line.get("error") if isinstance(line.get("error"), dict) else None))
    return lines


class OpenAIBatchAPI:
    """Files and batches of one OpenAI account."""

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None,
                 timeout_s: float | None = None) -> None:
        """``api_key``/``base_url`` default to ``OPENAI_API_KEY``/``OPENAI_BASE_URL`` (environment or ``.env``).
        ``timeout_s``: how long a call may wait for the server's next bytes before it fails as transient
        (default: CALL_TIMEOUT_S); a large file still moves as long as its bytes keep coming."""
        try:
            self._client = openai.AsyncOpenAI(api_key=api_key or credential("openai_api_key"),
                                              base_url=base_url or load_settings().openai_base_url,
                                              max_retries=0, timeout=timeout_s or CALL_TIMEOUT_S)
        except openai.OpenAIError:
            raise TaskError(ErrorKind.FATAL, "no OpenAI API key: set OPENAI_API_KEY") from None

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except openai.APIError as exc:
            raise task_error(exc, secret=self._client.api_key, what=what) from None

    async def upload(self, filename: str, data: bytes) -> str:
        """Upload a JSONL input file; its id."""
        uploaded = await self._call("batch file upload", lambda: self._client.files.create(
            file=(filename, data, "application/jsonl"), purpose="batch"))
        return uploaded.id

    async def find_file(self, filename: str) -> str | None:
        """The id of the newest batch input file called ``filename``, if one exists."""
        async def search() -> str | None:
            async for stored in self._client.files.list(purpose="batch", order="desc"):
                if stored.filename == filename:
                    return stored.id
            return None

        return await self._call("batch file listing", search)

    async def create(self, input_file_id: str, metadata: dict[str, str]) -> Batch:
        terms = batch_terms()
        return await self._call("batch creation", lambda: self._client.batches.create(
            input_file_id=input_file_id, endpoint=terms.endpoint, completion_window=terms.completion_window,
            metadata=metadata))

    async def find_batch(self, key: str, value: str, *, created_after: float) -> Batch | None:
        """The batch whose metadata has ``key`` = ``value``, looking back to ``created_after``
        (seconds since the epoch) through ``batches.list``, which answers newest first."""
        async def search() -> Batch | None:
            async for batch in self._client.batches.list(limit=100):
                if (batch.metadata or {}).get(key) == value:
                    return batch
                if batch.created_at < created_after:
                    return None
            return None

        return await self._call("batch listing", search)

    async def retrieve(self, batch_id: str) -> Batch:
        return await self._call("batch poll", lambda: self._client.batches.retrieve(batch_id))

    async def cancel(self, batch_id: str) -> Batch:
        return await self._call("batch cancel", lambda: self._client.batches.cancel(batch_id))

    async def result_lines(self, file_id: str | None) -> list[ResultLine]:
        """The lines of an output or error file (none when the batch has no such file)."""
        if not file_id:
            return []
        content = await self._call("batch result download", lambda: self._client.files.content(file_id))
        return parse_result_lines(content.content)

    async def aclose(self) -> None:
        await self._client.close()
