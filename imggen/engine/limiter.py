"""The requests limit: never more than N starts in any window of the period, and N in every full one.

Two maintained libraries, each doing what it is good at:

* ``limits``' moving window (a log of recent starts) is exact: a start is let through only if
  fewer than N happened in the last period, so no window, however placed, ever holds more.
* ``aiolimiter``'s leaky bucket of one spaces starts evenly at a little under period/N, so the
  requests do not arrive as a burst (providers also enforce their limits over sub-minute slices),
  while the slack absorbs the event loop's wake-up delays that a bucket paced at exactly
  period/N would accumulate as a steady shortfall.
"""

from __future__ import annotations

import asyncio
import math
import time

from aiolimiter import AsyncLimiter
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

PACING_SLACK = 0.95  # starts are spaced at 95% of period/N; the window keeps the count exact


class RequestLimiter:
    """At most ``requests`` starts in any ``period_s`` seconds, evenly spaced."""

    def __init__(self, requests: float, period_s: float) -> None:
        if requests < 1 or period_s <= 0:
            raise ValueError("a rate limit needs at least one request per positive period")
        # The window counts whole requests over whole seconds; rounding this way never allows more.
        count, seconds = math.floor(requests), math.ceil(period_s)
        self._item = RateLimitItemPerSecond(count, seconds)
        self._window = MovingWindowRateLimiter(MemoryStorage())
        self._pacer = AsyncLimiter(1, PACING_SLACK * seconds / count)

    async def acquire(self) -> None:
        await self._pacer.acquire()
        while not await self._window.hit(self._item, "starts"):
            stats = await self._window.get_window_stats(self._item, "starts")
            await asyncio.sleep(max(stats.reset_time - time.time(), 0.001))
