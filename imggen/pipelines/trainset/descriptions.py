"""Tile subjects for training-set grids: the description pool and each grid's turn through it.

The built-in pool (``imggen/data/tile_descriptions.json``) holds 63 subjects in 7 categories of 9;
a user's own file of the same shape replaces it. :func:`grid_subjects` gives a grid its subjects
so that none repeats until the whole pool has been used, mixing categories within a grid.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from imggen.storage.text_files import read_document


@dataclass(frozen=True)
class Description:
    """One tile subject and the category it belongs to."""

    category: str
    text: str


class DescriptionPool(tuple):
    """An ordered, non-empty tuple of :class:`Description`."""

    @classmethod
    def builtin(cls) -> "DescriptionPool":
        text = resources.files("imggen").joinpath("data", "tile_descriptions.json").read_text(encoding="utf-8")
        return cls.from_mapping(json.loads(text), source="imggen/data/tile_descriptions.json")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "DescriptionPool":
        """Read ``{"categories": {name: [subject, ...]}}`` (or the bare mapping) from a JSON file (a BOM is fine)."""
        path = Path(path)
        try:
            data = json.loads(read_document(path))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: cannot read a description pool: {error}") from None
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "descriptions") -> "DescriptionPool":
        categories = data.get("categories", data) if isinstance(data, Mapping) else None
        if not isinstance(categories, Mapping):
            raise ValueError(f"{source}: expected an object of categories, each a list of subjects")
        items = []
        for category, subjects in categories.items():
            if str(category).startswith("_"):
                continue
            if not isinstance(subjects, list) or not all(isinstance(s, str) and s.strip() for s in subjects):
                raise ValueError(f"{source}: category {category!r} must be a list of non-empty strings")
            items.extend(Description(str(category), subject.strip()) for subject in subjects)
        if not items:
            raise ValueError(f"{source}: the description pool is empty")
        return cls(items)

    @classmethod
    def load(cls, choice: "DescriptionPool | str | os.PathLike | Mapping | None") -> "DescriptionPool":
        """The built-in pool (None), a pool, a JSON file path, or a mapping of categories."""
        if choice is None:
            return cls.builtin()
        if isinstance(choice, DescriptionPool):
            return choice
        if isinstance(choice, Mapping):
            return cls.from_mapping(choice)
        return cls.from_file(choice)

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(item.category for item in self))


def grid_subjects(pool: DescriptionPool, number: int, per_grid: int) -> list[Description]:
    """The ``per_grid`` subjects of grid ``number`` (1-based) of a run folder.

    The grids walk the pool in turn, so no subject repeats until the whole pool has been used: each
    cycle through it alternates categories (shuffled within each category, differently every cycle),
    and a grid that runs past the end of a cycle goes on in the next one without repeating a subject
    of its own, while the pool is big enough. The walk is replayed from grid 1, so a grid's subjects
    depend only on its number: a rerun or a bigger target goes on where the earlier grids stopped.
    """
    orders: dict[int, list[int]] = {}
    cycle, used, chosen = 0, set(), []
    for _ in range(number):
        chosen = []
        while len(chosen) < per_grid:
            if cycle not in orders:
                orders[cycle] = _order(pool, cycle)
            fresh = [i for i in orders[cycle] if i not in used and (i not in chosen or len(pool) < per_grid)]
            if not fresh:
                cycle, used = cycle + 1, set()
                continue
            chosen.append(fresh[0])
            used.add(fresh[0])
    return [pool[i] for i in chosen]


def _order(pool: DescriptionPool, cycle: int) -> list[int]:
    """The pool's indices in the order of ``cycle``: one subject of each category in turn."""
    by_category: dict[str, list[int]] = {}
    for index, item in enumerate(pool):
        by_category.setdefault(item.category, []).append(index)
    for category, indices in by_category.items():
        random.Random(f"{cycle}|{category}").shuffle(indices)
    lanes = list(by_category.values())
    return [lane[row] for row in range(max(map(len, lanes))) for lane in lanes if row < len(lane)]
