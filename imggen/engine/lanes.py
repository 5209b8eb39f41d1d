"""Kinds of work a run keeps in flight side by side (a training set's grids and upscales), each with
its own target, and how the displays show them.

Each kind of work is a :class:`Lane` with the engine's in-flight target
(:class:`~.concurrency.InFlightTarget`): a pinned number, or ``auto``, which follows Little's law
from that kind's observed latency and the pace of the provider's creates (the run's one
:class:`~.limiter.RequestLimiter`, kept by its paid-call book, :class:`CreateClock`: for Replicate the
user's ``rpm``, else its documented create limit). Until the first answer the limiter's
spacing alone bounds it (creates go one per spacing: a ramp from one, never a burst); a throttled
create halves it, once per excess: a create sent before the last halving was sent under the larger
target, so its 429 answers the same excess and halves nothing more. Work that never creates a
prediction (a local drawer or upscaler) has no pace; its target is the engine's probe: a small
start, one more per answer.

The latency of one piece of work runs from the moment its create was sent (the book says when;
waiting for the limiter is not latency) or, without a create, from when it began, to its end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import AsyncIterator
from typing import Protocol

from .concurrency import AUTO, InFlightGate, InFlightTarget
from .errors import ErrorKind, TaskError
from .events import Event, InFlight, Reporter
from .limiter import RequestLimiter

CEILING = 256  # the most in flight of one kind with "auto"


class CreateClock(Protocol):
    """What a paid-call book tells a lane: the pace of creates, and when a key's create was sent."""

    @property
    def create_rate_per_s(self) -> float | None: ...

    def sent_at(self, key: str) -> float | None: ...


def checked_concurrency(name: str, value: int | str) -> None:
    if value != AUTO and not (isinstance(value, int) and value >= 1):
        raise ValueError(f"{name} must be a positive number or {AUTO!r}")


class Lane:
    """One kind of work (``name``: grids, upscales): its in-flight target and the gate that keeps to it."""

    def __init__(self, name: str, concurrency: int | str, creates: CreateClock, *, paced: bool,
                 ceiling: int = CEILING) -> None:
        """``paced``: the work creates paid predictions, so the limiter of ``creates`` spaces its starts."""
        checked_concurrency(f"{name} concurrency", concurrency)
        self.name = name
        self.target = InFlightTarget(concurrency, ceiling=ceiling, paced_from_start=paced)
        self._gate = InFlightGate(self.target)
        self._creates = creates
        self._halved_at = -math.inf  # when a throttled create last halved the target

    @property
    def running(self) -> int:
        return self._gate.in_use

    def shown(self) -> InFlight:
        return InFlight(self.name, self.running, self.target.value)

    @contextlib.asynccontextmanager
    async def flight(self, key: str) -> AsyncIterator[None]:
        """Hold a place for the work on ``key`` while the block runs; its end teaches the target."""
        await self._gate.acquire()
        began, outcome = time.monotonic(), None
        try:
            yield
            outcome = "delivered"
        except TaskError as error:
            outcome = error.kind
            raise
        finally:
            sent = self._creates.sent_at(key)
            if outcome == "delivered":
                rate = self._creates.create_rate_per_s if sent is not None else None
                self.target.succeeded(time.monotonic() - (began if sent is None else sent), rate)
            elif outcome is ErrorKind.RATE_LIMITED and (sent is None or sent > self._halved_at):
                self.target.rate_limited()
                self._halved_at = time.monotonic()
            self._gate.release()


class LanesShown:
    """A reporter that sees each event's progress with the grids and upscales in flight, and the create
    limit once a create has been paced by it (a local drawer and upscaler create nothing)."""

    def __init__(self, reporter: Reporter, lanes: list[Lane], creates: RequestLimiter) -> None:
        self._reporter, self._lanes, self._creates = reporter, lanes, creates

    def __call__(self, event: Event) -> None:
        limit = self._creates.limit
        paced = limit is not None and any(lane.target.rate_per_s is not None for lane in self._lanes)
        progress = event.progress.evolve(parts=tuple(lane.shown() for lane in self._lanes),
                                         limit_per_min=limit * 60.0 / self._creates.period_s if paced else None)
        self._reporter(dataclasses.replace(event, progress=progress))
