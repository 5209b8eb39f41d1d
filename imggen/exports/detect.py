"""Which pipeline wrote an output folder, told from its files, and the reader for it.

* instruction images: the output root (``generated_images/``) with ``ledger.sqlite`` and ``.imggen/``
  (looked for first: a dataset there may have any name, ``grids`` or ``images`` too);
* style matrix: ``ledger.sqlite`` with ``images/by_style/`` or ``code/generation_state.json``;
* training set: a run folder ``{user_id}/{actor_id}/`` with ``ledger.sqlite`` and ``grids/ledger.sqlite``.
"""

from __future__ import annotations

import os
from pathlib import Path

from imggen.engine.ledger import LEDGER_NAME, has_table
from imggen.pipelines.instructions.layout import STATE_FOLDER
from imggen.pipelines.styles.layout import IMAGES, STATE_FILE
from imggen.pipelines.trainset.layout import GRIDS, OLD_GRID_LEDGER

from . import instructions, styles, trainset
from .rows import CannotExport, Reading

READERS = {"styles": styles.read, "instructions": instructions.read, "trainset": trainset.read}


def detect_pipeline(output: str | os.PathLike) -> str:
    """``styles``, ``instructions`` or ``trainset``; :class:`CannotExport` for any other folder."""
    root = Path(output)
    if not (root / LEDGER_NAME).is_file():
        runs = sorted(str(path.parent) for path in root.glob(f"*/*/{LEDGER_NAME}")) if root.is_dir() else []
        hint = f"; training-set run folders under it: {', '.join(runs)}" if runs else ""
        raise CannotExport(f"{root} has no {LEDGER_NAME}: not an output folder of imggen styles, "
                           f"instructions or trainset{hint}")
    if (root / STATE_FOLDER).is_dir():
        return "instructions"
    if (root / IMAGES / "by_style").is_dir() or (root / STATE_FILE).is_file():
        return "styles"
    if has_table(root, GRIDS) or (root / OLD_GRID_LEDGER).is_file():
        return "trainset"
    raise CannotExport(f"{root} has a ledger but none of the files of a styles, instructions or trainset run")


def read_output(output: str | os.PathLike) -> Reading:
    """The finished images of ``output`` as rows, read by its pipeline's reader."""
    return READERS[detect_pipeline(output)](Path(output))
