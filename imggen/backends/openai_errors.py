"""Turning the ``openai`` client's exceptions and headers into the engine's terms.

:func:`task_error` sorts an exception into an :class:`~imggen.engine.errors.ErrorKind` (the table
is in the function) with the server's requested wait and rate hint; :func:`rate_hint` reads the
``x-ratelimit-*`` headers. Messages are built from the error's code and the server's message with
the API key removed; the client's own ``str(exc)`` is never used.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import math
import re
import time
from typing import Any, Mapping

import openai

from imggen.engine.errors import ErrorKind, RateHint, TaskError
from imggen.settings import redact

QUOTA_CODES = {"insufficient_quota", "credit_balance_exhausted"}
REFUSAL_CODES = {"content_policy_violation", "moderation_blocked"}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_go_duration(text: str) -> float | None:
    """``"6m0s"`` → 360.0, ``"12ms"`` → 0.012, a bare number → seconds; None if unreadable or negative."""
    text = text.strip()
    seconds = _finite(text)
    if seconds is None:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    return seconds if seconds >= 0 else None


def _finite(text: str | None) -> float | None:
    """A finite number, or None for anything else (absent, empty, ``nan``, ``inf``, words)."""
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def rate_hint(headers: Mapping[str, str]) -> RateHint | None:
    """The requests and tokens budgets the ``x-ratelimit-*-requests`` and ``x-ratelimit-*-tokens``
    headers report, or None if absent.

    Each header may be missing or malformed on its own (the API does not always send them); what
    cannot be read is left unknown rather than failing the request."""
    requests, tokens = _budget(headers, "requests"), _budget(headers, "tokens")
    hint = RateHint(*requests, tokens_limit_per_min=tokens[0], tokens_remaining=tokens[1], tokens_reset_s=tokens[2])
    return hint if hint != RateHint() else None


def with_tokens_used(rate: RateHint | None, usage: Mapping[str, Any] | None) -> RateHint | None:
    """``rate`` with the tokens an answer's ``usage`` counted against a tokens-per-minute limit."""
    if not usage or not usage.get("total_tokens"):
        return rate
    return dataclasses.replace(rate or RateHint(), tokens_used=float(usage["total_tokens"]))


def _budget(headers: Mapping[str, str], unit: str) -> tuple[float | None, int | None, float | None]:
    """The limit, what remains and the seconds until the window refills, of one ``x-ratelimit`` unit."""
    limit = _finite(headers.get(f"x-ratelimit-limit-{unit}"))
    remaining = _finite(headers.get(f"x-ratelimit-remaining-{unit}"))
    reset = headers.get(f"x-ratelimit-reset-{unit}")
    return (limit if limit is not None and limit >= 1 else None,
            int(remaining) if remaining is not None and remaining >= 0 and remaining == int(remaining) else None,
            parse_go_duration(reset) if reset is not None else None)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The server's wait in seconds: ``retry-after-ms`` first, then ``retry-after`` (seconds or an
    HTTP date); None when neither is there or readable, so a malformed value never fails a 429."""
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None and millis >= 0:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT even when it does not say so
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(when.timestamp() - time.time(), 0.0)


def task_error(exc: Exception, *, secret: str | None, what: str) -> TaskError:
    """The engine's error for an ``openai`` exception raised while doing ``what``.

    401 and 403 → FATAL (bad key or account); 429 ``insufficient_quota`` → FATAL; other 429 →
    RATE_LIMITED with the server's wait; content-policy/moderation 400 → PERMANENT; other 4xx →
    PERMANENT; 408/409/5xx, timeouts and connection errors → TRANSIENT.
    """
    if isinstance(exc, openai.APITimeoutError):
        return TaskError(ErrorKind.TRANSIENT, f"OpenAI {what} timed out")
    if isinstance(exc, openai.APIConnectionError):
        return TaskError(ErrorKind.TRANSIENT, f"could not reach OpenAI for {what} (connection error)",
                         connection_error=True)
    if not isinstance(exc, openai.APIStatusError):
        return TaskError(ErrorKind.TRANSIENT, f"OpenAI {what} failed: {type(exc).__name__}")
    status, code = exc.status_code, exc.code or (exc.type if exc.status_code == 429 else None)
    server_message = redact(str((exc.body or {}).get("message", "") if isinstance(exc.body, dict) else ""), [secret])
    return status_error(status, code, server_message, what=what, headers=exc.response.headers)


def status_error(status: int, code: str | None, server_message: str, *, what: str,
                 headers: Mapping[str, str]) -> TaskError:
    """The engine's error for an HTTP error answer (the table in :func:`task_error`); the Batch API's
    error lines are sorted with it too. ``server_message`` must already be redacted."""
    detail = f"OpenAI {what}: HTTP {status}" + (f" {code}" if code else "")
    detail += f": {server_message}" if server_message else ""
    if status == 401:
        return TaskError(ErrorKind.FATAL, f"OpenAI rejected the API key (HTTP 401{' ' + code if code else ''}); "
                         "check OPENAI_API_KEY")
    if status == 403:
        return TaskError(ErrorKind.FATAL, detail)
    if status == 429 and code in QUOTA_CODES:
        return TaskError(ErrorKind.FATAL, f"OpenAI quota exhausted ({code}): add credit to the account and rerun; "
                         "finished images are kept")
    if status == 429:
        return TaskError(ErrorKind.RATE_LIMITED, detail, retry_after=retry_after(headers), rate=rate_hint(headers))
    if status in (408, 409) or status >= 500:
        return TaskError(ErrorKind.TRANSIENT, detail)
    if code in REFUSAL_CODES:
        return TaskError(ErrorKind.PERMANENT, f"OpenAI refused the prompt ({code}): {server_message}")
    return TaskError(ErrorKind.PERMANENT, detail)
