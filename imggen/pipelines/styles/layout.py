"""Where the style matrix puts its files, relative to the output root, and how an image is stored.

The seed's layout, with its places kept relative to the output root::

    OUTPUT/
      images/by_style/{style}/{dataset}_{sampleID}_{style}.png     the stored copy
      images/by_dataset/{dataset}/{dataset}_{sampleID}_{style}.png a hard link to it (a copy where
                                                                   the file system has no hard links)
      images/processing_stats.json                                 the seed's statistics
      images/metadata.jsonl                                        one line per image, for
                                                                   datasets.load_dataset("imagefolder")
      code/generation_state.json                                   the seed's resume state (a view)
      ledger.sqlite, run.log                                       the engine's ledger and log

Dataset, sample and style names come from user files and pass through
:func:`~imggen.storage.paths.safe_name` before they become path components (names made of letters,
digits, ``.``, ``_`` and ``-`` stay as they are), and every write goes through
:func:`~imggen.storage.paths.inside`, so nothing lands outside the output root. Each PNG carries
its provenance (prompt, style, dataset, sample id, model, parameters, revised prompt) as written
by :mod:`~imggen.storage.provenance`, plus the ``cost_usd`` it was billed, which a later run reads
to book an image a killed run wrote but never booked.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imggen.engine.ledger import Ledger
from imggen.engine.rounds import split_round
from imggen.engine.tasks import Task
from imggen.storage.atomic import atomic_write_bytes, atomic_writer, is_valid_image
from imggen.storage.paths import MAX_NAME_LENGTH, inside, safe_name
from imggen.storage.provenance import read_text_field

IMAGES = "images"
STATE_FILE = Path("code/generation_state.json")
STATS_FILE = Path("images/processing_stats.json")
METADATA_FILE = Path("images/metadata.jsonl")
METADATA_COLUMNS = ("dataset", "sample_id", "style", "text", "prompt", "model")


@dataclass(frozen=True)
class ImagePlace:
    """One image's key and its two places (POSIX paths relative to the output root)."""

    key: str
    by_style: str
    by_dataset: str

    @property
    def outputs(self) -> tuple[str, str]:
        return self.by_style, self.by_dataset


def image_place(dataset: str, sample_id: str, style: str) -> ImagePlace:
    """``{dataset}_{sampleID}_{style}.png`` under ``images/by_style/{style}`` and ``images/by_dataset/{dataset}``."""
    dataset_dir, style_dir = safe_name(dataset), safe_name(style)
    # Short enough that the name with its extension is still a safe name, kept as it is.
    stem = safe_name(f"{dataset_dir}_{safe_name(sample_id)}_{style_dir}", max_length=MAX_NAME_LENGTH - len(".png"))
    name = f"{stem}.png"
    return ImagePlace(
        key=stem,
        by_style=f"{IMAGES}/by_style/{style_dir}/{name}",
        by_dataset=f"{IMAGES}/by_dataset/{dataset_dir}/{name}",
    )


def resolve(root: str | os.PathLike, relative: str) -> Path:
    """An output path under ``root``; raises :class:`~imggen.storage.paths.UnsafePath` if it would escape."""
    return inside(root, *PurePosixPath(relative).parts)


COST_FIELD = "cost_usd"  # the text chunk with what the image was billed
KEY_FIELD = "key"  # the text chunk with the key of the task the image was made for (its round)


def paid_cost(path: Path) -> float:
    """What the stored image at ``path`` was billed, from its ``cost_usd`` chunk (0 if it has none)."""
    try:
        return float(read_text_field(path, COST_FIELD) or 0.0)
    except ValueError:
        return 0.0


def made_key(root: str | os.PathLike, relative: str) -> str | None:
    """The key the image at ``relative`` was made for, from its text chunk (read without decoding)."""
    return read_text_field(resolve(root, relative), KEY_FIELD)


def stored_for(root: str | os.PathLike, task: Task) -> bool:
    """Whether the by-style copy on disk is ``task``'s image: it decodes and, for a task of a later
    round (see :mod:`~imggen.engine.rounds`), it was made for that very key, not an earlier round."""
    if not is_valid_image(resolve(root, task.outputs[0])):
        return False
    return split_round(task.key)[1] == 0 or made_key(root, task.outputs[0]) == task.key


def made_for(root: str | os.PathLike, task: Task) -> bool:
    """Whether both of ``task``'s files on disk stand for its result (the by-dataset name may be missing)."""
    return stored_for(root, task) and is_valid_image(resolve(root, task.outputs[1]))


# -- storing -----------------------------------------------------------------------------------
def store_image(root: str | os.PathLike, place: ImagePlace, png: bytes) -> None:
    """Write the by-style copy atomically, then give it its by-dataset name."""
    stored = resolve(root, place.by_style)
    atomic_write_bytes(stored, png)
    link_by_dataset(root, place)


def link_by_dataset(root: str | os.PathLike, place: ImagePlace) -> None:
    """Make the by-dataset name point at the stored copy: a hard link, or a copy where links fail."""
    stored, linked = resolve(root, place.by_style), resolve(root, place.by_dataset)
    if linked.exists() and os.path.samefile(stored, linked):
        return
    linked.parent.mkdir(parents=True, exist_ok=True)
    temporary = linked.with_name(f".{linked.name}.{uuid.uuid4().hex}.link")
    try:
        os.link(stored, temporary)
    except OSError:  # no hard links here (some network and FAT file systems)
        atomic_write_bytes(linked, stored.read_bytes())
        return
    os.replace(temporary, linked)


# -- the metadata view -------------------------------------------------------------------------
def write_metadata(ledger: Ledger, root: str | os.PathLike) -> Path:
    """``images/metadata.jsonl``: one line per finished image, with its by-style file name relative
    to ``images/`` and the columns :data:`METADATA_COLUMNS` plus ``revised_prompt``."""
    path = Path(root) / METADATA_FILE
    latest = {split_round(key)[0]: key for key in ledger.keys("done")}  # in plan order: a later round replaces
    with atomic_writer(path, "w") as out:
        for key in latest.values():
            record = ledger.task(key)
            if not record or not record["outputs"]:
                continue
            payload, provenance = record["payload"], record["provenance"] or {}
            line = {"file_name": str(PurePosixPath(record["outputs"][0]).relative_to(IMAGES))}
            line.update({column: payload.get(column) for column in METADATA_COLUMNS})
            line["revised_prompt"] = provenance.get("revised_prompt")
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path
