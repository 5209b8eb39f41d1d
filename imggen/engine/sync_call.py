"""Calling a coroutine from synchronous code (the seed's synchronous APIs), also from inside a running event loop (a notebook cell).

With no loop running it is ``asyncio.run``. Inside a running loop (Jupyter runs one) the
coroutine gets a private loop on a worker thread and the caller blocks until it is done, which
avoids patching the loop (nest_asyncio) and works the same on every kernel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Result = TypeVar("Result")


def run_sync(make: Callable[[], Awaitable[Result]]) -> Result:
    """Run the coroutine ``make()`` to completion and return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(make))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="imggen-sync") as worker:
        return worker.submit(asyncio.run, _await(make)).result()


async def _await(make: Callable[[], Awaitable[Result]]) -> Result:
    return await make()
