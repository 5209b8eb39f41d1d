"""The style matrix's rows: one per drawn (sample, style), from the ledger in the output folder.

Columns besides the common ones: ``sample_id``, ``style``, ``text`` (the sample's text), and from
the provenance ``revised_prompt`` (dall-e-3) and ``parameters`` (JSON: size, quality, steps, ...).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from .rows import ExportRow, Reading, common_columns, finished_rows, ledger_records


def read(root: Path) -> Reading:
    def to_row(record: dict) -> ExportRow:
        payload, provenance = record["payload"], record["provenance"] or {}
        parameters = provenance.get("parameters") or {}
        stored = record["outputs"][0]  # the by-style copy
        columns = common_columns(record, prompt=payload["prompt"], dataset=payload["dataset"],
                                 model=provenance.get("model") or payload.get("model"), seed=parameters.get("seed"))
        columns.update(sample_id=payload["sample_id"], style=payload["style"], text=payload.get("text"),
                       revised_prompt=provenance.get("revised_prompt"),
                       parameters=json.dumps(parameters, sort_keys=True) if parameters else None)
        return ExportRow(stored, PurePosixPath(stored).name, columns, caption=payload["prompt"])

    return finished_rows("styles", root, ledger_records(root), to_row)
