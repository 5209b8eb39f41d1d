"""The same worker pool on a Ray cluster: one actor per GPU (``num_gpus=1``), each loading its model once.

``ray_pool(...)`` joins the cluster named by ``RAY_ADDRESS`` (or one already initialised in this
process), else starts a local Ray, and shuts down only a Ray it started. Ray gives each GPU actor
its own ``CUDA_VISIBLE_DEVICES``, so inside an actor the device is ``cuda:0``. With
``device="cpu"`` the actors ask for no GPU (one CPU each), which is how the tests run it.

Every node must have the package installed and see the same paths (checkpoint, inputs and the
output root on a shared filesystem): actors read reference images and write the images themselves.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import logging
import os
import socket
from typing import AsyncIterator, Callable

from ..engine.errors import CannotStart
from .pool import WorkerDied, WorkerPool
from .worker_side import HandlerFactory, call_handler, prepare_worker_environment

log = logging.getLogger("imggen.distributed")


class ModelActor:
    """A Ray actor holding one loaded handler. Load errors are kept and reported by :meth:`ready`."""

    def __init__(self, factory: HandlerFactory, device: str, threads: int | None) -> None:
        self.handler, self.load_error = None, None
        prepare_worker_environment()
        try:
            self.handler = factory(device=device, threads=threads)
        except Exception as error:  # noqa: BLE001 - reported to the driver, which decides
            self.load_error = f"{type(error).__name__}: {error}"

    def ready(self) -> str | None:
        return self.load_error

    def run(self, payloads: list) -> list:
        reply: concurrent.futures.Future = concurrent.futures.Future()
        call_handler(self.handler, payloads, reply.set_result)
        return reply.result()


class RayWorker:
    """The driver's end of one actor."""

    def __init__(self, actor_class, name: str, factory: HandlerFactory, device: str, threads: int | None) -> None:
        import ray

        self._ray = ray
        self.name = name
        self.actor = actor_class.remote(factory, device, threads)

    async def ready(self) -> None:
        load_error = await self._call(self.actor.ready.remote(), loading=True)
        if load_error:
            raise WorkerDied(load_error, loading=True)

    async def run(self, payloads: list) -> list:
        return await self._call(self.actor.run.remote(payloads), loading=False)

    async def close(self) -> None:
        self._ray.kill(self.actor)

    async def _call(self, ref, *, loading: bool):
        try:
            return await ref
        except self._ray.exceptions.RayActorError as error:
            raise WorkerDied(str(error).strip().splitlines()[0], loading=loading) from None


def _connect(ray) -> bool:
    """Join RAY_ADDRESS or an initialised Ray, else start a local one; True if this call started it."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        _check_answers(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError) as error:
        if address is None:
            raise
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        hint = "" if os.environ.get("RAY_AUTH_MODE") == "token" else (
            "; if it asks jobs for a token (`ray start` does where ~/.ray/auth_token exists), set "
            "RAY_AUTH_MODE=token here, with the head's token (RAY_AUTH_TOKEN, or its ~/.ray/auth_token)")
        raise CannotStart(f"cannot join the Ray cluster at RAY_ADDRESS={address}: {first_line}{hint}") from error
    log.info("joined Ray at %s", address or "a new local instance")
    return True


def _check_answers(address: str, timeout_s: float = 10) -> None:
    """A ``host:port`` address must answer before Ray is asked to join it: Ray waits on one that does
    not for many minutes."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():  # auto, or a ray:// client address: Ray's to resolve
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise CannotStart(f"no Ray cluster answers at RAY_ADDRESS={address} ({error}): start its head with "
                          "`ray start --head`, or unset RAY_ADDRESS to start a Ray on this machine") from None


@contextlib.asynccontextmanager
async def ray_pool(
    factory: HandlerFactory,
    *,
    device: str | None,
    num_gpus: int,
    batch_size: int = 1,
    max_restarts: int | None = None,
    on_status: Callable[[str], None] = lambda message: None,
) -> AsyncIterator[WorkerPool]:
    """A pool of Ray actors: one per cluster GPU (or ``num_gpus`` of them), or ``num_gpus`` CPU actors;
    ``on_status`` hears of their loading (see :class:`~.pool.WorkerPool`)."""
    import ray

    started_here = _connect(ray)
    try:
        cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
        device = device or ("cuda" if cluster_gpus else "cpu")
        if device == "cpu":
            count, gpus_each, actor_device, threads = max(num_gpus, 1), 0, "cpu", 1
        else:
            if cluster_gpus == 0 or num_gpus > cluster_gpus:
                raise CannotStart(f"asked for {num_gpus if num_gpus > 0 else 'all'} GPU(s); the Ray cluster has {cluster_gpus}")
            count, gpus_each, actor_device, threads = (cluster_gpus if num_gpus < 0 else num_gpus), 1, "cuda:0", None
        actor_class = ray.remote(ModelActor).options(num_gpus=gpus_each, num_cpus=1)
        serial = itertools.count()

        def launch(index: int) -> RayWorker:
            return RayWorker(actor_class, f"Ray actor {index} ({actor_device}) #{next(serial)}", factory,
                             actor_device, threads)

        # One batch at a time per actor: Ray runs an actor call it has queued even when ray.cancel
        # reports it cancelled (Ray 2.60), so a batch waiting in an actor's inbox could not be given
        # back on Pause or Stop. The actor waits a round trip between batches instead.
        async with WorkerPool(launch, count, batch_size=batch_size, pipeline_depth=1, max_restarts=max_restarts,
                              describe="Ray actor", on_status=on_status,
                              slow_load_hint="an actor waits until the cluster has a GPU free for it (see `ray status`); "
                              "the others generate meanwhile") as pool:
            yield pool
    finally:
        if started_here:
            ray.shutdown()
