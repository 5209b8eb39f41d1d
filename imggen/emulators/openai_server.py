"""A local OpenAI API emulator (images and vision chat) on aiohttp, for tests and offline rehearsal.

Start it inside a running loop with :func:`start_openai_emulator`, from synchronous code with the
:func:`openai_emulator_in_thread` context manager, or from the command line with :func:`main`
(``imggen emulate openai --port 8011 --rpm 5 --latency 2``). Point the official client at
``server.base_url`` (or ``OPENAI_BASE_URL``). Every response carries ``x-request-id`` and the
``x-ratelimit-*`` headers of its endpoint's window, in the form its config asks for (see
:mod:`~imggen.emulators.openai_header_forms`); ``server.requests`` logs every request.
What it serves and how it fails is described in :mod:`~imggen.emulators.openai_images_route`,
:mod:`~imggen.emulators.openai_chat_route`, :mod:`~imggen.emulators.openai_batch_routes` (Files and
Batch APIs) and :class:`~imggen.emulators.openai_state.OpenAIEmulatorConfig`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import threading
import time
import uuid
from typing import Iterator

from aiohttp import web

from imggen.emulators.openai_batch_routes import add_batch_routes
from imggen.emulators.openai_batch_store import BATCHES, DAY_S, BatchEmulatorConfig, BatchStore
from imggen.emulators.openai_chat_route import create_chat_completion
from imggen.emulators.openai_images_route import create_image, get_file
from imggen.emulators.openai_models_route import add_model_routes
from imggen.emulators.openai_header_forms import RATE_FORMS, RETRY_FORMS, shape_headers
from imggen.emulators.openai_replies import DroppedConnection, error_response, rate_headers
from imggen.emulators.rate_window import WINDOWS
from imggen.emulators.openai_state import (
    RECORD, STATE, USAGE_FORMS, EmulatorState, OpenAIEmulatorConfig, RequestRecord, checked_usage_form,
)


def _masked(key: str) -> str:
    return f"{key[:3]}{'*' * max(len(key) - 7, 0)}{key[-4:]}" if len(key) > 8 else "*" * len(key)


def _auth_problem(request: web.Request, config: OpenAIEmulatorConfig) -> web.Response | None:
    """401 as the API sends it for a missing or (when a key is configured) wrong key."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or not key:
        return error_response(401, "You didn't provide an API key. You need to provide your API key in an "
                              "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
    if config.api_key is not None and not hmac.compare_digest(key, config.api_key):
        return error_response(401, f"Incorrect API key provided: {_masked(key)}. You can find your API key at "
                              "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
    return None


@web.middleware
async def _stamp_and_log(request: web.Request, handler) -> web.StreamResponse:
    state = request.app[STATE]
    record = RequestRecord(request.method, request.path, time.time())
    request[RECORD] = record
    started = time.monotonic()
    try:
        response = None
        if request.path.startswith("/v1/"):
            response = _auth_problem(request, state.config)
        if response is None:
            response = await handler(request)
    except DroppedConnection:
        state.requests.append(record)
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError() from None
    except asyncio.CancelledError:  # the client went away first (e.g. it timed out)
        state.requests.append(record)
        raise
    except web.HTTPException as exc:  # the router's 404/405
        response = error_response(exc.status, f"Invalid URL ({request.method} {request.path})")
    window = state.chat_window if request.path.startswith("/v1/chat/") else state.image_window
    response.headers.update(rate_headers(window.state()))
    tokens = state.chat_token_window if request.path.startswith("/v1/chat/") else state.token_window
    if tokens is not None and request.path.startswith(("/v1/images/", "/v1/chat/")):
        response.headers.update(rate_headers(tokens.state(), "tokens"))
    shape_headers(response.headers, state.config.rate_header_form, state.config.retry_after_form)
    response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
    response.headers["openai-processing-ms"] = str(round((time.monotonic() - started) * 1000))
    record.status = response.status
    state.requests.append(record)
    return response


class RunningOpenAIEmulator:
    """A started emulator: where it listens, what it saw, and the knobs tests turn while it runs."""

    def __init__(self, state: EmulatorState, runner: web.AppRunner, port: int) -> None:
        self._state = state
        self._runner = runner
        self.port = port
        self.origin = f"http://{state.config.host}:{port}"
        self.base_url = f"{self.origin}/v1"

    @property
    def config(self) -> OpenAIEmulatorConfig:
        return self._state.config

    @property
    def requests(self) -> list[RequestRecord]:
        return self._state.requests

    @property
    def batches(self) -> BatchStore:
        """The Files and Batch APIs' files, batches, counts and tripwire."""
        return self._runner.app[BATCHES]

    def fail_next(self, kind: str, times: int = 1) -> None:
        """Script the next ``times`` requests to fail: server_error, overloaded, drop, slow,
        rate_limit or slow_down."""
        self._state.faults.fail_next(kind, times)

    def refuse_next(self, times: int = 1) -> None:
        """Make the next ``times`` chat answers refusals (200, ``content: null``, the ``refusal`` text), billed."""
        self._state.refuse_next(times)

    def set_chat_usage(self, form: str) -> None:
        """Send chat answers' usage as ``full``, ``counts`` (the three counts only) or ``none`` from now on."""
        self._state.chat_usage_form = checked_usage_form(form)

    def set_quota(self, images_left: int | None) -> None:
        """Images the account may still generate (None: unlimited); restores a spent quota."""
        self._state.faults.set_quota(images_left)

    async def stop(self) -> None:
        await self._runner.cleanup()


def build_app(config: OpenAIEmulatorConfig) -> web.Application:
    app = web.Application(middlewares=[_stamp_and_log], client_max_size=64 * 1024 * 1024)
    app[STATE] = EmulatorState(config)
    app.router.add_post("/v1/images/generations", create_image)
    app.router.add_post("/v1/chat/completions", create_chat_completion)
    app.router.add_get("/files/{name}", get_file)
    add_batch_routes(app, config.batch)
    add_model_routes(app)  # last: it answers every /v1 path not served above
    return app


async def start_openai_emulator(config: OpenAIEmulatorConfig = OpenAIEmulatorConfig()) -> RunningOpenAIEmulator:
    """Start the emulator on the running loop; ``await server.stop()`` when done."""
    app = build_app(config)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = runner.addresses[0][1]
    return RunningOpenAIEmulator(app[STATE], runner, port)


@contextlib.contextmanager
def openai_emulator_in_thread(
    config: OpenAIEmulatorConfig = OpenAIEmulatorConfig(),
) -> Iterator[RunningOpenAIEmulator]:
    """Run the emulator on its own loop in a background thread for synchronous callers."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="openai-emulator", daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(start_openai_emulator(config), loop).result(timeout=30)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imggen emulate openai", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=8011)
    add("--rpm", type=int, default=60, help="images per minute before 429 rate_limit_exceeded")
    add("--tpm", type=int, default=None, help="image tokens per minute (the answers' usage) before 429 type tokens")
    add("--chat-rpm", type=int, default=500, help="chat completions per minute")
    add("--chat-tpm", type=int, default=None, help="chat tokens per minute (the answers' usage) before 429 type tokens")
    add("--window", type=float, default=60.0, help="rate window in seconds")
    add("--window-kind", choices=sorted(WINDOWS), default="sliding",
        help="how the limits are counted: sliding (reset: until the window is full again), sliding_next "
        "(reset: until the next slot frees), fixed windows, or a token bucket")
    add("--latency", type=float, default=0.0, help="seconds added to each answer")
    add("--jitter", type=float, default=0.0, help="latency varies by +- this many seconds")
    add("--error-rate", type=float, default=0.0, help="share of requests answered 500/503")
    add("--drop-rate", type=float, default=0.0, help="share of connections closed without an answer")
    add("--slow-rate", type=float, default=0.0, help="share of requests delayed by --slow-seconds")
    add("--slow-seconds", type=float, default=30.0)
    add("--blocked-word", default="BLOCKED_PROMPT", help="prompts containing it are refused (content policy)")
    add("--quota-images", type=int, default=None, help="images before 429 insufficient_quota")
    add("--render-scale", type=float, default=1.0, help="draw pictures at this fraction of the requested size")
    add("--render-max-side", type=int, default=None, help="draw pictures at most this many pixels wide/high")
    add("--reject-retired", action="store_true", help="refuse models shut down before today (as the API does)")
    add("--rate-headers", choices=RATE_FORMS, default="all", help="how x-ratelimit-* are sent")
    add("--retry-after", choices=RETRY_FORMS, default="seconds_and_ms", help="how a 429 says when to return")
    add("--chat-usage", choices=USAGE_FORMS, default="full", help="how a chat answer's usage is sent")
    add("--seed", type=int, default=0)
    add("--batch-line-seconds", type=float, default=0.0, help="Batch API: processing time per request line")
    add("--batch-line-error-rate", type=float, default=0.0, help="Batch API: share of lines answered 500")
    add("--batch-window", type=float, default=DAY_S, help="Batch API: seconds before a running batch expires")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted (Ctrl-C)."""
    args = _parser().parse_args(argv)
    config = OpenAIEmulatorConfig(
        host=args.host, port=args.port, images_per_minute=args.rpm, tokens_per_minute=args.tpm,
        window_kind=args.window_kind,
        chat_requests_per_minute=args.chat_rpm, chat_tokens_per_minute=args.chat_tpm,
        window_s=args.window, latency_s=args.latency, jitter_s=args.jitter, error_rate=args.error_rate,
        drop_rate=args.drop_rate, slow_rate=args.slow_rate, slow_s=args.slow_seconds, blocked_word=args.blocked_word,
        quota_images=args.quota_images, render_scale=args.render_scale, render_max_side=args.render_max_side,
        allow_retired=not args.reject_retired, seed=args.seed, rate_header_form=args.rate_headers,
        chat_usage_form=args.chat_usage,
        retry_after_form=args.retry_after,
        batch=BatchEmulatorConfig(line_s=args.batch_line_seconds, line_error_rate=args.batch_line_error_rate,
                                  completion_window_s=args.batch_window),
    )

    async def serve() -> None:
        server = await start_openai_emulator(config)
        print(f"OpenAI emulator listening; set OPENAI_BASE_URL={server.base_url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
