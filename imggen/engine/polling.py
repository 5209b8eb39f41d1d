"""Waiting for remote work that finishes on its own (a Replicate prediction): polls spaced at a share
of the time it has run, so a result waits at most that share longer than it took, whether it runs for
one second or a minute, and a deadline for the whole wait."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

State = TypeVar("State")


class PollDeadline(Exception):
    """The remote work did not finish within the schedule's deadline."""


@dataclass(frozen=True)
class PollSchedule:
    least_s: float = 0.25  # the shortest time between two polls
    most_s: float = 1.0  # the longest
    share: float = 0.1  # the next poll comes after this share of the time the work has run so far
    deadline_s: float = 600.0  # from the work's start to its end

    def delay(self, elapsed_s: float) -> float:
        return min(max(self.least_s, self.share * elapsed_s), self.most_s, self.deadline_s - elapsed_s)


async def poll_until(
    poll: Callable[[], Awaitable[State]], finished: Callable[[State], bool], state: State, *, began: float,
    schedule: PollSchedule,
) -> State:
    """``state`` once ``finished``, else polled again (``poll()``) on ``schedule`` from ``began`` (the
    loop's clock) until it is; :class:`PollDeadline` once the schedule's deadline has passed."""
    loop = asyncio.get_running_loop()
    while not finished(state):
        elapsed = loop.time() - began
        if elapsed >= schedule.deadline_s:
            raise PollDeadline(f"did not finish within {schedule.deadline_s:g}s")
        await asyncio.sleep(schedule.delay(elapsed))
        state = await poll()
    return state
