"""What an export reads from a ledger: one row per finished image, with its file and its columns.

Every pipeline's rows start with the same columns (``prompt``, ``dataset``, ``model``, ``seed``,
``cost``) and add their own; tasks that are not done, or whose file is gone, are counted, not
exported. A row holds no local path: an export is made to be moved to another machine.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Callable, Iterable

from imggen.engine.ledger import DONE, TASKS, Ledger, has_table
from imggen.pipelines.styles.layout import resolve  # a path the ledger records, under its root (any pipeline)


class CannotExport(Exception):
    """The folder cannot be exported as asked; the message says why."""


@dataclass(frozen=True)
class ExportRow:
    source: str  # the image, relative to the output root as the ledger records it
    file_name: str  # its name in the export (no folders)
    columns: dict[str, Any]
    caption: str | None = None  # the text a trainer reads beside the image (``{stem}.txt``)
    references: tuple[str, ...] = ()  # files the image was made from, bundled with it (absolute paths)


@dataclass
class Reading:
    """A folder's finished images as rows, and how many tasks were left out (by status)."""

    pipeline: str
    root: Path
    rows: list[ExportRow] = field(default_factory=list)
    left_out: collections.Counter = field(default_factory=collections.Counter)

    def path(self, row: ExportRow) -> Path:
        """The image of ``row`` on disk (never outside the output root)."""
        return resolve(self.root, row.source)


def ledger_records(root: str | os.PathLike, table: str = TASKS) -> list[dict[str, Any]]:
    """Every task of ``table`` in the ledger in ``root``, in plan order; an empty list where there is none."""
    if not has_table(root, table):
        return []
    with Ledger(root, table=table) as ledger:
        return list(ledger.records())


def finished_rows(pipeline: str, root: Path, records: Iterable[dict[str, Any]],
                  to_row: Callable[[dict[str, Any]], ExportRow]) -> Reading:
    """The rows of the done tasks whose image is on disk; the others counted in ``left_out``."""
    reading = Reading(pipeline, root)
    for record in records:
        if record["status"] != DONE or not record["outputs"]:
            reading.left_out[record["status"]] += 1
            continue
        row = to_row(record)
        if not reading.path(row).is_file():
            reading.left_out["missing file"] += 1
            continue
        reading.rows.append(row)
    return reading


def common_columns(record: dict[str, Any], *, prompt: str | None, dataset: str | None, model: str | None,
                   seed: int | None) -> dict[str, Any]:
    """The columns every pipeline's rows start with; ``cost`` is what the ledger booked (US dollars)."""
    return {"prompt": prompt, "dataset": dataset, "model": model, "seed": seed, "cost": float(record["cost"])}


def portable_source(source: str | None) -> str | None:
    """``planner/results.jsonl:3`` for ``/home/me/predicted_instructions/planner/results.jsonl:3``: the
    input line without the folders of this machine."""
    if not source:
        return source
    path, colon, line = source.rpartition(":") if source.rpartition(":")[2].isdigit() else (source, "", "")
    return "/".join(PurePath(path).parts[-2:]) + colon + line
