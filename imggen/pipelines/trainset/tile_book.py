"""Which training image got which tile, which tiles are never used again, and the tiles made into
training images, by perceptual hash (:class:`KeptTiles`), in the run folder's ledger (tables
``tiles`` and ``kept_tiles``), each change committed before the image goes on with its tile.

A tile is refused when its upscale was refused for good or it repeats a tile already kept for the
actor; the image that had it takes another. Two tiles look alike when both their structure and
their colours are within a threshold of bits (:class:`~imggen.images.hashes.TileHash`): the rule the
hash judge applies inside one grid, here applied to every tile about to become a training image,
against the tiles kept for the actor in any grid of any run, before its upscale, so a duplicate is
never upscaled or paid for. Earlier versions kept these in ``grids/tile_assignments.json`` and
``kept_tiles.json``: a run folder that has them has them moved in once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from imggen.engine.ledger import LEDGER_NAME
from imggen.engine.sqlite_book import SqliteBook
from imggen.images.hashes import DEFAULT_DUP_THRESHOLD, TileHash
from imggen.storage.moved_in import move_in_once

from .layout import GRIDS

OLD_ASSIGNMENTS = Path(GRIDS, "tile_assignments.json")
OLD_KEPT_TILES = Path("kept_tiles.json")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tiles (
    grid INTEGER NOT NULL,
    tile INTEGER NOT NULL,
    slot INTEGER,  -- the training image it was given to
    refused INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (grid, tile)
);
CREATE TABLE IF NOT EXISTS kept_tiles (
    key TEXT PRIMARY KEY,  -- the tile's key, upscale-{grid}-{tile}
    hash TEXT NOT NULL  -- its perceptual hashes (imggen.images.hashes.TileHash as text)
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
        move_in_once(root / OLD_ASSIGNMENTS, self._move_in_assignments)
        move_in_once(root / OLD_KEPT_TILES, self._move_in_kept)

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

    def kept(self) -> dict[str, str]:
        """Each kept tile's key and hash (as text)."""
        return dict(self._db.execute("SELECT key, hash FROM kept_tiles"))

    def keep(self, key: str, tile_hash: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO kept_tiles (key, hash) VALUES (?, ?)", (key, tile_hash))

    def unkeep(self, key: str) -> None:
        self._db.execute("DELETE FROM kept_tiles WHERE key = ?", (key,))

    def _move_in_assignments(self, state: dict) -> None:
        self.assign([(int(slot), TileRef(*ref)) for slot, ref in state.get("assigned", {}).items()])
        for ref in state.get("rejected", []):
            self.refuse(TileRef(*ref))

    def _move_in_kept(self, state: dict) -> None:
        for key, text in state["tiles"].items():
            self.keep(str(key), str(text))


class KeptTiles:
    """The tiles made (or being made) into training images of one actor, by hash, kept in ``book``."""

    def __init__(self, book: TileBook, *, threshold: int = DEFAULT_DUP_THRESHOLD) -> None:
        if threshold < 0:
            raise ValueError("the duplicate threshold is a number of bits, at least 0")
        self._book = book
        self.threshold = threshold
        self._hashes = {key: TileHash.from_text(text) for key, text in book.kept().items()}

    async def admit(self, key: str, tile_png: bytes) -> str | None:
        """Keep tile ``key`` unless it looks like a kept one; returns the key of the kept look-alike, else None."""
        if key in self._hashes:
            return None
        tile_hash = await asyncio.to_thread(TileHash.of_png, tile_png)
        # no await from here to the write: two tiles admitted at once cannot both pass as unique
        twin = next((kept for kept, other in self._hashes.items() if tile_hash.distance(other) <= self.threshold),
                    None)
        if twin is None:
            self._hashes[key] = tile_hash
            self._book.keep(key, str(tile_hash))
        return twin

    def forget(self, key: str) -> None:
        """Tile ``key`` will not be a training image after all (its upscale was refused)."""
        if self._hashes.pop(key, None) is not None:
            self._book.unkeep(key)
