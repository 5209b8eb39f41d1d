"""Where a training set's files go: the actor's folder, its round folders, and the names in them.

Folder of one actor (``work_dir/{user_id}/{actor_id}/``, :func:`job_root`)::

    ledger.sqlite, ...                    the engine's ledger of the training images and its views, its
                                          grids, which image got which tile and the hash of every tile
                                          made into one (:mod:`.tile_book`), the place in the description
                                          pool (:mod:`.descriptions`), and every paid Replicate
                                          prediction (:mod:`~imggen.backends.replicate_predictions`)
    grids/grid{n}.{ext}                   the grid images (their tasks: the ledger's grids table)
    upscales/upscale-{grid}-{tile}.{ext}  the upscaled tiles
    captions/                             the vision model's caption of each tile (see :mod:`.captions`)
    roundN/                               round N > 0 of the set: the same layout (see :func:`choose_run_folder`)

Stored (see :mod:`imggen.storage.stores`): ``training-imageN.{ext}``, its caption ``training-imageN.txt`` beside it,
and ``metadata.jsonl``. A debug folder gets copies: ``grid{n}.{ext}`` and ``training-imageN.{ext}``.
"""

from __future__ import annotations

import os
from pathlib import Path

from imggen.engine.ledger import recorded_rounds
from imggen.engine.rounds import Round, choose_round
from imggen.storage.paths import safe_path

WORK_DIR = Path("trainset-output")  # where the actors' folders go unless told
GRIDS = "grids"  # the grids' folder, and their table in the ledger
OLD_GRID_LEDGER = Path(GRIDS, "ledger.sqlite")  # where the grids were kept before they joined the run's ledger
SCOPE = "training set"  # the one scope of rounds in an actor's run folder
STAGES = {"draw": ("drawing", "grid"), "judge": ("judging", "grid"), "upscale": ("upscaling", "tile"),
          "upload": ("uploading", "image")}  # what the displays say the run is busy with (engine.stages)


def job_root(work_dir: str | os.PathLike, user_id: str, actor_id: str) -> Path:
    """The run folder of one actor; the untrusted ids are sanitized."""
    return safe_path(work_dir, user_id, actor_id)


def choose_run_folder(root: Path, settings: dict, *, new_round: bool) -> tuple[Path, Round]:
    """The run folder of the round this run works in (``root`` for round 0, ``root/roundN`` after)
    and the round; raises :class:`~imggen.engine.rounds.SettingsChanged` if the settings differ."""
    numbers = [0, *(int(path.name.removeprefix("round")) for path in root.glob("round*")
                    if path.is_dir() and path.name.removeprefix("round").isdigit())]
    recorded = {number: recorded_rounds(round_folder(root, number)).get(SCOPE) for number in numbers}
    latest = max(number for number in numbers if number == 0 or recorded[number])  # one never started is none
    this_round = choose_round(f"the training set of {root}", recorded[latest], settings, new_round=new_round)
    return round_folder(root, this_round.number), this_round


def round_folder(root: Path, number: int) -> Path:
    return root if number == 0 else root / f"round{number}"


def grid_file(number: int, extension: str) -> str:
    """The name of grid ``number`` in ``grids/`` and in the debug folder."""
    return f"grid{number}.{extension}"


def upscale_file(tile_key: str, extension: str) -> str:
    """Where the upscale of a tile is kept, relative to the run folder."""
    return f"upscales/{tile_key}.{extension}"


def stored_name(image_key: str, extension: str) -> str:
    """The stored name of a training image (also its debug copy's)."""
    return f"{image_key}.{extension}"
