"""What a run whose tasks go through several stages is busy with, for the displays (a training set:
grids drawn, grids judged, tiles upscaled, images uploaded).

The stages overlap (a grid is judged while the tiles of the one before are upscaled), so the stage is
how many calls of each kind run now, in the job's order: ``drawing 2 grids, judging 1 grid,
upscaling 3 tiles``. :meth:`StageWatch.counted` wraps one of the run's parts so that each call of its
work method is counted while it runs; every change goes to ``tell`` (the run's announcer).
"""

from __future__ import annotations

import collections
import contextlib
from typing import Callable, Iterator


class StageWatch:
    def __init__(self, stages: dict[str, tuple[str, str]], tell: Callable[[str], None]) -> None:
        """``stages``: each stage's verb and noun (``{"draw": ("drawing", "grid")}``), in the job's order."""
        self._stages = stages
        self._tell = tell
        self._running: collections.Counter[str] = collections.Counter()

    def counted(self, part, method: str, stage: str):
        """``part`` as it is, except that its ``method`` (a coroutine) counts as ``stage`` while it runs."""
        return _Counted(part, method, stage, self)

    @contextlib.contextmanager
    def running(self, stage: str) -> Iterator[None]:
        self._running[stage] += 1
        self._tell(self.describe())
        try:
            yield
        finally:
            self._running[stage] -= 1
            self._tell(self.describe())

    def describe(self) -> str:
        """``drawing 2 grids, upscaling 1 tile``; empty when nothing runs."""
        words = []
        for stage, (doing, noun) in self._stages.items():
            count = self._running[stage]
            if count:
                words.append(f"{doing} {count} {noun}{'' if count == 1 else 's'}")
        return ", ".join(words)


class _Counted:
    """A part of the run (drawer, judge, upscaler, store) whose work method is counted by a StageWatch."""

    def __init__(self, part, method: str, stage: str, watch: StageWatch) -> None:
        self._part, self._method, self._stage, self._watch = part, method, stage, watch

    def __getattr__(self, name: str):
        value = getattr(self._part, name)
        if name != self._method:
            return value

        async def counted(*args, **kwargs):
            with self._watch.running(self._stage):
                return await value(*args, **kwargs)

        return counted
