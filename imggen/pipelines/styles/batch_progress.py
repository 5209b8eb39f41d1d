"""Batch mode's progress line: batches submitted / in progress / completed, lines done, and an ETA.

The ETA comes from the batches' own ``request_counts``: each running batch's lines finished since
its ``in_progress_at`` give its rate, and the slowest batch's remaining lines at that rate are the
wait. Before any batch reports a finished line the ETA is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openai.types import Batch

from imggen.backends.openai_batch import FINISHED_STATUSES
from imggen.engine.batch_book import Submission


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


@dataclass
class BatchWatch:
    """What the polls of one run have seen."""

    batches: dict[str, Batch] = field(default_factory=dict)  # submission id → its batch as last polled
    collected_batches: int = 0
    collected_lines: int = 0

    def saw(self, submission_id: str, batch: Batch) -> None:
        self.batches[submission_id] = batch

    def collected(self, submission: Submission) -> None:
        self.batches.pop(submission.id, None)
        self.collected_batches += 1
        self.collected_lines += submission.lines

    def eta_s(self, open_submissions: list[Submission], now: float) -> float | None:
        waits = []
        for submission in open_submissions:
            batch = self.batches.get(submission.id)
            counts = batch.request_counts if batch else None
            if batch is None or counts is None or not batch.in_progress_at:
                return None
            finished, elapsed = counts.completed + counts.failed, now - batch.in_progress_at
            if finished == 0 or elapsed <= 0:
                return None
            waits.append((counts.total - finished) * elapsed / finished)
        return max(waits, default=0.0)

    def describe(self, open_submissions: list[Submission], now: float) -> str:
        running = sum(1 for s in open_submissions if s.status not in FINISHED_STATUSES)
        done = self.collected_lines
        for submission in open_submissions:
            counts = submission.counts or {}
            done += counts.get("completed", 0) + counts.get("failed", 0)
        total = self.collected_lines + sum(s.lines for s in open_submissions)
        eta = self.eta_s(open_submissions, now) if open_submissions else None
        return (f"batches: {len(open_submissions) + self.collected_batches} submitted, {running} in progress, "
                f"{self.collected_batches} completed; lines {done}/{total} done; "
                f"ETA {_duration(eta) if eta is not None else 'unknown'}")
