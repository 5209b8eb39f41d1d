"""The Hugging Face ``imagefolder``: ``DIR/train/`` with the images and ``metadata.jsonl``.

The images sit flat in ``train/`` (one folder, named for the split, so ``load_dataset`` never reads
a style or dataset called ``test`` or ``eval`` as a split of its own). The files an image was made
from (an instruction image's references) are bundled in ``DIR/references/``, outside the split, and
its ``references`` column names them relative to ``DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .rows import ExportRow, Reading
from .target import place, unique

SPLIT = "train"
METADATA = "metadata.jsonl"
REFERENCES = "references"


def imagefolder_writer(*, copy: bool):
    """What writes ``reading`` as an imagefolder into a new folder (see :func:`~.target.write_export`)."""
    def write(reading: Reading, folder: Path) -> None:
        split = folder / SPLIT
        split.mkdir()
        taken, bundled = {METADATA}, BundledFiles(folder / REFERENCES, copy=copy)
        with open(split / METADATA, "w", encoding="utf-8") as metadata:
            for row in reading.rows:
                name = unique(row.file_name, taken)
                place(reading.path(row), split / name, copy=copy)
                metadata.write(json.dumps({"file_name": name, **columns_of(row, bundled)}, ensure_ascii=False) + "\n")
    return write


def columns_of(row: ExportRow, bundled: "BundledFiles") -> dict:
    """The row's columns, its references as the bundled files' names (relative to the export)."""
    if not row.references:
        return row.columns
    return {**row.columns, REFERENCES: [bundled.add(Path(path)) for path in row.references]}


class BundledFiles:
    """Files rows were made from, each placed once in ``folder`` and named relative to its parent."""

    def __init__(self, folder: Path, *, copy: bool) -> None:
        self.folder = folder
        self.copy = copy
        self._names: dict[Path, str] = {}
        self._taken: set[str] = set()

    def add(self, path: Path) -> str | None:
        """The bundled name of ``path`` (None where the file is no longer on this machine)."""
        if not path.is_file():
            return None
        if path not in self._names:
            name = unique(path.name, self._taken)
            place(path, self.folder / name, copy=self.copy)
            self._names[path] = f"{self.folder.name}/{name}"
        return self._names[path]
