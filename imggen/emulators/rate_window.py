"""A sliding-window counter: at most ``limit`` units (images or requests) in any ``window_s``.

The emulators use it to hold a provider's per-minute limit exactly as a strict server would:
every admitted unit is timestamped, a request that would push the last ``window_s`` seconds over
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
    """Admits units while fewer than ``limit`` were admitted in the last ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a rate window needs limit >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._admitted: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._admitted and self._admitted[0] <= now - self.window_s:
            self._admitted.popleft()

    def _state(self, now: float) -> WindowState:
        reset = self._admitted[-1] + self.window_s - now if self._admitted else 0.0
        return WindowState(self.limit, self.limit - len(self._admitted), max(reset, 0.0))

    def try_admit(self, units: int = 1) -> tuple[bool, float, WindowState]:
        """Admit ``units`` now if they fit: ``(admitted, wait_s, state)``; ``wait_s`` is how long
        until they would fit (0 when admitted; infinite when ``units`` exceeds the limit)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            free = self.limit - len(self._admitted)
            if units <= free:
                self._admitted.extend([now] * units)
                return True, 0.0, self._state(now)
            if units > self.limit:
                return False, float("inf"), self._state(now)
            # the oldest (units - free) admissions must leave the window first
            wait = self._admitted[units - free - 1] + self.window_s - now
            return False, max(wait, 0.001), self._state(now)

    def state(self) -> WindowState:
        with self._lock:
            now = self._clock()
            self._expire(now)
            return self._state(now)
