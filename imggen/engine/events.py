"""Progress events a run emits, and the live counters they carry.

A reporter is any callable taking one event: the rich terminal display, the log file, a notebook
widget panel, or a test's list. Reporters run on the run's loop and must return quickly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Union


@dataclass(frozen=True)
class InFlight:
    """One kind of work a task is made of (e.g. a training image's grids and upscales): running now / the target."""

    name: str
    running: int
    target: int


@dataclass(frozen=True)
class Progress:
    """A snapshot of a run's counters."""

    total: int  # tasks in this plan
    done: int = 0  # finished, including those finished by earlier runs
    failed: int = 0
    running: int = 0
    healed: int = 0  # outputs found on disk, counted done without calling the backend
    done_at_start: int = 0  # finished before this run began (not part of the rate)
    spent_before: float = 0.0  # money the ledger booked before this run began
    spent: float = 0.0  # money spent in this run
    retries: int = 0
    rate_limit_hits: int = 0
    in_flight_target: int | None = None  # tasks the runner keeps in flight now
    limit_per_min: float | None = None  # the requests limit in use (--rpm or the provider's), if any
    limit_by: str | None = None  # "tokens" when the tokens limit sets it
    parts: tuple[InFlight, ...] = ()  # the kinds of work inside the tasks, when a pipeline has them
    state: str = "running"
    started_at: float = field(default_factory=time.monotonic)

    @property
    def remaining(self) -> int:
        return max(self.total - self.done - self.failed, 0)

    @property
    def rate_per_min(self) -> float:
        """Tasks finished per minute in this run, over a minute at least: a limit's first window is
        allowed at once, and in the run's first seconds that burst would read as a rate far above the
        limit (134/min beside "limit 60/min")."""
        return 60.0 * self._finished / max(time.monotonic() - self.started_at, 60.0)

    @property
    def eta_s(self) -> float | None:
        elapsed = time.monotonic() - self.started_at
        return self.remaining * elapsed / self._finished if self._finished and elapsed > 0 else None

    @property
    def _finished(self) -> int:
        return self.done + self.failed - self.done_at_start

    @property
    def pace(self) -> str:
        """``in flight 3/12, limit 173/min`` (the limit only when one is in use; ``limit 60/min by tokens``
        when the tokens limit sets it); with parts ``in flight 20/20, grids 2/3, upscales 9/21, limit 600/min``."""
        by = f" by {self.limit_by}" if self.limit_by else ""
        limit = f", limit {self.limit_per_min:.0f}/min{by}" if self.limit_per_min else ""
        target = f"/{self.in_flight_target}" if self.in_flight_target else ""
        parts = "".join(f", {part.name} {part.running}/{part.target}" for part in self.parts)
        return f"in flight {self.running}{target}{parts}{limit}"

    def evolve(self, **changes: object) -> "Progress":
        return replace(self, **changes)

    def after(self, status: str, cost: float = 0.0) -> "Progress":
        """The counters once a task finished with ``status`` (done, healed or failed) at ``cost``."""
        if status == "failed":
            return replace(self, failed=self.failed + 1)
        return replace(self, done=self.done + 1, spent=self.spent + cost)


@dataclass(frozen=True)
class RunStarted:
    progress: Progress


@dataclass(frozen=True)
class TaskFinished:
    key: str
    status: str  # "done", "healed" or "failed"
    progress: Progress
    error_kind: str | None = None
    message: str | None = None
    cost: float = 0.0
    outputs: tuple[str, ...] = ()  # the files it left, relative to the run's output root


@dataclass(frozen=True)
class TaskRetrying:
    key: str
    error_kind: str
    message: str
    wait_s: float
    progress: Progress


@dataclass(frozen=True)
class StateChanged:
    """Paused, resumed, stopping."""

    progress: Progress
    message: str | None = None


@dataclass(frozen=True)
class StageChanged:
    """What the job is busy with besides its counters, e.g. ``drawing 2 grids, upscaling 3``; empty when idle."""

    progress: Progress
    stage: str


@dataclass(frozen=True)
class RunFinished:
    progress: Progress
    message: str | None = None


Event = Union[RunStarted, TaskFinished, TaskRetrying, StateChanged, StageChanged, RunFinished]
Reporter = Callable[[Event], None]
