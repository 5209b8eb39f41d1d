"""Reading Replicate's answers: the raw prediction JSON behind the ``replicate`` 1.0.7 client, and errors as TaskErrors.

The client drops what the backend needs: ``ReplicateError`` keeps no headers (so no
``Retry-After``), and its pydantic ``Prediction`` rejects the API's "aborted" status. An httpx
response hook (:func:`note_response`) therefore keeps the status, headers and JSON body of the
last response of the call running in the current context, and :func:`call_for_prediction` returns
that raw body.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from replicate.exceptions import ReplicateError
from replicate.resource import pydantic as replicate_pydantic

from imggen.engine.errors import ErrorKind, TaskError
from imggen.settings import redact

_SAFETY_ERROR = re.compile(r"E005|nsfw|sensitive|safety|content polic", re.IGNORECASE)
_RESETS_IN = re.compile(r"(\d+(?:\.\d+)?)\s*s\b")  # "Your rate limit resets in ~30s."


@dataclass
class _ResponseNote:
    status: int = 0
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    body: Any = None


_current_note: contextvars.ContextVar[_ResponseNote | None] = contextvars.ContextVar("replicate_note", default=None)


async def note_response(response: httpx.Response) -> None:
    """httpx response hook: keep the status, headers and JSON body for the call running in this context."""
    note = _current_note.get()
    if note is None:
        return
    note.status, note.headers, note.body = response.status_code, response.headers, None
    if "json" in response.headers.get("content-type", ""):
        await response.aread()
        try:
            note.body = response.json()
        except ValueError:
            pass


async def call_for_prediction(what: str, request: Callable[[], Awaitable[Any]], secret: str) -> dict[str, Any]:
    """Run one client call (``what``: create, get, cancel) and return the raw prediction JSON.

    Every failure becomes a TaskError whose message never contains ``secret``.
    """
    note = _ResponseNote()
    token = _current_note.set(note)
    try:
        await request()
    except replicate_pydantic.ValidationError:
        pass  # a status 1.0.7 does not know ("aborted"): the raw body below still has it
    except ReplicateError as error:
        raise _api_error(what, error, note, secret) from None
    except httpx.TimeoutException:
        raise TaskError(ErrorKind.TRANSIENT, f"Replicate {what} timed out", connection_error=True) from None
    except httpx.TransportError as error:
        message = f"Replicate {what} failed: {type(error).__name__}"
        raise TaskError(ErrorKind.TRANSIENT, message, connection_error=True) from None
    finally:
        _current_note.reset(token)
    if not isinstance(note.body, dict) or "status" not in note.body:
        raise TaskError(ErrorKind.TRANSIENT, f"Replicate {what} answered without a prediction (HTTP {note.status})")
    return note.body


class PredictionEnded(TaskError):
    """A prediction that is over without a usable output: polling it again can never help.

    ``billed`` is True when it succeeded (Replicate bills it) but its output is gone or unusable
    (expired, removed, refused); False when it ended failed, canceled or aborted, or is unknown.
    """

    def __init__(self, kind: ErrorKind, message: str, *, billed: bool) -> None:
        super().__init__(kind, message)
        self.billed = billed


def failed_prediction(prediction: dict[str, Any]) -> PredictionEnded:
    """The error for a prediction that ended failed, canceled or aborted."""
    status, error = prediction["status"], prediction.get("error") or ""
    message = f"prediction {prediction['id']} {status}" + (f": {error}" if error else "")
    if status == "failed" and _SAFETY_ERROR.search(error):
        return PredictionEnded(ErrorKind.PERMANENT, message, billed=False)  # the filter answers the same every time
    return PredictionEnded(ErrorKind.TRANSIENT, message, billed=False)  # failed, canceled, or aborted before it started


def run_time(prediction: dict[str, Any]) -> float | None:
    """Seconds from the prediction's creation to its end by the server's own clock, when it says both."""
    try:
        created, completed = (datetime.fromisoformat(prediction[name]) for name in ("created_at", "completed_at"))
        return (completed - created).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def _api_error(what: str, error: ReplicateError, note: _ResponseNote, secret: str) -> TaskError:
    status = error.status or note.status
    message = f"Replicate {what} returned HTTP {status}: {error.title or ''} {error.detail or ''}".strip()
    message = redact(message, {secret})
    if status == 429:
        return TaskError(ErrorKind.RATE_LIMITED, message, retry_after=_retry_after(note, error))
    if status == 404 and what == "get":
        return PredictionEnded(ErrorKind.TRANSIENT, message, billed=False)  # no such prediction to collect
    if status in (401, 402, 403) or (status == 404 and what == "create"):
        return TaskError(ErrorKind.FATAL, message)  # bad token, billing, or a model id that does not exist
    if status >= 500:
        return TaskError(ErrorKind.TRANSIENT, message)
    return TaskError(ErrorKind.PERMANENT, message)


def _retry_after(note: _ResponseNote, error: ReplicateError) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date), the body's ``retry_after``, or its detail."""
    header = note.headers.get("retry-after", "").strip()
    body = note.body if isinstance(note.body, dict) else {}
    for seconds in (_seconds(header), _http_date_wait(header), _seconds(body.get("retry_after"))):
        if seconds is not None:
            return seconds
    match = _RESETS_IN.search(error.detail or "")
    return float(match[1]) if match else None


def _seconds(value: Any) -> float | None:
    with contextlib.suppress(TypeError, ValueError):
        seconds = float(value)
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _http_date_wait(value: str) -> float | None:
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    return None
