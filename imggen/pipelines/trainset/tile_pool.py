"""Serving unique tiles to the training-image slots of a run, drawing grids only as they are needed.

Each slot of the run asks for a tile with :meth:`TilePool.claim`. The tiles are the items of an
engine :class:`~imggen.engine.supply.Supply` whose batches are the grids (made by
:class:`~.grids.GridMaker`): the supply decides when a grid starts (``max_grids`` attempts per run,
``grid_concurrency`` in flight) and what follows how it ended. This module keeps what is the
training set's own: a grid's tiles are the ones its judge kept, less those taken or refused (kept
in the ledger by :mod:`.tile_book`, so a rerun keeps each slot's tile and reuses the unclaimed
tiles of earlier runs' grids); and a grid's price is billed to the first of its training images
that is finished.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from imggen.engine.events import Event
from imggen.engine.supply import Supply
from imggen.images.hashes import DEFAULT_DUP_THRESHOLD
from imggen.images.tiles import tile_pngs

from .grids import DrawnGrid, GridMaker
from .plan import grid_key
from .tile_book import KeptTiles, TileBook, TileRef


@dataclass(frozen=True)
class ClaimedTile:
    ref: TileRef
    image: bytes  # the tile as PNG


class TilePool:
    def __init__(self, maker: GridMaker, *, max_grids: int, dup_threshold: int = DEFAULT_DUP_THRESHOLD) -> None:
        self._dup_threshold = dup_threshold
        self.maker = maker  # draws the grids; its records hold each grid's subjects and drawer
        self._max_grids = max_grids  # grid attempts per run (the seed's max_generation_attempts)
        self._grids: dict[int, DrawnGrid] = {}  # drawn and judged, in any run
        self._tile_images: dict[int, asyncio.Future[list[bytes]]] = {}  # grid number -> its tiles as PNG
        self._unbilled: dict[int, float] = {}
        self._assigned: dict[int, TileRef] = {}  # slot -> its tile
        self._rejected: set[TileRef] = set()  # tiles whose upscale was refused

    # -- life cycle (open inside the run's folder lock) -------------------------------------
    def open(self) -> None:
        self._book = TileBook(self.maker.root.parent)
        self._assigned, self._rejected = self._book.read()
        self.kept = KeptTiles(self._book, threshold=self._dup_threshold)  # tiles made into images, by hash
        drawn, failed = self.maker.open()
        self._supply: Supply[TileRef] = Supply(
            self._grid, lane=self.maker.lane, batch_size=self.maker.grid**2, max_batches=self._max_grids,
            used={grid.number for grid in drawn} | failed, on_serve=self._served, describe=grid_key,
            exhausted=lambda attempts: f"no unique tile left after {attempts} grid attempts in this run "
            "(max_generation_attempts); raise it and rerun to continue")
        for grid in drawn:
            self._supply.add(self._add_grid(grid))

    async def close(self, *, cancel: bool) -> None:
        """Finish (or, with ``cancel``, abandon) the grids in flight, then close the grids' and tiles' tables.

        Abandoned Replicate grids stay in the run's book of predictions and are collected by the next run.
        """
        await self._supply.close(cancel=cancel)
        self.maker.close()
        self._book.close()

    @property
    def grids_generated(self) -> int:
        return len(self._grids)

    def drawn_grids(self) -> list[DrawnGrid]:
        return [self._grids[number] for number in sorted(self._grids)]

    def __call__(self, event: Event) -> None:
        """A reporter: when the run starts stopping, waiting slots give up (they stay pending)."""
        self._supply(event)

    def withdraw_waiters(self) -> None:
        """The slots waiting for a tile give up for now (Pause, Stop; see :meth:`Supply.withdraw_waiters`)."""
        self._supply.withdraw_waiters()

    # -- what slots call ----------------------------------------------------------------------
    async def claim(self, slot: int) -> ClaimedTile:
        """The tile for ``slot``: the one it had before, or the next unique tile (drawing grids as needed)."""
        ref = self._assigned.get(slot)
        if ref is None or ref in self._rejected:
            ref = await self._supply.claim(slot)
        tiles = self._tile_images.get(ref.grid)
        if tiles is None:  # a grid of an earlier run: split once, off the event loop, for all its slots
            drawn = self._grids[ref.grid]
            tiles = self._tile_images[ref.grid] = asyncio.ensure_future(
                asyncio.to_thread(lambda: tile_pngs(drawn.path.read_bytes(), drawn.grid)))
        return ClaimedTile(ref, (await tiles)[ref.tile])

    def bill(self, ref: TileRef) -> float:
        """The price of ``ref``'s grid the first time one of its tiles is finished, else 0."""
        return self._unbilled.pop(ref.grid, 0.0)

    def reject(self, slot: int, ref: TileRef) -> None:
        """Never use ``ref`` again (its upscale was refused, or it repeats a kept tile); ``slot`` gets another."""
        self._rejected.add(ref)
        self._assigned.pop(slot, None)
        self._book.refuse(ref)

    # -- the supply's batches -----------------------------------------------------------------
    async def _grid(self, number: int) -> list[TileRef]:
        """Grid ``number``, drawn (or read) and judged: the tiles it adds."""
        made = await self.maker.make(number)
        self._unbilled[number] = made.cost
        if made.tiles is not None:
            self._tile_images[number] = made.tiles
        return self._add_grid(made.drawn)

    def _served(self, given: list[tuple[int, TileRef]]) -> None:
        self._assigned.update(given)
        self._book.assign(given)

    def _add_grid(self, grid: DrawnGrid) -> list[TileRef]:
        """Keep ``grid``; its judge's tiles that no slot has and none refused."""
        self._grids[grid.number] = grid
        taken = set(self._assigned.values()) | self._rejected
        return [ref for ref in (TileRef(grid.number, t) for t in grid.unique_tiles) if ref not in taken]
