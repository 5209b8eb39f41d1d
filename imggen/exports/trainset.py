"""The training set's rows: one per training image of a run folder ``{user_id}/{actor_id}/``.

The image exported is the upscaled tile kept in the run folder (the same bytes that went to S3 or
the local store). Columns besides the common ones (``prompt`` and ``seed`` are the grid's,
``model`` its drawer's, ``dataset`` is ``{user_id}/{actor_id}``): ``user_id``, ``actor_id``,
``slot``, ``grid``, ``tile``, the tile's ``description`` and ``category``, ``upscaler``,
``drawer``, ``judge``, the stored ``url`` (None for a local folder: the image is in the export)
and ``text``, the image's caption (its ``training-imageN.txt``, the column caption trainers read).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from imggen.pipelines.trainset.layout import GRIDS, OLD_GRID_LEDGER

from .rows import ExportRow, Reading, common_columns, finished_rows, ledger_records


def read(root: Path) -> Reading:
    recorded = ledger_records(root, GRIDS) or ledger_records(root / OLD_GRID_LEDGER.parent)  # a folder not rerun since
    grids = {record["key"]: record for record in recorded}
    user_id, actor_id = root.parent.name, root.name

    def to_row(record: dict) -> ExportRow:
        found = record["provenance"] or {}
        grid = grids.get(f"grid-{found.get('grid')}") or {"payload": {}, "provenance": {}}
        payload, drawn = grid["payload"], grid["provenance"] or {}
        subjects = payload.get("subjects") or []
        tile = found.get("tile")
        subject = subjects[tile] if isinstance(tile, int) and 0 <= tile < len(subjects) else {}
        source = record["outputs"][0]
        columns = common_columns(record, prompt=payload.get("prompt"), dataset=f"{user_id}/{actor_id}",
                                 model=drawn.get("model") or drawn.get("drawer"), seed=payload.get("seed"))
        columns.update(user_id=user_id, actor_id=actor_id, slot=record["payload"].get("slot"), grid=found.get("grid"),
                       tile=tile, description=subject.get("text"), category=subject.get("category"),
                       upscaler=found.get("upscaler"), drawer=drawn.get("drawer"), judge=drawn.get("judge"),
                       url=remote_url(found.get("url")), text=found.get("caption"))
        return ExportRow(source, f"{record['key']}{PurePosixPath(source).suffix}", columns,
                         caption=found.get("caption") or subject.get("text"))

    return finished_rows("trainset", root, ledger_records(root), to_row)


def remote_url(url: str | None) -> str | None:
    """Where the image is stored, when that is somewhere else than this machine's disk."""
    return None if url is None or url.startswith("file:") else url
