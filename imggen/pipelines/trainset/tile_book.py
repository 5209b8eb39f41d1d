"""Which training image got which tile, and which tiles are never used again, in the run folder's
ledger (table ``tiles``), each change committed before the image goes on with its tile.

A tile is refused when its upscale was refused for good or it repeats a tile already kept for the
actor; the image that had it takes another. An earlier version kept this in
``grids/tile_assignments.json``: a run folder that has one has it moved in once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from imggen.engine.ledger import LEDGER_NAME
from imggen.engine.sqlite_book import SqliteBook

from .layout import GRIDS

OLD_ASSIGNMENTS = Path(GRIDS, "tile_assignments.json")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tiles (
    grid INTEGER NOT NULL,
    tile INTEGER NOT NULL,
    slot INTEGER,  -- the training image it was given to
    refused INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (grid, tile)
);
"""


@dataclass(frozen=True)
class TileRef:
    """Tile ``tile`` (0-based, row-major) of grid number ``grid``."""

    grid: int
    tile: int

    @property
    def key(self) -> str:
        return f"upscale-{self.grid}-{self.tile}"


class TileBook(SqliteBook):
    """The tiles table of the run folder ``root``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / LEDGER_NAME, _SCHEMA, pragmas=("journal_mode=WAL", "synchronous=NORMAL"))
        self._adopt(root / OLD_ASSIGNMENTS)

    def read(self) -> tuple[dict[int, TileRef], set[TileRef]]:
        """Each image's tile, and the tiles refused."""
        assigned, refused = {}, set()
        for grid, tile, slot, is_refused in self._db.execute("SELECT grid, tile, slot, refused FROM tiles"):
            if is_refused:
                refused.add(TileRef(grid, tile))
            elif slot is not None:
                assigned[slot] = TileRef(grid, tile)
        return assigned, refused

    def assign(self, given: list[tuple[int, TileRef]]) -> None:
        """Give each (slot, tile) pair's tile to its slot, all at once."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO tiles (grid, tile, slot) VALUES (?, ?, ?) "
                "ON CONFLICT(grid, tile) DO UPDATE SET slot = excluded.slot",
                [(ref.grid, ref.tile, slot) for slot, ref in given])

    def refuse(self, ref: TileRef) -> None:
        """Never use ``ref`` again."""
        self._db.execute("INSERT INTO tiles (grid, tile, refused) VALUES (?, ?, 1) "
                         "ON CONFLICT(grid, tile) DO UPDATE SET refused = 1", (ref.grid, ref.tile))

    def _adopt(self, path: Path) -> None:
        if not path.is_file():
            return
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
        self.assign([(int(slot), TileRef(*ref)) for slot, ref in state.get("assigned", {}).items()])
        for ref in state.get("rejected", []):
            self.refuse(TileRef(*ref))
        path.rename(path.with_name(path.name + ".moved"))
