"""A local emulator of Replicate's prediction API, for tests and offline rehearsal.

Serves ``POST /v1/models/{owner}/{name}/predictions`` (with ``Prefer: wait[=N]``),
``GET /v1/predictions/{id}``, ``POST /v1/predictions/{id}/cancel`` and the output files under
``/files/``, which expire (404); models, versions, the predictions list and uploads are
:mod:`.replicate_more_routes`. With ``tls`` it is served over HTTPS like the real service
(:mod:`.tls`), so the SDK hands back ``FileOutput`` objects as it does live. Predictions run through starting → processing → a terminal status on
a per-model latency; flux-kontext-pro draws a real grid derived from its input image and
topazlabs/image-upscale really enlarges. Errors use the API's problem-JSON bodies; the faults a
real server has (throttled creates, faulty polls, slow bodies) come from :mod:`.replicate_faults`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from imggen.backends.replicate_catalog import replicate_models
from imggen.emulators.openai_replies import DroppedConnection
from imggen.emulators.rate_window import SlidingWindow
from imggen.emulators.fault_plan import FaultRates
from imggen.emulators.replicate_faults import FaultDesk, ReplicateFaults, problem
from imggen.emulators.replicate_inputs import invalid_fields, validation_detail
from imggen.emulators.replicate_more_routes import MoreRoutes
from imggen.emulators.replicate_state import (
    OUTCOMES,
    EmulatedPrediction,
    EmulatorCounts,
    ReplicateEmulatorConfig,
    RequestRecord,
)
from imggen.emulators.replicate_worker import PredictionWorker
from imggen.emulators.tls import local_certificate, server_context

_PREFER = re.compile(r"^wait(=([1-9]|[1-9][0-9]|60))?$")
_JSON_BODY = web.RequestKey("json_body", object)  # the parsed request body, None when not JSON


class ReplicateEmulator:
    """A running emulator: its address, request log, counters, and the knobs tests turn."""

    def __init__(self, config: ReplicateEmulatorConfig) -> None:
        self.config = config
        self.base_url = ""
        self.requests: list[RequestRecord] = []
        self.counts = EmulatorCounts()
        self.predictions: dict[str, EmulatedPrediction] = {}
        self._worker = PredictionWorker(config, self.counts)
        self.grids = self._worker.grids  # how each grid was drawn, by prediction id
        self.files = self._worker.files  # output files, by path under /files/
        self.models = {ref: model for ref, model in replicate_models().items() if ref in config.behaviours}
        self.more = MoreRoutes(self)
        self._worker.local_files = self.more.uploaded  # an uploaded file is a model's input
        self.certificate: Path | None = None  # with tls: the PEM a client trusts (SSL_CERT_FILE)
        self._certificate_folder: tempfile.TemporaryDirectory | None = None
        limit = config.create_limit_per_min
        self._create_window = SlidingWindow(limit, config.create_window_s) if limit is not None else None
        self.faults = FaultDesk(config.faults)
        self._runner: web.AppRunner | None = None

    def script(self, model: str, *outcomes: str) -> None:
        """Make the next predictions of ``model`` end as ``outcomes`` (see ``OUTCOMES``), in order."""
        unknown = set(outcomes) - OUTCOMES
        if unknown:
            raise ValueError(f"unknown outcomes {sorted(unknown)}; choose from {sorted(OUTCOMES)}")
        self.config.behaviours[model].outcomes.extend(outcomes)

    def reject_creates(self, count: int, status: int = 429, retry_after_s: int = 1, form: str = "header") -> None:
        """Answer the next ``count`` creates with ``status``: 429 with its wait in ``form``, or e.g. a 5xx."""
        self.faults.reject_creates(count, status, retry_after_s, form)

    def fail_polls(self, kind: str, times: int = 1) -> None:
        """Make the next ``times`` polls fail: server_error, overloaded, drop or slow."""
        self.faults.fail_polls(kind, times)

    async def start(self) -> None:
        app = web.Application(middlewares=[self._log_and_authorize], client_max_size=64 * 1024 * 1024)
        app.add_routes(
            [
                web.post("/v1/models/{owner}/{name}/predictions", self._create),
                web.get("/v1/predictions/{id}", self._get),
                web.post("/v1/predictions/{id}/cancel", self._cancel),
                web.get("/files/{path:.+}", self._file),
                *self.more.routes(),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        context = None
        if self.config.tls:
            self._certificate_folder = tempfile.TemporaryDirectory(prefix="imggen-emulator-")
            self.certificate, key = local_certificate(Path(self._certificate_folder.name), self.config.host)
            context = server_context(self.certificate, key)
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=context)
        await site.start()
        port = self._runner.addresses[0][1]  # the bound port when 0 was asked for
        self.base_url = f"{'https' if context else 'http'}://{self.config.host}:{port}"
        self._worker.open(self.base_url)

    async def stop(self) -> None:
        await self._worker.close(self.predictions.values())
        if self._runner is not None:
            await self._runner.cleanup()
        if self._certificate_folder is not None:
            self._certificate_folder.cleanup()

    def json_body(self, request: web.Request) -> Any:
        """The request's body as JSON (None when it is not), read once for the request log."""
        return request[_JSON_BODY]

    @web.middleware
    async def _log_and_authorize(self, request: web.Request, handler) -> web.StreamResponse:
        body = _json_or_none(await request.read()) if request.can_read_body else None
        authorization = request.headers.get("Authorization", "")
        expected = f"Bearer {self.config.api_token}" if self.config.api_token else None
        authorized = authorization == expected if expected else authorization.startswith("Bearer ")
        record = RequestRecord(request.method, request.path, 0, request.headers.get("Prefer"), authorized, body)
        self.requests.append(record)
        if request.path.startswith("/v1/") and expected and not authorized:
            response = problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        else:
            request[_JSON_BODY] = body
            try:
                response = await handler(request)
            except DroppedConnection:
                if request.transport is not None:
                    request.transport.close()
                raise asyncio.CancelledError() from None
        record.status = response.status
        return response

    async def _create(self, request: web.Request) -> web.Response:
        ref = f"{request.match_info['owner']}/{request.match_info['name']}"
        if ref not in self.models:
            return problem(404, "Not found", "The requested resource could not be found.")
        return await self.create(request, ref, request[_JSON_BODY])

    async def create(self, request: web.Request, ref: str, body: Any) -> web.Response:
        """Create a prediction of model ``ref`` from the request ``body`` (as the API checks it)."""
        model = self.models[ref]
        prefer = request.headers.get("Prefer")
        if prefer is not None and not _PREFER.match(prefer):
            return problem(400, "Invalid Prefer header", f"Prefer must match {_PREFER.pattern}")
        if self.config.insufficient_credit:
            return problem(
                402,
                "Insufficient credit",
                "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing"
                " to purchase credit. Once you purchase credit, please wait a few minutes before trying again.",
            )
        rejection = self.faults.create_fault(self._window_wait())
        if rejection is not None:
            self.counts.throttled += rejection.status == 429
            return rejection
        problems = invalid_fields(model, body)
        if problems:
            return problem(422, "Input validation failed", validation_detail(problems), invalid_fields=problems)
        prediction = EmulatedPrediction(id=secrets.token_hex(13), model=ref, input=body["input"], created_at=time.time())
        self.predictions[prediction.id] = prediction
        self.counts.created[ref] += 1
        self._worker.start(prediction)
        if prefer is not None:
            wait_s = min(float(prefer.partition("=")[2] or 60), self.config.max_wait_s)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(prediction.done.wait(), wait_s)
        return self._prediction_response(prediction, status=201 if prediction.done.is_set() else 202)

    async def _get(self, request: web.Request) -> web.Response:
        self.counts.polls += 1
        fault = await self.faults.poll_fault()
        if fault is not None:
            return fault
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return problem(404, "Not found", "The requested resource could not be found.")
        return self._prediction_response(prediction)

    async def _cancel(self, request: web.Request) -> web.Response:
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return problem(404, "Not found", "The requested resource could not be found.")
        self._worker.cancel(prediction)
        return self._prediction_response(prediction)

    async def _file(self, request: web.Request) -> web.Response:
        stored = self.files.get(request.match_info["path"])
        if stored is None:
            return problem(404, "Not found", "The requested resource could not be found.")
        if time.time() - stored.created_at > self.config.file_ttl_s:
            self.counts.expired_downloads += 1
            return problem(404, "Not found", "The requested resource could not be found.")
        self.counts.downloads += 1
        return await self.faults.file_response(request, stored.data, stored.content_type)

    def _prediction_response(self, prediction: EmulatedPrediction, status: int = 200) -> web.Response:
        body = prediction.to_json(self.base_url, time.time(), self.config.data_retention_s)
        return web.json_response(body, status=status)

    def _window_wait(self) -> float | None:
        """Seconds until the create window admits another create, or None when this one is admitted."""
        if self._create_window is None:
            return None
        admitted, wait_s, _ = self._create_window.try_admit()
        return None if admitted else wait_s


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def start_replicate_emulator(config: ReplicateEmulatorConfig | None = None) -> ReplicateEmulator:
    """Start an emulator on the running event loop; call ``await server.stop()`` when done."""
    server = ReplicateEmulator(config or ReplicateEmulatorConfig())
    await server.start()
    return server


@contextlib.contextmanager
def running_replicate_emulator(config: ReplicateEmulatorConfig | None = None) -> Iterator[ReplicateEmulator]:
    """Run an emulator on its own event loop in a background thread for the ``with`` block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="replicate-emulator", daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start_replicate_emulator(config), loop).result()
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def main(argv: list[str] | None = None) -> None:
    """``imggen emulate replicate``: serve the emulator until interrupted."""
    parser = argparse.ArgumentParser(prog="imggen emulate replicate", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--latency-jitter", type=float, default=0.0,
                        help="each prediction's latency varies by +- this share (0.25: +-25%%)")
    parser.add_argument("--grid-latency", type=float, default=5.0, help="seconds per flux-kontext-pro grid")
    parser.add_argument("--upscale-latency", type=float, default=3.0, help="seconds per Topaz upscale")
    parser.add_argument("--token", default=None, help="require this bearer token (default: accept any)")
    parser.add_argument("--create-limit", type=int, default=600, help="create-prediction requests per minute")
    parser.add_argument("--file-ttl", type=float, default=3600.0, help="seconds before output files expire")
    parser.add_argument("--near-duplicates", type=int, default=0, help="near-duplicate tiles per grid")
    parser.add_argument("--repeated-tiles", type=int, default=0,
                        help="first tiles of every later grid that nearly copy the first grid's")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="share of predictions that fail")
    parser.add_argument("--poll-error-rate", type=float, default=0.0, help="share of polls answered 500/503")
    parser.add_argument("--poll-drop-rate", type=float, default=0.0, help="share of polls whose connection drops")
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="share of creates throttled with 429")
    parser.add_argument("--tls", action="store_true",
                        help="serve HTTPS with a certificate made for this machine (trust it with SSL_CERT_FILE), "
                        "so replicate.run returns FileOutput as the real service's https outputs do")
    args = parser.parse_args(argv)
    config = ReplicateEmulatorConfig(
        host=args.host,
        port=args.port,
        api_token=args.token,
        grid_latency_s=args.grid_latency,
        upscale_latency_s=args.upscale_latency,
        latency_jitter=args.latency_jitter,
        create_limit_per_min=args.create_limit,
        file_ttl_s=args.file_ttl,
        near_duplicates=args.near_duplicates,
        repeated_tiles=args.repeated_tiles,
        tls=args.tls,
        faults=ReplicateFaults(FaultRates(server_error=args.poll_error_rate, drop=args.poll_drop_rate),
                               throttle_rate=args.throttle_rate),
    )
    for behaviour in config.behaviours.values():
        behaviour.failure_rate = args.failure_rate
    asyncio.run(_serve_forever(config))


async def _serve_forever(config: ReplicateEmulatorConfig) -> None:
    server = await start_replicate_emulator(config)
    print(f"Replicate emulator at {server.base_url} (set REPLICATE_BASE_URL to this)", flush=True)
    if server.certificate is not None:
        print(f"its certificate: {server.certificate} (set SSL_CERT_FILE to this)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
