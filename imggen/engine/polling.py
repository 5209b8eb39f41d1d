"""Waiting for remote work that finishes on its own (a Replicate prediction): polls spaced at a share
of the time it has run, so a result waits at most that share longer than it took, whether it runs for
one second or a minute, and a deadline for the whole wait.

Once work of the same kind has finished before (:class:`Durations`), the schedule also knows when to
expect the end: between the shortest and the longest recent run times (and a little after), it polls
at a small share of them, so a result that ends when expected waits a few hundredths of its own
duration, not the usual spacing; the wider the recent times spread, the wider apart these polls, so
their number stays small."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Awaitable, Callable, NamedTuple, TypeVar

State = TypeVar("State")


class PollDeadline(Exception):
    """The remote work did not finish within the schedule's deadline."""


class Expected(NamedTuple):
    """The shortest and the longest recent run times of a kind of work, in seconds."""

    shortest: float
    longest: float


@dataclass(frozen=True)
class PollSchedule:
    least_s: float = 0.25  # the shortest time between two polls, outside the expected end
    most_s: float = 1.0  # the longest
    share: float = 0.1  # the next poll comes after this share of the time the work has run so far
    deadline_s: float = 600.0  # from the work's start to its end
    due_share: float = 0.02  # around the expected end, polls come at least this share of it apart...
    due_polls: int = 16  # ...and the spread of recent run times is covered in about this many polls...
    least_due_s: float = 0.02  # ...but never closer than this
    due_slack: float = 0.1  # the expected end lasts until this share past the longest recent run time

    def delay(self, elapsed_s: float, expected: Expected | None = None) -> float:
        """Seconds until the next poll of work that has run ``elapsed_s``, ``expected`` to end as work of its kind did."""
        delay = min(max(self.least_s, self.share * elapsed_s), self.most_s)
        if expected is not None:
            early, late = expected
            if elapsed_s < early:
                delay = min(delay, early - elapsed_s)
            elif elapsed_s < late * (1 + self.due_slack):
                spacing = max(self.least_due_s, self.due_share * early, (late - early) / self.due_polls)
                delay = min(delay, spacing)
        return min(delay, self.deadline_s - elapsed_s)


class Durations:
    """How long each kind of remote work took lately: when the next is expected to end."""

    def __init__(self, keep: int = 8) -> None:
        self._recent: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=keep))

    def add(self, kind: str, seconds: float) -> None:
        if seconds > 0:
            self._recent[kind].append(seconds)

    def expected(self, kind: str) -> Expected | None:
        recent = self._recent.get(kind)
        return Expected(min(recent), max(recent)) if recent else None


async def poll_until(
    poll: Callable[[], Awaitable[State]], finished: Callable[[State], bool], state: State, *, began: float,
    schedule: PollSchedule, expected: Expected | None = None,
) -> State:
    """``state`` once ``finished``, else polled again (``poll()``) on ``schedule`` from ``began`` (the
    loop's clock) until it is; :class:`PollDeadline` once the schedule's deadline has passed.
    ``expected``: how long such work took before (see :class:`Durations`), if known."""
    loop = asyncio.get_running_loop()
    while not finished(state):
        elapsed = loop.time() - began
        if elapsed >= schedule.deadline_s:
            raise PollDeadline(f"did not finish within {schedule.deadline_s:g}s")
        await asyncio.sleep(schedule.delay(elapsed, expected))
        state = await poll()
    return state
