"""Judges that pick the unique tiles of a grid: GPT vision through the OpenAI backend, or perceptual hashing.

A judge answers the 0-based, row-major indices of the tiles worth keeping; :func:`judge_grid` adds
the seed's rule when it finds none (the corners and the centre). The GPT judge's answers are paid: each is booked in the run
folder's ledger under the grid's key (:mod:`.vision_calls`) before it is used.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from imggen.images.hashes import DEFAULT_DUP_THRESHOLD, TileHash
from imggen.images.tiles import split_tiles

from .openai_models import DEFAULT_VISION_MODEL
from .openai_vision import parse_tile_answer, tile_question
from .vision_calls import VisionCalls


class TileJudge(Protocol):
    name: str
    settings: dict  # what defines the tiles it keeps (a run's settings; see imggen/engine/rounds.py)
    vision_model: str | None  # the paid vision model it asks, None for a free judge

    async def unique_tiles(self, grid_image: bytes, grid: int, *, key: str, calls: VisionCalls) -> list[int]:
        """Indices of the tiles of ``grid_image`` that are not duplicates; a paid answer is booked in ``calls``."""


class GptTileJudge:
    """Asks a vision model (OpenAI chat) for a JSON list of unique tiles."""

    name = "gpt"

    def __init__(self, backend, *, model: str | None = None) -> None:
        """``backend`` is an :class:`~imggen.backends.openai_images.OpenAIImageBackend`."""
        self._backend = backend
        self.vision_model = model or DEFAULT_VISION_MODEL
        self.settings = {"judge": self.name, "vision model": model}

    async def unique_tiles(self, grid_image: bytes, grid: int, *, key: str, calls: VisionCalls) -> list[int]:
        answer = await calls.ask(lambda: self._backend.ask_about_image(
            grid_image, tile_question(grid), model=self.vision_model, what="tile judging"))
        return calls.take(key, answer, lambda text: parse_tile_answer(text, grid * grid))


class HashTileJudge:
    """Keeps the first tile of every group of look-alikes, compared by perceptual hash; needs no key.

    Two tiles look alike when both their structure (pHash) and their colours (colour hash) are
    within ``max_distance`` bits (see :class:`~imggen.images.hashes.TileHash`), so a recoloured copy and a
    re-framed same-coloured tile both count as different.
    """

    name = "hash"
    vision_model = None

    def __init__(self, *, max_distance: int = DEFAULT_DUP_THRESHOLD) -> None:
        self.max_distance = max_distance
        self.settings = {"judge": self.name, "hash distance": max_distance}

    async def unique_tiles(self, grid_image: bytes, grid: int, *, key: str, calls: VisionCalls) -> list[int]:
        """Free: nothing is booked."""
        return await asyncio.to_thread(self._unique, grid_image, grid)

    def _unique(self, grid_image: bytes, grid: int) -> list[int]:
        with Image.open(io.BytesIO(grid_image)) as picture:
            hashes = [TileHash.of(tile) for tile in split_tiles(picture.convert("RGB"), grid)]
        kept: list[int] = []
        for index, tile_hash in enumerate(hashes):
            if not any(tile_hash.distance(hashes[k]) <= self.max_distance for k in kept):
                kept.append(index)
        return kept


@dataclass(frozen=True)
class Verdict:
    """A judge's answer on one grid: the tiles to keep."""

    tiles: list[int]
    fallback: bool  # the judge found none; corners and centre were taken
    cost: float = 0.0  # US dollars of the priced answers it took (earlier unreadable ones included)


async def judge_grid(judge: TileJudge, grid_image: bytes, grid: int, *, key: str, calls: VisionCalls) -> Verdict:
    """The verdict on grid ``key``: the tiles its judge kept, or (the seed's rule) corners and centre."""
    tiles = await judge.unique_tiles(grid_image, grid, key=key, calls=calls)
    cost = calls.bill(key)
    return Verdict(tiles, False, cost) if tiles else Verdict(fallback_tiles(grid), True, cost)


def fallback_tiles(grid: int) -> list[int]:
    """The four corners and the centre tile (distinct indices), used when a judge finds no unique tile."""
    last = grid - 1
    corners = [0, last, last * grid, grid * grid - 1]
    centre = (grid // 2) * grid + grid // 2
    return sorted(set(corners + [centre]))


def make_judge(choice: str, *, openai_backend=None, model: str | None = None) -> TileJudge:
    """``gpt`` (which needs ``openai_backend``) or ``hash``."""
    if choice == "gpt":
        if openai_backend is None:
            raise ValueError("the gpt judge needs an OpenAI backend")
        return GptTileJudge(openai_backend, model=model)
    if choice == "hash":
        return HashTileJudge()
    raise ValueError(f"unknown judge {choice!r}: choose gpt or hash")
