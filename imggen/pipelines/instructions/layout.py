"""Where the instruction images go, and the per-folder ``stats.json`` in the seed's shape.

```
{output_root}/{dataset}/{planning_model}/{generation_model}/{question_id}/img_{i}.png
{output_root}/{dataset}/{planning_model}/{generation_model}/stats.json   and  run.log
{output_root}/run.log            the global log (every run appends to it)
{output_root}/ledger.sqlite      the engine's ledger (resume, each folder's round and settings), .imggen/ its views
```

Every name in a path (dataset, planning model, question id) goes through ``safe_name``, so a
record cannot write outside the output root; plain names stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ...storage import paths

STATE_FOLDER = ".imggen"  # generation_state.json, processing_stats.json
RUN_LOG = "run.log"
STATS_FILE = "stats.json"
# Files the job keeps in the output root; no dataset may be named like them.
RESERVED_NAMES = frozenset({RUN_LOG, "ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"})


def image_name(index: int) -> str:
    return f"img_{index}.png"


@dataclass(frozen=True, order=True)
class Group:
    """One (dataset, planning model, generation model) folder: its own stats.json and run.log."""

    dataset: str
    planning_model: str
    generation_model: str

    @property
    def prefix(self) -> str:
        """The folder relative to the output root, with sanitized names; every task key starts with it."""
        return "/".join(paths.safe_name(name) for name in (self.dataset, self.planning_model, self.generation_model))

    def folder(self, root: Path) -> Path:
        return paths.safe_path(root, self.dataset, self.planning_model, self.generation_model)

    def question_folder(self, root: Path, question_id: object) -> Path:
        return paths.safe_path(root, self.dataset, self.planning_model, self.generation_model, str(question_id))

    def image_path(self, question_id: object, index: int) -> str:
        """An image's path relative to the output root."""
        return f"{self.prefix}/{paths.safe_name(str(question_id))}/{image_name(index)}"


def generation_stats(images_per_question: Iterable[tuple[object, int]]) -> dict:
    """The seed's stats.json: for every distinct image count N, how many questions got N images,
    their share, and their ids (in input order)."""
    by_count: dict[int, list] = {}
    for question_id, count in images_per_question:
        by_count.setdefault(count, []).append(question_id)
    total = sum(len(ids) for ids in by_count.values())
    summary: dict[str, float] = {}
    for count in sorted(by_count):
        summary[f"number of {count} generation"] = len(by_count[count])
        summary[f"ratio of {count} generation"] = len(by_count[count]) / total
    return {"summary": summary, **{f"{count} generation": by_count[count] for count in sorted(by_count)}}
