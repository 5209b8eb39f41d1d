"""A sliding-window counter: at most ``limit`` units (images or requests) in any ``window_s``.

Providers count a per-minute limit in different ways and their headers do not say which:
:data:`WINDOWS` names the ones a server may use (a strict sliding window, the same with the other
reading of its reset header, fixed windows, a token bucket), so clients are measured against each.

The emulators use the sliding window to hold a provider's per-minute limit exactly as a strict server would:
every admission is timestamped with its units, a request that would push the last ``window_s`` seconds over
the limit is refused, and the refusal says how long until enough units leave the window. The state
it reports follows the OpenAI headers' meaning: the reset is when the window is full again.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class WindowState:
    """What the rate-limit headers report after a decision."""

    limit: int
    remaining: int
    reset_s: float  # seconds until the window is fully replenished: the newest unit expires (0 when empty)


class SlidingWindow:
    """Admits units while fewer than ``limit`` were admitted in the last ``window_s`` seconds; a request
    may take many units at once (``n`` images, or the tokens an image counts)."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a rate window needs limit >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._admitted: collections.deque[tuple[float, int]] = collections.deque()  # (when, units), oldest first
        self._count = 0
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._admitted and self._admitted[0][0] <= now - self.window_s:
            self._count -= self._admitted.popleft()[1]

    def _state(self, now: float) -> WindowState:
        reset = self._admitted[-1][0] + self.window_s - now if self._admitted else 0.0
        return WindowState(self.limit, self.limit - self._count, max(reset, 0.0))

    def _wait(self, now: float, units: int) -> float:
        """0 when ``units`` fit now, else how long until enough leave the window (infinite: never)."""
        free = self.limit - self._count
        if units <= free:
            return 0.0
        if units > self.limit:
            return float("inf")
        for when, count in self._admitted:  # the oldest admissions leave first
            free += count
            if free >= units:
                return max(when + self.window_s - now, 0.001)
        return float("inf")

    def wait_for(self, units: int = 1) -> tuple[float, WindowState]:
        """How long until ``units`` would fit (0: now), admitting nothing."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            return self._wait(now, units), self._state(now)

    def admit(self, units: int = 1) -> None:
        """Count ``units`` now (after :meth:`wait_for` said they fit)."""
        with self._lock:
            self._admitted.append((self._clock(), units))
            self._count += units

    def try_admit(self, units: int = 1) -> tuple[bool, float, WindowState]:
        """Admit ``units`` now if they fit: ``(admitted, wait_s, state)``; ``wait_s`` is how long
        until they would fit (0 when admitted; infinite when ``units`` exceeds the limit)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            wait = self._wait(now, units)
            if wait == 0:
                self._admitted.append((now, units))
                self._count += units
            return wait == 0, wait, self._state(now)

    def state(self) -> WindowState:
        with self._lock:
            now = self._clock()
            self._expire(now)
            return self._state(now)


class SlidingWindowNextSlot(SlidingWindow):
    """The same strict sliding window, whose reset header says when the next unit frees (the oldest
    leaves the window) rather than when the window is full again: the other reading of the reset."""

    def _state(self, now: float) -> WindowState:
        reset = self._admitted[0][0] + self.window_s - now if self._admitted else 0.0
        return WindowState(self.limit, self.limit - self._count, max(reset, 0.0))


class FixedWindow(SlidingWindow):
    """At most ``limit`` units per window of ``window_s`` seconds counted from fixed boundaries (the
    count starts over at each); the reset is the next boundary."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(limit, window_s, clock)
        self._started = clock()

    def _boundary(self, now: float) -> float:
        return self._started + ((now - self._started) // self.window_s + 1) * self.window_s

    def _expire(self, now: float) -> None:
        start = self._boundary(now) - self.window_s
        while self._admitted and self._admitted[0][0] < start:
            self._count -= self._admitted.popleft()[1]

    def _state(self, now: float) -> WindowState:
        return WindowState(self.limit, self.limit - self._count, self._boundary(now) - now if self._admitted else 0.0)

    def _wait(self, now: float, units: int) -> float:
        if units <= self.limit - self._count:
            return 0.0
        return float("inf") if units > self.limit else max(self._boundary(now) - now, 0.001)


class TokenBucket(SlidingWindow):
    """A bucket of ``limit`` units refilled evenly over ``window_s`` seconds: a full bucket's burst,
    then the steady rate; the reset is when the bucket is full again."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(limit, window_s, clock)
        self._level, self._filled_at = float(limit), clock()

    def _expire(self, now: float) -> None:
        self._level = min(self.limit, self._level + (now - self._filled_at) * self.limit / self.window_s)
        self._filled_at = now
        self._count = self.limit - int(self._level)

    def _state(self, now: float) -> WindowState:
        return WindowState(self.limit, int(self._level), (self.limit - self._level) * self.window_s / self.limit)

    def _wait(self, now: float, units: int) -> float:
        if units <= self._level:
            return 0.0
        return float("inf") if units > self.limit else max((units - self._level) * self.window_s / self.limit, 0.001)

    def admit(self, units: int = 1) -> None:
        with self._lock:
            self._expire(self._clock())
            self._level -= units

    def try_admit(self, units: int = 1) -> tuple[bool, float, WindowState]:
        with self._lock:
            now = self._clock()
            self._expire(now)
            wait = self._wait(now, units)
            if wait == 0:
                self._level -= units
            return wait == 0, wait, self._state(now)


WINDOWS = {"sliding": SlidingWindow, "sliding_next": SlidingWindowNextSlot, "fixed": FixedWindow,
           "bucket": TokenBucket}  # the ways a server may count a per-minute limit
