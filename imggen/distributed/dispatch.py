"""The shared queue between the run's tasks and the workers: submit an item, get a future; a free
worker takes the oldest item plus up to ``batch_size - 1`` more that can share its model call.

Items that can share one call have the same *group* (for FLUX.2 klein: the same reference images
and size, since a batch shares its references). Everything runs on the run's event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any, Hashable


@dataclass
class Item:
    payload: Any
    group: Hashable
    future: asyncio.Future


class Dispatcher:
    """A first-in, first-out queue of work items that hands them out in batches of one group."""

    def __init__(self, batch_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size
        self._items: deque[Item] = deque()
        self._arrived = asyncio.Event()
        self._closed_with: BaseException | None = None

    def submit(self, payload: Any, group: Hashable = None) -> asyncio.Future:
        """Queue one item; the future gets its result (or its error) from the worker that runs it."""
        future = asyncio.get_running_loop().create_future()
        if self._closed_with is not None:
            future.set_exception(self._closed_with)
            return future
        self._items.append(Item(payload, group, future))
        self._arrived.set()
        return future

    async def next_batch(self) -> list[Item]:
        """Wait for work; return the oldest item and up to ``batch_size - 1`` queued items of its group."""
        while True:
            batch = self.take_batch()
            if batch:
                return batch
            self._arrived.clear()
            await self._arrived.wait()

    def take_batch(self) -> list[Item]:
        """The next batch if any item is queued, else an empty list (never waits)."""
        self._drop_cancelled()
        if not self._items:
            return []
        first = self._items.popleft()
        batch = [first]
        if self.batch_size > 1:
            for item in list(self._items):
                if len(batch) == self.batch_size:
                    break
                if item.group == first.group and not item.future.done():
                    self._items.remove(item)
                    batch.append(item)
        return batch

    def close(self, error: BaseException) -> None:
        """Fail every queued item and every later submission with ``error`` (no worker is left)."""
        self._closed_with = error
        self.fail_queued(error)

    def fail_queued(self, error: BaseException) -> None:
        """Fail every item queued now with ``error``; later submissions queue as usual."""
        while self._items:
            item = self._items.popleft()
            if not item.future.done():
                item.future.set_exception(error)

    def _drop_cancelled(self) -> None:
        while self._items and self._items[0].future.done():  # cancelled by an immediate stop
            self._items.popleft()
