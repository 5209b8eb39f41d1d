"""The Replicate emulator's inconvenient answers: faulty polls, throttled creates in every documented form, slow bodies.

From the contract (reference §3.1): a create may be throttled with 429 and a problem body whose
``detail`` reads "Request was throttled. Your rate limit resets in ~30s.", sometimes with a
``Retry-After`` header (seconds or an HTTP date) and, in newer bodies, ``"retry_after": 5``; polls
(``GET /v1/predictions/{id}``) may meet a 5xx, a dropped connection or a late answer; an output
file may trickle its body. A create that arrives while an earlier 429's ``Retry-After`` still runs
is counted as early (after a short grace for requests that were already on the way).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

from aiohttp import web

from imggen.emulators.fault_plan import FaultPlan, FaultRates
from imggen.emulators.openai_replies import DroppedConnection

THROTTLE_FORMS = ("header", "http_date", "body", "detail")
EARLY_GRACE_S = 0.25  # requests sent before the 429 reached the caller are not its fault


@dataclass
class ReplicateFaults:
    """Which faults the emulator injects, besides the create window of its config."""

    polls: FaultRates = field(default_factory=FaultRates)  # 5xx, dropped connections, late answers on polls
    slow_poll_s: float = 2.0  # how late a "slow" poll answers
    throttle_rate: float = 0.0  # share of creates answered 429 at random, in a random form
    throttle_s: float = 1.0  # the Retry-After of a random throttle (whole seconds, as servers send; less only
    #                           for a world whose latencies are scaled down, as in the benchmarks)
    throttle_forms: tuple[str, ...] = THROTTLE_FORMS  # the forms random throttles take
    file_body_s: float = 0.0  # an output file's body trickles over this many seconds
    seed: int = 0


class FaultDesk:
    """Decides each poll's and each create's fault, and counts creates sent before their Retry-After passed."""

    def __init__(self, faults: ReplicateFaults) -> None:
        self.faults = faults
        self.early_creates = 0
        self.poll_faults: Counter[str] = Counter()  # faults met by polls, by kind
        self._polls = FaultPlan(faults.polls, seed=faults.seed)
        self._random = random.Random(faults.seed)
        self._scripted: deque[tuple[int, float, str]] = deque()  # (status, retry_after_s, form)
        self._holds: list[tuple[float, float]] = []  # (answered_at, retry_allowed_at) of each 429
        self._lock = threading.Lock()

    def fail_polls(self, kind: str, times: int = 1) -> None:
        """Make the next ``times`` polls fail with ``kind``: server_error, overloaded, drop or slow."""
        self._polls.fail_next(kind, times)

    def reject_creates(self, count: int, status: int = 429, retry_after_s: float = 1, form: str = "header") -> None:
        """Answer the next ``count`` creates with ``status``: 429 in ``form`` (see THROTTLE_FORMS), or e.g. a 5xx."""
        if form not in THROTTLE_FORMS:
            raise ValueError(f"unknown throttle form {form!r}; choose from {', '.join(THROTTLE_FORMS)}")
        with self._lock:
            self._scripted.extend([(status, retry_after_s, form)] * count)

    async def poll_fault(self) -> web.Response | None:
        """The answer a faulty poll gets instead of the prediction (None: answer normally)."""
        kind = self._polls.next_fault()
        if kind is not None:
            self.poll_faults[kind] += 1
        if kind == "drop":
            raise DroppedConnection()
        if kind == "slow":
            await asyncio.sleep(self.faults.slow_poll_s)
        if kind in ("server_error", "overloaded"):
            status = 500 if kind == "server_error" else 503
            return problem(status, HTTPStatus(status).phrase, "The server could not handle the request (emulated).")
        return None

    def create_fault(self, window_wait_s: float | None) -> web.Response | None:
        """A scripted or random rejection of this create, or the throttle of a full window (``window_wait_s``)."""
        now = time.time()
        with self._lock:
            self._holds = [hold for hold in self._holds if hold[1] > now]
            self.early_creates += any(answered + EARLY_GRACE_S < now for answered, _ in self._holds)
            if self._scripted:
                status, retry_after_s, form = self._scripted.popleft()
            elif self._random.random() < self.faults.throttle_rate:
                status, retry_after_s, form = 429, self.faults.throttle_s, self._random.choice(self.faults.throttle_forms)
            elif window_wait_s is not None:
                status, retry_after_s, form = 429, max(1, math.ceil(window_wait_s)), "header"
            else:
                return None
            if status != 429:
                return problem(status, HTTPStatus(status).phrase, "The server could not handle the request (emulated).")
            response, allowed_at = throttled(retry_after_s, form, now)
            self._holds.append((now, allowed_at))
            return response

    async def file_response(self, request: web.Request, data: bytes, content_type: str) -> web.StreamResponse:
        """An output file; with ``file_body_s`` set, its body arrives in pieces over that long."""
        if self.faults.file_body_s <= 0:
            return web.Response(body=data, content_type=content_type)
        response = web.StreamResponse(headers={"Content-Type": content_type, "Content-Length": str(len(data))})
        await response.prepare(request)
        pieces = 8
        step = math.ceil(len(data) / pieces)
        with contextlib.suppress(ConnectionResetError):  # the client went away meanwhile
            for start in range(0, len(data), step):
                await asyncio.sleep(self.faults.file_body_s / pieces)
                await response.write(data[start:start + step])
            await response.write_eof()
        return response


def throttled(retry_after_s: float, form: str, now: float) -> tuple[web.Response, float]:
    """A 429 in one of the documented forms, and the moment from which a create is allowed again."""
    seconds = f"{retry_after_s:g}"
    detail = f"Request was throttled. Your rate limit resets in ~{seconds}s."
    if form == "http_date":  # whole seconds: the caller may come back at the second the date names
        allowed_at = float(math.floor(now + retry_after_s) + 1)
        date = formatdate(allowed_at, usegmt=True)
        return problem(429, "Request was throttled", detail, headers={"Retry-After": date}), allowed_at
    allowed_at = now + retry_after_s
    if form == "header":
        headers = {"Retry-After": seconds}
        return problem(429, "Request was throttled", detail, headers=headers, retry_after=retry_after_s), allowed_at
    if form == "body":
        return problem(429, "Request was throttled", detail, retry_after=retry_after_s), allowed_at
    return web.json_response({"detail": detail}, status=429, content_type="application/problem+json"), allowed_at


def problem(status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra) -> web.Response:
    """An RFC 7807 problem answer, as the API sends its errors."""
    body = {"title": title, "detail": detail, "status": status, **extra}
    return web.json_response(body, status=status, headers=headers, content_type="application/problem+json")
