"""Model workers for local generation: one process per GPU on this machine, or one Ray actor per GPU on a cluster.

A :class:`~imggen.distributed.pool.WorkerPool` takes work items in the run's event loop and hands
them to whichever worker is free (dynamic balancing: a worker pulls its next batch when it finishes
one). Workers load their model once. The pool knows devices and models (one GPU per worker, the
CUDA memory settings, batching items that share one model call), not datasets or file layouts:
a worker runs a *handler factory* the pipeline provides, which decides what an item is (for the
instruction images: a batch of FLUX.2 klein images to render and write).
"""

from .pool import WorkerDied, WorkerPool
from .processes import local_pool, worker_devices

__all__ = ["WorkerDied", "WorkerPool", "local_pool", "worker_devices"]
