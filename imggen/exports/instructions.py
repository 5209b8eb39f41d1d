"""The instruction images' rows: one per image in ``{dataset}/{planning_model}/{model}/{question_id}/img_{i}.png``.

Columns besides the common ones: ``instruction`` (the same text as ``prompt``), ``planning_model``,
``question_id``, ``instruction_index``, ``references`` (the conditioning images), ``source`` (the
results.jsonl line) and ``round``. A regenerated image (``--no_skip_existing``) is exported once,
as its latest round.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from .rows import ExportRow, Reading, common_columns, finished_rows, ledger_records

ROUND_MARK = "#round"


def read(root: Path) -> Reading:
    latest: dict[str, dict] = {}
    for record in ledger_records(root):  # plan order: a later round replaces the earlier ones
        latest[record["key"].split(ROUND_MARK)[0]] = record

    def to_row(record: dict) -> ExportRow:
        image_path, _, round_number = record["key"].partition(ROUND_MARK)
        parts = PurePosixPath(image_path).parts
        dataset, planning_model, model, question_id, image = parts
        payload, provenance = record["payload"], record["provenance"] or {}
        columns = common_columns(record, prompt=payload["prompt"], dataset=dataset,
                                 model=provenance.get("model") or model, seed=payload.get("seed"))
        columns.update(instruction=payload["prompt"], planning_model=planning_model, question_id=question_id,
                       instruction_index=int(image.removeprefix("img_").removesuffix(".png")),
                       references=list(payload.get("references") or []), source=payload.get("source"),
                       round=int(round_number or 0))
        return ExportRow(image_path, "__".join(parts), columns)

    return finished_rows("instructions", root, latest.values(), to_row)

