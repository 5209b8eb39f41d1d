"""Judges that pick the unique tiles of a grid: GPT vision through the OpenAI backend, or perceptual hashing.

A judge answers the 0-based, row-major indices of the tiles worth keeping. :func:`judge_grid`
applies the seed's rule on top: when a judge finds none, the corner and centre tiles are used.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from .duplicates import DEFAULT_DUP_THRESHOLD, TileHash
from .tiles import fallback_tiles, split_tiles


class TileJudge(Protocol):
    name: str
    settings: dict  # what defines the tiles it keeps (a run's settings; see imggen/engine/rounds.py)

    async def unique_tiles(self, grid_image: bytes, grid: int) -> list[int]:
        """Indices of the tiles of ``grid_image`` that are not duplicates."""


@dataclass(frozen=True)
class Verdict:
    tiles: list[int]
    fallback: bool  # the judge found none; corners and centre were taken


async def judge_grid(judge: TileJudge, grid_image: bytes, grid: int) -> Verdict:
    tiles = await judge.unique_tiles(grid_image, grid)
    return Verdict(tiles, False) if tiles else Verdict(fallback_tiles(grid), True)


class GptTileJudge:
    """Asks a vision model (OpenAI chat) for a JSON list of unique tiles."""

    name = "gpt"

    def __init__(self, backend, *, model: str | None = None) -> None:
        """``backend`` is an :class:`~imggen.backends.openai_images.OpenAIImageBackend`."""
        self._backend = backend
        self._model = model
        self.settings = {"judge": self.name, "vision model": model}

    async def unique_tiles(self, grid_image: bytes, grid: int) -> list[int]:
        options = {"model": self._model} if self._model else {}
        return await self._backend.judge_unique_tiles(grid_image, grid, **options)


class HashTileJudge:
    """Keeps the first tile of every group of look-alikes, compared by perceptual hash; needs no key.

    Two tiles look alike when both their structure (pHash) and their colours (colour hash) are
    within ``max_distance`` bits (see :class:`~.duplicates.TileHash`), so a recoloured copy and a
    re-framed same-coloured tile both count as different.
    """

    name = "hash"

    def __init__(self, *, max_distance: int = DEFAULT_DUP_THRESHOLD) -> None:
        self.max_distance = max_distance
        self.settings = {"judge": self.name, "hash distance": max_distance}

    async def unique_tiles(self, grid_image: bytes, grid: int) -> list[int]:
        return await asyncio.to_thread(self._unique, grid_image, grid)

    def _unique(self, grid_image: bytes, grid: int) -> list[int]:
        with Image.open(io.BytesIO(grid_image)) as picture:
            hashes = [TileHash.of(tile) for tile in split_tiles(picture.convert("RGB"), grid)]
        kept: list[int] = []
        for index, tile_hash in enumerate(hashes):
            if not any(tile_hash.distance(hashes[k]) <= self.max_distance for k in kept):
                kept.append(index)
        return kept
