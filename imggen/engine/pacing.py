"""When the next request of a run may start: the run's one request limiter, the hold every worker
waits out after a rate limit, and the in-flight target (a number, or "auto": rate x latency).

:class:`Hold` is that shared "not before" time, one kind for every caller: after a provider says
"retry after N seconds", every request of the same account waits on it, not only the one that was
told (the runner's workers here; the training set's Replicate creates in its book of predictions).

The runner asks :meth:`Pacing.wait_turn` before each attempt and reports back what the provider
said (:meth:`Pacing.follow_server`), how long an answer took (:meth:`Pacing.answered`) and a rate
limit hit (:meth:`Pacing.rate_limited`); what to retry stays the runner's (:mod:`.retry`).

A provider may limit tokens per minute as well as requests (OpenAI's image models: an image at high
quality counts thousands of tokens). The pace is then the lower of the requests limit and the
requests the tokens limit allows: tokens per minute (the server's header, or the user's ``--tpm``,
the lower of both) over the tokens one request counts (the answers' usage; before the first, the
caller's estimate). :attr:`Pacing.binding` says which of the two sets the pace.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from .concurrency import InFlightGate, InFlightTarget
from .control import RunControl
from .errors import RateHint
from .limiter import RequestLimiter


class Hold:
    """A shared "not before" moment (monotonic clock) that callers wait out before sending."""

    def __init__(self) -> None:
        self.until = 0.0

    def extend(self, seconds: float) -> None:
        self.until = max(self.until, time.monotonic() + seconds)

    async def wait(self, sleep: Callable[[float], Awaitable[bool]]) -> bool:
        """Once the hold has passed (it may be extended meanwhile), True; False when ``sleep`` (the run
        control's) says the run is stopping."""
        while (delay := self.until - time.monotonic()) > 0:
            if not await sleep(delay):
                return False
        return True


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` task starts in any ``period_s`` seconds."""

    requests: float
    period_s: float = 60.0

    @classmethod
    def per_minute(cls, rpm: float | None) -> "RateLimit | None":
        return cls(rpm) if rpm else None

    def limiter(self) -> RequestLimiter:
        return RequestLimiter(self.requests, self.period_s)


class Pacing:
    """One run's pace. ``window_s`` is what a provider's limit header counts over (OpenAI: a minute);
    ``tokens_per_min`` is the user's tokens limit, ``tokens_each`` what one request will probably count."""

    def __init__(self, limiter: RequestLimiter, target: InFlightTarget, control: RunControl, *,
                 window_s: float, tokens_per_min: float | None = None, tokens_each: float | None = None) -> None:
        self.limiter = limiter
        self.target = target
        self.gate = InFlightGate(target)
        self.control = control
        self.window_s = window_s
        self.hold = Hold()
        self.binding: str | None = None  # "tokens" while the tokens limit sets the pace
        self._requests: float | None = None  # the server's requests limit, per limiter period
        self._user_tokens = tokens_per_min
        self._server_tokens: float | None = None  # per minute
        self._tokens_each = tokens_each
        self._answers_counted = 0  # answers whose usage said their tokens
        self._apply_limits()

    @property
    def limit_per_min(self) -> float | None:
        limit = self.limiter.limit
        return limit * 60.0 / self.limiter.period_s if limit is not None else None

    async def wait_turn(self, still_running: Callable[[], bool]) -> bool:
        """Wait out any rate-limit hold and the limiter; False if the run stopped meanwhile."""
        sleep: Callable[[float], Awaitable[bool]] = self.control.sleep
        while True:
            if not await self.hold.wait(sleep) or not await self.limiter.acquire(sleep):
                return False
            if not await self.control.proceed() or not still_running():
                return False
            if self.hold.until <= time.monotonic():
                return True

    def hold_all(self, seconds: float) -> None:
        """Every worker waits ``seconds`` before its next attempt."""
        self.hold.extend(seconds)

    def rate_limited(self, wait_s: float) -> None:
        self.hold_all(wait_s)
        self.target.rate_limited()

    def follow_server(self, hint: RateHint) -> None:
        """Follow the server in the run's one limiter: its limits (never above the user's) and its count.
        Only while no limit is known at all does a spent window hold every worker until it is full again."""
        if hint.limit_per_min:
            self._requests = hint.limit_per_min * self.limiter.period_s / self.window_s
        if hint.tokens_limit_per_min:
            self._server_tokens = hint.tokens_limit_per_min * 60.0 / self.window_s
        if hint.tokens_used:
            self._answers_counted += 1
            each = self._tokens_each if self._answers_counted > 1 and self._tokens_each else hint.tokens_used
            self._tokens_each = each + (hint.tokens_used - each) / self._answers_counted  # the answers' mean
        self._apply_limits()
        if self.binding == "tokens" and hint.tokens_remaining is not None and self._tokens_each:
            remaining, reset_s = int(hint.tokens_remaining // self._tokens_each), hint.tokens_reset_s
        elif hint.remaining is not None:
            remaining, reset_s = hint.remaining, hint.reset_s
        else:
            return
        if self.limiter.limit is not None:
            self.limiter.observe(remaining, reset_s)
        elif remaining == 0 and reset_s:
            self.hold_all(reset_s)

    def _apply_limits(self) -> None:
        """The limiter's provider limit: the lower of the server's requests limit and the requests
        the tokens limit allows."""
        known_tokens = [value for value in (self._user_tokens, self._server_tokens) if value]
        by_tokens = (min(known_tokens) / self._tokens_each * self.limiter.period_s / 60.0
                     if known_tokens and self._tokens_each else None)
        limits = {kind: value for kind, value in (("requests", self._requests), ("tokens", by_tokens)) if value}
        if not limits:
            return
        kind = min(limits, key=limits.get)
        self.limiter.learn_limit(max(limits[kind], 1.0))
        self.binding = "tokens" if kind == "tokens" and self.limiter.limit == max(limits[kind], 1.0) else None

    def answered(self, latency_s: float) -> None:
        """Let the in-flight target follow rate x latency (with ``concurrency="auto"``)."""
        limit = self.limiter.limit
        self.target.succeeded(latency_s, limit / self.limiter.period_s if limit is not None else None)
        self.gate.wake()
