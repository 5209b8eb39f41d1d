"""Near-duplicate control across grids and runs: no two training images of one actor are the same picture.

Two tiles look alike when both their structure (pHash) and their colours (colour hash) are within
a threshold of bits: the rule the hash judge applies inside one grid, here applied to every tile
about to become a training image against the tiles already kept for the actor, in any grid of
any run. :class:`KeptTiles` admits a tile before it is upscaled, so a duplicate is never upscaled
or paid for, and keeps the hash of every admitted tile in ``kept_tiles.json`` of the run folder,
written before the tile goes on, so the next run compares against it too.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from imggen.images.hashes import DEFAULT_DUP_THRESHOLD, TileHash
from imggen.storage.atomic import atomic_write_json


class KeptTiles:
    """The tiles made (or being made) into training images of one actor, by hash, kept in ``path``."""

    def __init__(self, path: str | os.PathLike, *, threshold: int = DEFAULT_DUP_THRESHOLD) -> None:
        if threshold < 0:
            raise ValueError("the duplicate threshold is a number of bits, at least 0")
        self.path = Path(path)
        self.threshold = threshold
        self._hashes: dict[str, TileHash] = self._read()

    async def admit(self, key: str, tile_png: bytes) -> str | None:
        """Keep tile ``key`` unless it looks like a kept one; returns the key of the kept look-alike, else None."""
        if key in self._hashes:
            return None
        tile_hash = await asyncio.to_thread(TileHash.of_png, tile_png)
        # no await from here to the save: two tiles admitted at once cannot both pass as unique
        twin = next((kept for kept, other in self._hashes.items() if tile_hash.distance(other) <= self.threshold),
                    None)
        if twin is None:
            self._hashes[key] = tile_hash
            self._save()
        return twin

    def forget(self, key: str) -> None:
        """Tile ``key`` will not be a training image after all (its upscale was refused)."""
        if self._hashes.pop(key, None) is not None:
            self._save()

    def _read(self) -> dict[str, TileHash]:
        try:
            kept = json.loads(self.path.read_text(encoding="utf-8"))["tiles"]
            return {str(key): TileHash.from_text(str(text)) for key, text in kept.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def _save(self) -> None:
        atomic_write_json(self.path, {"threshold": self.threshold,
                                      "tiles": {key: str(value) for key, value in self._hashes.items()}})
