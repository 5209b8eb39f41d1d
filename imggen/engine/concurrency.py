"""How many tasks a run keeps in flight: a pinned number, or a target that follows the provider.

With ``concurrency="auto"`` the target follows Little's law: in flight = rate x latency, from the
limit in use (the run's limiter: ``--rpm`` or the provider's advertised limit, whichever is lower)
and the latency observed so far, with a little headroom for jitter. Until the first answer it is
small (nothing is known yet); after it, the limiter spaces the starts, so going straight to the
law's number is never a burst. Without a known limit a probe starts small and grows by one per
answer. A rate-limit answer halves the target (multiplicative decrease); the cap it sets grows
back by one per round trip while no limit is known (additive increase), and by one per answer
(about a round trip to recover) when the limiter already paces the starts. It never passes the
ceiling. Where a limit is known and paces the starts from the very first one
(``paced_from_start``), the pace alone bounds what is in flight until the first answer: it grows by
one start per spacing of the limiter, a ramp from one, never a burst.

:class:`InFlightGate` is the runner's semaphore whose size follows the target.
"""

from __future__ import annotations

import asyncio
import math

AUTO = "auto"
START = 4  # tasks in flight before anything is known
HEADROOM = 2.0  # in flight = rate x latency x this, plus one: a queue at the limiter through jitter
LATENCY_WEIGHT = 0.2  # each new latency's weight in the running average


class InFlightTarget:
    """The number of tasks to keep in flight, fixed or following rate x latency."""

    def __init__(self, concurrency: int | str = AUTO, *, ceiling: int = 256, paced_from_start: bool = False) -> None:
        if concurrency != AUTO and not (isinstance(concurrency, int) and concurrency >= 1):
            raise ValueError(f"concurrency must be a positive number or {AUTO!r}")
        self.pinned = concurrency if concurrency != AUTO else None
        self.ceiling = ceiling if self.pinned is None else self.pinned
        self._probe = float(self.ceiling if paced_from_start else min(START, self.ceiling))  # before an answer
        self._cap: float | None = None  # set by a rate-limit answer, then grows back slowly
        self.latency_s: float | None = None
        self.rate_per_s: float | None = None

    @property
    def value(self) -> int:
        if self.pinned is not None:
            return self.pinned
        if self.rate_per_s is not None and self.latency_s is not None:
            target = self.rate_per_s * self.latency_s * HEADROOM + 1
        else:
            target = self._probe
        if self._cap is not None:
            target = min(target, self._cap)
        return max(1, min(math.ceil(target), self.ceiling))

    def succeeded(self, latency_s: float, rate_per_s: float | None) -> None:
        """A task finished after ``latency_s``; ``rate_per_s`` is the limit in use now (None: none known)."""
        self.rate_per_s = rate_per_s
        self.latency_s = latency_s if self.latency_s is None \
            else (1 - LATENCY_WEIGHT) * self.latency_s + LATENCY_WEIGHT * latency_s
        if self._cap is not None and self.value >= self._cap:
            step = 1.0 if rate_per_s is not None else 1 / self._cap
            self._cap = min(self._cap + step, float(self.ceiling))
        if rate_per_s is None:
            step = 1.0 if self._cap is None else 1 / self._probe
            self._probe = min(self._probe + step, float(self.ceiling))

    def rate_limited(self) -> None:
        """The provider said too fast: halve the target."""
        self._cap = max(self.value / 2, 1.0)
        self._probe = min(self._probe, self._cap)


class InFlightGate:
    """A semaphore whose size is ``target.value`` at each moment. Release is synchronous, so a
    cancelled task always gives its place back."""

    def __init__(self, target: InFlightTarget) -> None:
        self.target = target
        self.in_use = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self) -> None:
        while self.in_use >= self.target.value:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        self.in_use += 1

    def release(self) -> None:
        self.in_use -= 1
        self.wake()

    def wake(self) -> None:
        """Let waiters look again (after a release, or after the target moved)."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
