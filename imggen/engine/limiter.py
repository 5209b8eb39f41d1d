"""The requests limit of one run: starts spaced at exactly the limit's rate, never more in any window.

One :class:`RequestLimiter` lives as long as a run. Its limit is the lower of the user's (``--rpm``)
and the provider's (learned from its headers); both may arrive or change while the run goes on and
are applied in place, so the log of recent starts the window guard reads is never lost. The
provider's own count (``remaining`` and the time until its window is fully replenished) is merged
into that log, so requests the provider counted that this run did not make (another run on the same
account, an earlier run whose window is still open) are counted too.

Two guards, both needed:

* spacing: starts sit on a grid of exactly ``period / limit`` seconds, so they never come as a
  burst and no sub-window (providers also enforce their limits over slices such as 10 s) holds more
  than its share plus one. A start that was waited for keeps its grid slot when the timer fires late
  (by up to one spacing, as a busy machine's event loop does), so the wake-up delays do not add up
  to a shortfall; after an idle spell (nobody waiting for the slot) the grid starts again.
* the window: never more than ``limit`` starts in any ``period`` plus a small margin. The margin
  covers the jitter between a start here and its arrival at the server, which a strict window counts.

Written here rather than with ``limits`` or ``aiolimiter``: both key their history by the limit
itself, so a limit changed in place would begin with an empty log, and neither can take in starts
counted elsewhere.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from typing import Awaitable, Callable

WINDOW_MARGIN = 0.005  # of the period: the window guard holds `limit` starts per period * 1.005, ...
MIN_WINDOW_MARGIN_S = 0.1  # ... at least this much longer, for the network's jitter, ...
MAX_WINDOW_MARGIN = 0.05  # ... but never more than 5% (a test's short period)
LATE_SLOT_SHARE = 0.1  # a start nobody waited for keeps its grid slot up to this share of the spacing late


class RequestLimiter:
    """At most ``limit`` starts in any ``period_s`` seconds, evenly spaced; no limit until one is set."""

    def __init__(self, requests: float | None = None, period_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if period_s <= 0:
            raise ValueError("a rate limit needs a positive period")
        self.period_s = period_s
        self._clock = clock
        self._ceiling = self._checked(requests) if requests is not None else None
        self._learned: float | None = None
        self._starts: collections.deque[float] = collections.deque()  # this run's starts, oldest first
        self._elsewhere: list[float] = []  # assumed start times of requests the provider counted, not ours
        self._next_slot = -math.inf
        self._waiting = 0  # acquire calls sleeping until their turn

    @staticmethod
    def _checked(requests: float) -> float:
        if not requests >= 1 or math.isinf(requests):
            raise ValueError("a rate limit needs at least one request per period")
        return float(requests)

    @property
    def limit(self) -> float | None:
        """Starts allowed per period now: the lower of the user's and the provider's, if any."""
        known = [value for value in (self._ceiling, self._learned) if value is not None]
        return min(known) if known else None

    @property
    def margin_s(self) -> float:
        return min(max(self.period_s * WINDOW_MARGIN, MIN_WINDOW_MARGIN_S), self.period_s * MAX_WINDOW_MARGIN)

    def learn_limit(self, requests: float) -> None:
        """The provider's limit per period, as its latest answer said; lowers or raises the pace in place."""
        self._learned = self._checked(requests)

    def observe(self, remaining: int, reset_s: float | None) -> None:
        """Take in the provider's count: ``remaining`` starts left now, the window fully replenished
        in ``reset_s`` (None: unknown, taken as a whole period).

        Requests it counted beyond this run's own recent starts are assumed to have started as late
        as the reset allows (each leaves the window by then), the cautious reading of a count whose
        times are not told."""
        limit = self.limit
        if limit is None or remaining < 0:
            return
        now = self._clock()
        self._expire(now)
        ours = len(self._starts)  # over the period and the margin: a start the server just let go is ours
        counted = max(math.floor(limit) - remaining, 0)
        reset = min(reset_s, self.period_s) if reset_s is not None else self.period_s
        self._elsewhere = [now + reset - self.period_s] * max(counted - ours, 0)

    async def acquire(self, sleep: Callable[[float], Awaitable[bool]] | None = None) -> bool:
        """Wait until a start is allowed, and count it. ``sleep(seconds)`` waits (default
        ``asyncio.sleep``); when it returns False (the run is stopping) nothing is counted and
        ``acquire`` returns False."""
        waited = False
        while True:
            now = self._clock()
            delay = self._delay(now)
            if delay <= 0:
                self._record(now, waited_for=waited or self._waiting > 0)
                return True
            self._waiting += 1
            try:
                if sleep is None:
                    await asyncio.sleep(delay)
                elif not await sleep(delay):
                    return False
            finally:
                self._waiting -= 1
            waited = True

    def _delay(self, now: float) -> float:
        limit = self.limit
        if limit is None:
            return 0.0
        self._expire(now)
        allowed = math.floor(limit)
        counted = sorted([*self._elsewhere, *self._starts])
        window_wait = counted[len(counted) - allowed] + self.period_s + self.margin_s - now \
            if len(counted) >= allowed else 0.0
        return max(self._next_slot - now, window_wait)

    def _record(self, now: float, *, waited_for: bool = False) -> None:
        self._starts.append(now)
        limit = self.limit
        if limit is None:
            return
        spacing = self.period_s / limit
        late = now - self._next_slot
        slot = self._next_slot if 0 <= late <= (1.0 if waited_for else LATE_SLOT_SHARE) * spacing else now
        self._next_slot = slot + spacing

    def _expire(self, now: float) -> None:
        horizon = now - self.period_s - self.margin_s
        while self._starts and self._starts[0] <= horizon:
            self._starts.popleft()
        self._elsewhere = [start for start in self._elsewhere if start > horizon]
