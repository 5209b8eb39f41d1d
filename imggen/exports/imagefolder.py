"""Write rows as a Hugging Face ``imagefolder``: ``DIR/train/`` with the images and ``metadata.jsonl``.

The images sit flat in ``train/`` (one folder, named for the split, so ``load_dataset`` never reads
a style or dataset called ``test`` or ``eval`` as a split of its own) and are hard links to the
pipeline's files where the file system allows, else copies. The export is built beside ``DIR`` and
renamed into place. An earlier export of the same output folder in ``DIR`` is replaced; one of
another folder (or of an unknown one) only with ``force``; any other non-empty ``DIR`` is refused.
Which folder an export came from is kept in ``DIR/.imggen-export.json`` as a digest of its path
(the path itself stays on this machine; ``datasets`` skips files whose name starts with a dot).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from .rows import CannotExport, Reading

SPLIT = "train"
METADATA = "metadata.jsonl"
MARKER = ".imggen-export.json"  # which output folder the export came from, and its pipeline


def write_imagefolder(reading: Reading, target: str | os.PathLike, *, copy: bool = False,
                      force: bool = False) -> Path:
    """Export ``reading`` into ``target``; returns the metadata file."""
    target = Path(target)
    earlier_export = (target / SPLIT / METADATA).is_file()
    if target.exists() and not earlier_export and (not target.is_dir() or any(target.iterdir())):
        raise CannotExport(f"{target} exists and is not an earlier export; choose an empty or new folder")
    source = {"source": _digest(reading.root), "pipeline": reading.pipeline}
    if earlier_export and not force and _marker(target).get("source") != source["source"]:
        came_from = _marker(target).get("pipeline")
        raise CannotExport(f"{target} holds an export of another output folder"
                           f"{f' ({came_from})' if came_from else ''}; add --force to replace it, or choose "
                           "another folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f".{target.name}.{uuid.uuid4().hex}.building")
    try:
        _write(reading, building / SPLIT, copy=copy)
        (building / MARKER).write_text(json.dumps(source) + "\n", encoding="utf-8")
        if target.exists():
            replaced = target.with_name(f".{target.name}.{uuid.uuid4().hex}.replaced")
            os.replace(target, replaced)
            os.replace(building, target)
            shutil.rmtree(replaced)
        else:
            os.replace(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target / SPLIT / METADATA


def _digest(root: Path) -> str:
    return hashlib.sha256(str(Path(root).resolve()).encode("utf-8")).hexdigest()[:16]


def _marker(target: Path) -> dict:
    try:
        return json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # an export made before the marker: its source is unknown


def _write(reading: Reading, folder: Path, *, copy: bool) -> None:
    folder.mkdir(parents=True)
    taken: set[str] = {METADATA}
    with open(folder / METADATA, "w", encoding="utf-8") as metadata:
        for row in reading.rows:
            name = _unique(row.file_name, taken)
            _place(reading.path(row), folder / name, copy=copy)
            metadata.write(json.dumps({"file_name": name, **row.columns}, ensure_ascii=False) + "\n")


def _unique(name: str, taken: set[str]) -> str:
    stem, dot, suffix = name.rpartition(".")
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{stem}-{number}{dot}{suffix}"
    taken.add(candidate)
    return candidate


def _place(source: Path, destination: Path, *, copy: bool) -> None:
    if not copy:
        try:
            os.link(source, destination)
            return
        except OSError:  # another file system, or none with hard links
            pass
    shutil.copy2(source, destination)
