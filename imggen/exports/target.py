"""Where an export goes: a folder built beside its target and renamed into place, never over someone else's.

An earlier export of the same output folder in the target is replaced; one of another folder (or of
an unknown one) only with ``force``; any other non-empty target is refused. Which folder an export
came from is kept in ``TARGET/.imggen-export.json`` as a digest of its path (the path itself stays on
this machine; ``datasets`` and trainers skip files whose name starts with a dot). Images are hard
links to the pipeline's files where the file system allows, else copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from .rows import CannotExport, Reading

MARKER = ".imggen-export.json"  # which output folder the export came from, its pipeline and format


def write_export(reading: Reading, target: str | os.PathLike, write: Callable[[Reading, Path], None], *,
                 kind: str, force: bool = False) -> Path:
    """Build the export of ``reading`` with ``write(reading, folder)`` and put it at ``target``."""
    target = Path(target)
    earlier = _marker(target)
    if target.exists() and not earlier and (not target.is_dir() or any(target.iterdir())):
        raise CannotExport(f"{target} exists and is not an earlier export; choose an empty or new folder")
    source = {"source": _digest(reading.root), "pipeline": reading.pipeline, "format": kind}
    if earlier and not force and earlier.get("source") != source["source"]:
        came_from = earlier.get("pipeline")
        raise CannotExport(f"{target} holds an export of another output folder"
                           f"{f' ({came_from})' if came_from else ''}; add --force to replace it, or choose "
                           "another folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f".{target.name}.{uuid.uuid4().hex}.building")
    try:
        building.mkdir()
        write(reading, building)
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
    return target


def place(source: Path, destination: Path, *, copy: bool) -> None:
    """Put the file ``source`` at ``destination``: a hard link, or a copy (asked for, or across file systems)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            os.link(source, destination)
            return
        except OSError:  # another file system, or none with hard links
            pass
    shutil.copy2(source, destination)


def unique(name: str, taken: set[str]) -> str:
    """``name``, or ``stem-2.ext``, ``stem-3.ext``... when it is taken; the name returned is taken from now on."""
    stem, dot, suffix = name.rpartition(".")
    stem, dot, suffix = (stem, dot, suffix) if dot else (name, "", "")
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{stem}-{number}{dot}{suffix}"
    taken.add(candidate)
    return candidate


def _digest(root: Path) -> str:
    return hashlib.sha256(str(Path(root).resolve()).encode("utf-8")).hexdigest()[:16]


def _marker(target: Path) -> dict:
    """The marker of an earlier export at ``target`` ({} for none; an export made before the marker,
    a ``train/metadata.jsonl`` without one, is an export of an unknown folder)."""
    try:
        return json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"source": None} if (target / "train" / "metadata.jsonl").is_file() else {}
