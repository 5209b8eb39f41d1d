"""Waiting for remote work that finishes on its own (a Replicate prediction): polls spaced at a share
of the time it has run, so a result waits at most that share longer than it took, whether it runs for
one second or a minute, and a deadline for the whole wait.

Once work of the same kind has finished before (:class:`Durations`), the schedule also knows when to
expect the end: it polls at that moment and then at a small share of it, so a result that ends on
time waits a few hundredths of its own duration, not the usual spacing."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

State = TypeVar("State")


class PollDeadline(Exception):
    """The remote work did not finish within the schedule's deadline."""


@dataclass(frozen=True)
class PollSchedule:
    least_s: float = 0.25  # the shortest time between two polls, before the expected end
    most_s: float = 1.0  # the longest
    share: float = 0.1  # the next poll comes after this share of the time the work has run so far
    deadline_s: float = 600.0  # from the work's start to its end
    due_share: float = 0.02  # past the expected end, polls come this share of it apart...
    least_due_s: float = 0.02  # ...but never closer than this

    def delay(self, elapsed_s: float, expected_s: float | None = None) -> float:
        """Seconds until the next poll of work that has run ``elapsed_s`` and is expected to take ``expected_s``."""
        delay = min(max(self.least_s, self.share * elapsed_s), self.most_s)
        if expected_s is not None:
            due = expected_s - elapsed_s
            delay = min(delay, due if due > 0 else max(self.least_due_s, self.due_share * expected_s))
        return min(delay, self.deadline_s - elapsed_s)


class Durations:
    """How long each kind of remote work took lately; the shortest is when the next is expected to end."""

    def __init__(self, keep: int = 8) -> None:
        self._recent: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=keep))

    def add(self, kind: str, seconds: float) -> None:
        if seconds > 0:
            self._recent[kind].append(seconds)

    def expected(self, kind: str) -> float | None:
        recent = self._recent.get(kind)
        return min(recent) if recent else None


async def poll_until(
    poll: Callable[[], Awaitable[State]], finished: Callable[[State], bool], state: State, *, began: float,
    schedule: PollSchedule, expected_s: float | None = None,
) -> State:
    """``state`` once ``finished``, else polled again (``poll()``) on ``schedule`` from ``began`` (the
    loop's clock) until it is; :class:`PollDeadline` once the schedule's deadline has passed.
    ``expected_s``: how long such work took before (see :class:`Durations`), if known."""
    loop = asyncio.get_running_loop()
    while not finished(state):
        elapsed = loop.time() - began
        if elapsed >= schedule.deadline_s:
            raise PollDeadline(f"did not finish within {schedule.deadline_s:g}s")
        await asyncio.sleep(schedule.delay(elapsed, expected_s))
        state = await poll()
    return state
