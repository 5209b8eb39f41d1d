"""Stats and the resume-state view, computed from the ledger and written atomically as JSON.

``processing_stats.json`` carries the style-matrix seed's fields (duration, attempts, successes,
failures, rate-limit hits, connection errors, success rate) and the money: billed, used and wasted
(from the folder's paid calls where a pipeline records them, see :mod:`.paid_calls`, else the
tasks' own costs); ``generation_state.json`` is the seed's
state file (completed samples, failed records, last chunk index, timestamp), now a view of the
ledger rather than the source of truth. :func:`typical_cost` gives the billed cost per task that
the next estimate for the same work rests on.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from ..storage.atomic import atomic_write_json, atomic_writer
from .ledger import LEDGER_NAME, Ledger
from .paid_calls import money

SEED_CHUNK_SIZE = 5  # the seed processed samples in chunks of five


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat() if timestamp else None


def processing_stats(ledger: Ledger) -> dict[str, Any]:
    """The seed's statistics for everything in the ledger, plus totals and cost."""
    counts = ledger.counts()
    totals = ledger.totals()
    first, last, duration = ledger.run_durations()
    finished = counts["done"] + counts["failed"]
    return {
        "start_time": _iso(first),
        "end_time": _iso(last),
        "total_duration_seconds": round(duration, 3),
        "total_tasks": sum(counts.values()),
        "total_attempts": int(totals["attempts"]),
        "successful_downloads": counts["done"],
        "failed_downloads": counts["failed"],
        "pending": counts["pending"] + counts["running"],
        "rate_limit_hits": int(totals["rate_limit_hits"]),
        "connection_errors": int(totals["connection_errors"]),
        "success_rate": round(counts["done"] / finished, 4) if finished else 0.0,
        "healed_from_disk": int(totals["healed"]),
        **money_spent(ledger),
    }


def money_spent(ledger: Ledger) -> dict[str, Any]:
    """What was billed, used and wasted: from the recorded paid calls, or else what the finished tasks reported."""
    with closing(sqlite3.connect(ledger.path)) as db:
        calls = money(db)
    if calls is None:
        totals = ledger.totals()
        cost, wasted = round(totals["cost"], 4), round(totals["wasted"], 4)
        return {"total_cost_usd": cost, "billed_cost_usd": cost, "used_cost_usd": round(cost - wasted, 4),
                "wasted_cost_usd": wasted}
    return {"total_cost_usd": calls["billed_cost_usd"], **calls}


@dataclass(frozen=True)
class TypicalCost:
    """The mean billed cost of ``count`` finished tasks alike."""

    per_task: float
    count: int


def typical_cost(root: str | os.PathLike, provenance: Mapping[str, Any]) -> TypicalCost | None:
    """What the finished tasks of the folder ``root`` whose provenance has every ``provenance`` value
    (JSON paths such as ``$.parameters.size``; None matches an absent field) were billed on average;
    None when there is none. Costs booked from an estimate (provenance ``cost_estimated``) are left
    out, and one billed at a discount (``price_multiplier``) counts at its full price. Read only."""
    path = Path(root) / LEDGER_NAME
    if not path.is_file():
        return None
    matches = "".join(" AND json_extract(provenance, ?) IS ?" for _ in provenance)
    args = [item for pair in provenance.items() for item in pair]
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        count, total = db.execute(
            "SELECT COUNT(*), TOTAL(cost / COALESCE(json_extract(provenance, '$.price_multiplier'), 1)) FROM tasks "
            "WHERE status = 'done' AND healed = 0 AND json_extract(provenance, '$.cost_estimated') IS NULL" + matches,
            args,
        ).fetchone()
    return TypicalCost(total / count, count) if count else None


def unpriced_images(ledger: Ledger) -> dict[str, Any]:
    """How many finished images were billed at a price nobody published (provenance ``cost_unknown``)
    and by which models: their money is in no cost figure."""
    found = ledger.flagged("cost_unknown")
    return {"unpriced_images": sum(found.values()), "unpriced_models": list(found)}


def write_processing_stats(ledger: Ledger, path: str | os.PathLike,
                           extra: Callable[[Ledger], dict[str, Any]] | None = None) -> Path:
    """The stats file, with a pipeline's ``extra`` fields."""
    return atomic_write_json(path, {**processing_stats(ledger), **(extra(ledger) if extra else {})})


def write_generation_state(ledger: Ledger, path: str | os.PathLike) -> Path:
    """Write the seed's ``generation_state.json`` atomically, streaming the completed keys."""
    with atomic_writer(path, "w") as out:
        out.write('{\n  "completed_samples": [')
        for index, key in enumerate(ledger.keys("done")):
            out.write(("," if index else "") + "\n    " + json.dumps(key, ensure_ascii=False))
        out.write('\n  ],\n  "failed_samples": ')
        out.write(json.dumps(ledger.failures(), ensure_ascii=False))
        out.write(f',\n  "last_chunk_index": {ledger.last_finished_seq() // SEED_CHUNK_SIZE}')
        out.write(f',\n  "timestamp": {json.dumps(datetime.now(timezone.utc).isoformat())}\n}}\n')
    return Path(path)
