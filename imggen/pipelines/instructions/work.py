"""What one instruction task does: hand it to the model worker pool and wait for the image's provenance.

The worker (:mod:`~imggen.pipelines.instructions.render`) writes the PNG atomically; the engine
marks the ledger after this returns, so a crash between the two is healed by the next run.
Tasks are grouped by their conditioning images and size, so one pipeline call can take a batch.
"""

from __future__ import annotations

from ...distributed.pool import WorkerPool
from ...engine.tasks import Outcome, Task


class InstructionWork:
    """The engine's work function for instruction images: ``await work(task) -> Outcome``."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.withdraw_waiting = pool.withdraw_waiting  # Pause and Stop hold within what the workers draw

    async def __call__(self, task: Task) -> Outcome:
        payload = task.payload
        group = (tuple(payload["references"]), payload["height"], payload["width"])
        provenance = await self.pool.submit(payload, group)
        return Outcome(outputs=task.outputs, provenance=provenance)
