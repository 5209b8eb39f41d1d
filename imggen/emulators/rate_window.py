"""A sliding-window counter: at most ``limit`` units (images or requests) in any ``window_s``.

The emulators use it to hold a provider's per-minute limit exactly as a strict server would:
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
