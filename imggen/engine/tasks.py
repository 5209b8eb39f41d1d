"""A task (one image, or one grid, with a stable key), the outcome of running it, and the work that runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from .errors import RateHint


@dataclass(slots=True)
class Task:
    """One unit of paid or slow work.

    ``key`` is stable across runs (it is how resume recognises finished work). ``payload`` holds
    everything the work function needs and must be JSON-serialisable. ``outputs`` lists the files,
    relative to the run's output root, that a finished task leaves; if they all exist and are valid
    images, the task counts as done without running again. ``cost`` is the estimated price, used by
    the budget cap. Tasks are plain slotted records because a plan may hold millions of them.
    """

    key: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    cost: float = 0.0


@dataclass
class Outcome:
    """What a finished task reports back: files written, money spent, where the result came from."""

    outputs: tuple[str, ...] = ()
    cost: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)
    rate: RateHint | None = None


Work = Callable[[Task], Awaitable[Outcome]]  # what runs a task: a call, a model's workers, a batch line
