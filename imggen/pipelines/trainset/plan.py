"""What a training set is to make, before anything is sent: the options (every default of the job,
defined here once), the training-image tasks with their stable keys, and each grid's payload.

The run's tasks are the training images ``training-image1`` ... ``training-imageN``; the grids behind
them are drawn on demand (:mod:`.tile_pool`), each ``grid-{n}`` with its subjects, prompt and seed
fixed by :func:`grid_payload` the first time it is planned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from imggen.backends.replicate_catalog import replicate_create_limit_per_min
from imggen.engine.concurrency import AUTO
from imggen.engine.lanes import CEILING, checked_concurrency
from imggen.engine.seeds import image_seed
from imggen.engine.tasks import Task
from imggen.images.hashes import DEFAULT_DUP_THRESHOLD

from .descriptions import DescriptionPool, grid_subjects
from .prompts import build_grid_prompt


@dataclass(frozen=True)
class TrainsetOptions:
    """Everything a run takes besides its parts; the CLI's flags and the seed API's defaults come from here."""

    target: int = 20  # training images wanted
    grid: int = 3  # tiles per side of each grid
    max_grids: int = 10  # grid attempts per run
    grid_concurrency: int | str = AUTO  # grids drawn at once: a number, or "auto" (see .lanes)
    upscale_concurrency: int | str = AUTO  # upscales in flight at once: a number, or "auto"
    rpm: float | None = None  # Replicate creates per minute: the account's limit (None: Replicate's documented one)
    descriptions: DescriptionPool | str | os.PathLike | None = None  # None: the built-in 63
    budget: float | None = None  # USD cap for this run
    allow_unpriced: bool = False  # run with a budget although a model's price is unknown (it counts $0 there)
    retry_failed: bool = False  # also retry training images that failed permanently before
    trigger_word: str | None = None  # starts every caption
    dup_threshold: int = DEFAULT_DUP_THRESHOLD  # hash bits within which a tile repeats a kept one
    new_round: bool = False  # make the set again, also with other settings than the actor's (a new round)

    def __post_init__(self) -> None:
        if self.target < 1:
            raise ValueError("the target must be at least one image")
        if self.grid < 2:
            raise ValueError("a grid needs at least 2 tiles per side")
        if self.max_grids < 1:
            raise ValueError("max_grids must be at least 1")
        checked_concurrency("grid_concurrency", self.grid_concurrency)
        checked_concurrency("upscale_concurrency", self.upscale_concurrency)
        if self.rpm is not None and not self.rpm > 0:
            raise ValueError("rpm must be positive")

    @property
    def creates_per_min(self) -> float:
        """The create pace: the user's ``rpm``, else Replicate's documented limit. Replicate sends no
        limit header, and accounts differ (lower while credit is low, higher on request), so the
        user's figure, when given, is the one that knows the account."""
        return self.rpm if self.rpm is not None else replicate_create_limit_per_min()

    @property
    def slots(self) -> int:
        """Training images in flight: a pinned upscale count, else as many as auto may ever upscale."""
        pinned = self.upscale_concurrency if self.upscale_concurrency != AUTO else CEILING
        return min(self.target, pinned)


DEFAULTS = TrainsetOptions()


def plan_trainset(options: TrainsetOptions) -> list[Task]:
    """The training-image tasks, in slot order (their grids are planned when first needed)."""
    return [Task(slot_key(slot), {"slot": slot}) for slot in range(1, options.target + 1)]


def slot_key(slot: int) -> str:
    return f"training-image{slot}"


def grid_key(number: int) -> str:
    return f"grid-{number}"


def grid_number(key: str) -> int:
    return int(key.removeprefix("grid-"))


def grid_payload(number: int, shape: int, pool: DescriptionPool, round_number: int = 0) -> dict:
    """A new grid's task payload: ``shape`` tiles per side, its subjects from ``pool``, the prompt, the seed."""
    subjects = grid_subjects(pool, number, shape * shape)
    return {
        "grid": shape,
        "seed": grid_seed(number, round_number),
        "prompt": build_grid_prompt(subjects, shape),
        "subjects": [{"category": s.category, "text": s.text} for s in subjects],
    }


def grid_seed(number: int, round_number: int) -> int:
    """Grid ``number``'s seed in its round (a later round starts its subjects over, and its grids are
    new pictures), within 31 bits: a 32-bit signed int for any model."""
    return image_seed("grid", number, round_number=round_number, bits=31)