"""Folders LoRA and DreamBooth trainers read as they are.

``kohya``: kohya-ss sd-scripts' DreamBooth layout, ``DIR/{repeats}_{name}/`` with each image and its
caption beside it as ``{stem}.txt`` (sd-scripts skips a folder whose name does not start with the
repeat count, and looks for ``.caption`` unless told ``--caption_extension .txt``); ai-toolkit reads
the same folder (its ``folder_path``, captions as ``.txt``). ``dreambooth``: diffusers' DreamBooth
scripts open every file of ``--instance_data_dir`` as an image, so ``DIR/instance/`` holds the images and
nothing else (the export's marker stays beside it); the prompt is the script's ``--instance_prompt``.
"""

from __future__ import annotations

import re
from pathlib import Path

from .rows import Reading
from .target import place, unique

INSTANCE = "instance"  # the DreamBooth export's folder of images
DEFAULT_REPEATS = 10  # how often sd-scripts shows each image per epoch: a usual start for a set of ~20


def concept_name(reading: Reading) -> str:
    """The folder's name after the repeat count: the actor of a training set, else the pipeline."""
    name = reading.root.name if reading.pipeline == "trainset" else reading.pipeline
    return re.sub(r"[^\w-]+", "-", name).strip("-") or "images"


def kohya_writer(*, copy: bool, repeats: int = DEFAULT_REPEATS):
    """What writes ``reading`` as an sd-scripts folder (see :func:`~.target.write_export`)."""
    def write(reading: Reading, folder: Path) -> None:
        images = folder / f"{repeats}_{concept_name(reading)}"
        images.mkdir()
        taken: set[str] = set()
        for row in reading.rows:
            name = unique(row.file_name, taken)
            place(reading.path(row), images / name, copy=copy)
            (images / f"{Path(name).stem}.txt").write_text(row.caption or "", encoding="utf-8")
    return write


def dreambooth_writer(*, copy: bool):
    """What writes ``reading``'s images, and nothing else, into ``instance/`` (see :func:`~.target.write_export`)."""
    def write(reading: Reading, folder: Path) -> None:
        taken: set[str] = set()
        for row in reading.rows:
            place(reading.path(row), folder / INSTANCE / unique(row.file_name, taken), copy=copy)
    return write
