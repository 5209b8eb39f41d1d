"""What runs inside a model worker, a local process or a Ray actor: its environment, a batch handed to
its handler, and the wire format of the results.

Every worker sets ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` before its handler is built,
unless the user set the allocator's configuration: the varying batch shapes of a long run then do
not fragment GPU memory into out-of-memory errors. It gives tqdm a thread lock: diffusers' bars,
even hidden ones, take tqdm's lock, whose default is a semaphore that a worker killed at a stop
leaks, and Python then warns of the leak on the user's terminal.

The wire format of results is plain tuples, because exceptions with keyword-only arguments do not
survive pickling: ``("ok", value)`` or ``("error", kind, message)``.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from typing import Any, Callable

from tqdm import tqdm

from ..engine.errors import ErrorKind, TaskError, as_task_error

# payloads -> one value or TaskError per payload, or a concurrent Future of that list (results that are
# still being saved while the worker starts its next batch)
Handler = Callable[[list], "list | concurrent.futures.Future"]
# factory(device=..., threads=...) -> handler, run in the worker; a handler may have close() to finish deferred work
HandlerFactory = Callable[..., Handler]


def prepare_worker_environment() -> None:
    """The worker's environment defaults, where the user has not set them (before CUDA starts), and tqdm's lock."""
    if "PYTORCH_ALLOC_CONF" not in os.environ:  # torch's newer name for the same setting
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    tqdm.set_lock(threading.RLock())


def call_handler(handler: Handler, payloads: list, reply: Callable[[list[tuple]], None]) -> None:
    """Run ``handler`` on a batch inside a worker; ``reply`` gets the wire results, at once or, for
    deferred results, from the thread that completes them."""
    try:
        results = handler(payloads)
    except Exception as error:
        reply(to_wire(error, payloads))
        return
    if isinstance(results, concurrent.futures.Future):
        results.add_done_callback(lambda done: reply(to_wire(done.exception() or done.result(), payloads)))
    else:
        reply(to_wire(results, payloads))


def to_wire(results: list | BaseException, payloads: list) -> list[tuple]:
    """A handler's results (or the error that ended its batch) as the wire results, one per payload."""
    if isinstance(results, BaseException):
        results = [as_task_error(results)] * len(payloads)
    return [
        ("error", result.kind.value, result.message) if isinstance(result, TaskError) else ("ok", result)
        for result in results
    ]


def from_wire(result: tuple) -> tuple[Any, TaskError | None]:
    """A wire result as (value, None) or (None, its TaskError)."""
    if result[0] == "ok":
        return result[1], None
    return None, TaskError(ErrorKind(result[1]), result[2])
