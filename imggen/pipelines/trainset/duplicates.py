"""Near-duplicate control across grids and runs: no two training images of one actor are the same picture.

Two tiles look alike when both their structure and their colours are within a threshold of bits
(:class:`~imggen.images.hashes.TileHash`): the rule the hash judge applies inside one grid, here
applied to every tile about to become a training image against the tiles already kept for the
actor, in any grid of any run. :class:`KeptTiles` admits a tile before it is upscaled, so a
duplicate is never upscaled or paid for, and keeps the hash of every admitted tile in the run
folder's ledger (:mod:`.tile_book`), written before the tile goes on, so the next run compares
against it too.
"""

from __future__ import annotations

import asyncio

from imggen.images.hashes import DEFAULT_DUP_THRESHOLD, TileHash

from .tile_book import TileBook


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
