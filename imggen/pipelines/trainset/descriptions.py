"""Tile subjects for training-set grids: the description pool and the per-actor rotation through it.

The built-in pool (``imggen/data/tile_descriptions.json``) holds 63 subjects in 7 categories of 9;
a user's own file of the same shape replaces it. :class:`DescriptionRotation` hands out subjects
so that none repeats until the whole pool has been used, mixing categories within a grid, and
keeps its place in the run folder's ledger (table ``description_rotation``) so the rotation
continues across runs for the same actor. An earlier version's ``description_rotation.json`` is
moved in once.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from imggen.engine.ledger import LEDGER_NAME
from imggen.engine.sqlite_book import SqliteBook
from imggen.storage.moved_in import move_in_once
from imggen.storage.text_files import read_document

OLD_ROTATION = "description_rotation.json"
_TABLE = "CREATE TABLE IF NOT EXISTS description_rotation (cycle INTEGER NOT NULL, used TEXT NOT NULL)"


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


class DescriptionRotation:
    """Draws subjects without repeats until the pool is used up, remembering its place in the ledger
    of the run folder ``root``.

    Each cycle walks the pool in an order that alternates categories (shuffled within each
    category, differently every cycle). A draw that runs past the end of a cycle continues in the
    next one without repeating a subject already in the same draw, while the pool is big enough.
    """

    def __init__(self, pool: DescriptionPool, root: str | os.PathLike) -> None:
        self.pool = pool
        self.root = Path(root)
        self._state: tuple[int, set[int]] | None = None  # read at the first draw, inside the run's folder lock

    @property
    def cycle(self) -> int:
        """The cycle through the pool that the next draw starts in."""
        return self._place()[0]

    @property
    def used(self) -> frozenset[int]:
        """The subjects (indices in the pool) of that cycle already handed out."""
        return frozenset(self._place()[1])

    def draw(self, count: int) -> list[Description]:
        """``count`` subjects, saved as used before they are returned."""
        cycle, used = self._place()
        used = set(used)  # the place moves on only once it is saved
        chosen: list[int] = []
        while len(chosen) < count:
            fresh = [i for i in self._order(cycle) if i not in used]
            fresh = [i for i in fresh if i not in chosen] if len(self.pool) >= count else fresh
            if not fresh:
                cycle, used = cycle + 1, set()
                continue
            chosen.append(fresh[0])
            used.add(fresh[0])
        self._state = (cycle, used)
        self._save_state(cycle, used)
        return [self.pool[i] for i in chosen]

    def _place(self) -> tuple[int, set[int]]:
        """The cycle and the subjects used in it, read from the ledger at the first draw."""
        if self._state is None:
            self._state = self._read_state()
        return self._state

    def _order(self, cycle: int) -> list[int]:
        by_category: dict[str, list[int]] = {}
        for index, item in enumerate(self.pool):
            by_category.setdefault(item.category, []).append(index)
        for category, indices in by_category.items():
            random.Random(f"{cycle}|{category}").shuffle(indices)
        lanes = list(by_category.values())
        return [lane[row] for row in range(max(map(len, lanes))) for lane in lanes if row < len(lane)]

    def _save_state(self, cycle: int, used: set[int] | list[int]) -> None:
        with RotationBook(self.root) as book:
            book.save(cycle, used)

    def _read_state(self) -> tuple[int, set[int]]:
        move_in_once(self.root / OLD_ROTATION,  # where an earlier version kept the place
                     lambda old: self._save_state(int(old["cycle"]), [int(i) for i in old["used"]]))
        with RotationBook(self.root) as book:
            cycle, used = book.read()
        return cycle, {i for i in used if 0 <= i < len(self.pool)}


class RotationBook(SqliteBook):
    """The rotation's place in the ledger of the run folder ``root``: one row, the cycle and the
    subjects used in it."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root / LEDGER_NAME, _TABLE)

    def read(self) -> tuple[int, list[int]]:
        row = self._db.execute("SELECT cycle, used FROM description_rotation").fetchone()
        return (int(row[0]), [int(i) for i in json.loads(row[1])]) if row else (0, [])

    def save(self, cycle: int, used: set[int] | list[int]) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM description_rotation")
            self._db.execute("INSERT INTO description_rotation (cycle, used) VALUES (?, ?)",
                             (cycle, json.dumps(sorted(used))))
