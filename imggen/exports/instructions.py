"""The instruction images' rows: one per image in ``{dataset}/{planning_model}/{model}/{question_id}/img_{i}.png``.

Columns besides the common ones: ``instruction`` (the same text as ``prompt``), ``planning_model``,
``question_id``, ``instruction_index``, ``references`` (the conditioning images, bundled with the
export and named relative to it), ``source`` (the results.jsonl line, as ``planner/results.jsonl:N``)
and ``round``. A regenerated image (``--no_skip_existing``) is exported once,
as its latest round.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ..engine.rounds import latest_rounds, split_round
from .rows import ExportRow, Reading, common_columns, finished_rows, ledger_records, portable_source


def read(root: Path) -> Reading:
    def to_row(record: dict) -> ExportRow:
        image_path, round_number = split_round(record["key"])
        parts = PurePosixPath(image_path).parts
        dataset, planning_model, model, question_id, image = parts
        payload, provenance = record["payload"], record["provenance"] or {}
        columns = common_columns(record, prompt=payload["prompt"], dataset=dataset,
                                 model=provenance.get("model") or model, seed=payload.get("seed"))
        columns.update(instruction=payload["prompt"], planning_model=planning_model, question_id=question_id,
                       instruction_index=int(image.removeprefix("img_").removesuffix(".png")),
                       source=portable_source(payload.get("source")), round=round_number)
        return ExportRow(image_path, "__".join(parts), columns, caption=payload["prompt"],
                         references=tuple(payload.get("references") or ()))

    return finished_rows("instructions", root, latest_rounds(ledger_records(root)), to_row)

