"""Which failure, if any, an emulated request meets: scripted, random, or the account's quota.

Three sources, in this order: faults queued with :meth:`FaultPlan.fail_next` (tests script exact
sequences), then random faults at the configured rates (seeded, so a run replays), and separately
an image quota that runs out (``insufficient_quota``) and can be refilled while the server runs.
All methods are thread-safe so a test thread can steer a server running on another thread.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass

FAULT_KINDS = ("server_error", "overloaded", "drop", "slow", "rate_limit", "slow_down")


@dataclass(frozen=True)
class FaultRates:
    """Probabilities per request (each 0..1) of the random faults."""

    server_error: float = 0.0  # 500 server_error or 503 server_is_overloaded, half each
    drop: float = 0.0  # the connection is closed without a response
    slow: float = 0.0  # the response is delayed by the emulator's slow_s


class FaultPlan:
    """Decides each request's fault and keeps the remaining image quota."""

    def __init__(self, rates: FaultRates = FaultRates(), *, quota_images: int | None = None, seed: int = 0) -> None:
        self.rates = rates
        self._scripted: deque[str] = deque()
        self._quota = quota_images
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def fail_next(self, kind: str, times: int = 1) -> None:
        """Make the next ``times`` requests (either endpoint) fail with ``kind`` (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._scripted.extend([kind] * times)

    def next_fault(self) -> str | None:
        """The fault this request meets, or None."""
        with self._lock:
            if self._scripted:
                return self._scripted.popleft()
            roll = self._rng.random()
            if roll < self.rates.drop:
                return "drop"
            roll -= self.rates.drop
            if roll < self.rates.server_error:
                return self._rng.choice(("server_error", "overloaded"))
            roll -= self.rates.server_error
            if roll < self.rates.slow:
                return "slow"
            return None

    def set_quota(self, images_left: int | None) -> None:
        """Images the account may still generate (None: unlimited); refills a spent quota."""
        with self._lock:
            self._quota = images_left

    def spend_quota(self, images: int) -> bool:
        """Take ``images`` from the quota; False (nothing taken) when not enough is left."""
        with self._lock:
            if self._quota is None:
                return True
            if images > self._quota:
                return False
            self._quota -= images
            return True
