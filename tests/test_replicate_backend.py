"""The Replicate backend on the real ``replicate`` client against the local emulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import traceback

import pytest
from replicate_helpers import TOKEN, decode, likeness, png_bytes, split_grid, structured_image

from imggen.backends.replicate_backend import ReplicateBackend
from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE, replicate_models
from imggen.backends.replicate_responses import PredictionEnded
from imggen.emulators.replicate_server import start_replicate_emulator
from imggen.emulators.replicate_state import ReplicateEmulatorConfig
from imggen.engine.errors import ErrorKind, TaskError

SOURCE = structured_image(1)
UNRELATED = structured_image(2)
PROMPT = "a 3x3 grid of nine different scenes"


@pytest.fixture
async def start():
    """Start an emulator and a backend pointed at it; both are closed after the test."""
    opened = []

    async def start_pair(token: str = TOKEN, backend_settings: dict | None = None, **settings):
        settings = {
            "api_token": TOKEN,
            "grid_latency_s": 0.2,
            "upscale_latency_s": 0.1,
            "grid_megapixels": 0.15,
            **settings,
        }
        server = await start_replicate_emulator(ReplicateEmulatorConfig(**settings))
        backend_settings = {"wait_s": None, "poll_interval_s": 0.05, **(backend_settings or {})}
        backend = ReplicateBackend(api_token=token, base_url=server.base_url, **backend_settings)
        opened.append((server, backend))
        return server, backend

    yield start_pair
    for server, backend in opened:
        await backend.aclose()
        await server.stop()


async def failure_of(call) -> TaskError:
    with pytest.raises(TaskError) as raised:
        await call
    return raised.value


async def test_grid_comes_back_downloaded_and_derived_from_the_input(start):
    server, backend = await start()
    created = []

    async def record(prediction_id: str) -> None:
        created.append((prediction_id, server.predictions[prediction_id].status))

    result = await backend.generate_grid(PROMPT, png_bytes(SOURCE), seed=3, on_prediction_created=record)
    tiles = split_grid(decode(result.data), 3, 3)
    assert all(likeness(tile, SOURCE) > likeness(tile, UNRELATED) + 0.3 for tile in tiles)
    assert created == [(result.prediction_id, "starting")]  # told before the prediction finished
    assert result.cost == replicate_models()[FLUX_KONTEXT_PRO].price_usd_per_prediction
    assert result.metrics["predict_time"] > 0
    assert result.url == server.predictions[result.prediction_id].output
    assert server.predictions[result.prediction_id].input["seed"] == 3
    download = next(record for record in server.requests if record.path.startswith("/files/"))
    assert download.authorized  # output files are fetched with the token, as the API asks


async def test_upscale_doubles_the_size_and_accepts_a_url(start):
    server, backend = await start()
    grid = await backend.generate_grid(PROMPT, png_bytes(SOURCE))
    enlarged = await backend.upscale(grid.url)  # the input as an http URL the emulator fetches
    assert decode(enlarged.data).size == tuple(2 * side for side in decode(grid.data).size)
    assert enlarged.cost is None  # no confirmed Topaz price in the catalog
    assert server.predictions[enlarged.prediction_id].model == TOPAZ_IMAGE_UPSCALE
    small = await backend.upscale(png_bytes(structured_image(4, (80, 48))), upscale_factor="4x", output_format="png")
    assert decode(small.data).size == (320, 192)


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        ("failed", ErrorKind.TRANSIENT),
        ("safety", ErrorKind.PERMANENT),
        ("canceled", ErrorKind.TRANSIENT),
        ("aborted", ErrorKind.TRANSIENT),
    ],
)
async def test_unsuccessful_predictions_map_to_error_kinds(start, outcome, kind):
    server, backend = await start()
    server.script(FLUX_KONTEXT_PRO, outcome)
    error = await failure_of(backend.generate_grid(PROMPT, png_bytes(SOURCE)))
    assert error.kind is kind
    status = "failed" if outcome == "safety" else outcome
    assert status in error.message and next(iter(server.predictions)) in error.message


async def test_a_throttled_create_is_rate_limited_with_the_servers_retry_after(start):
    server, backend = await start()
    server.reject_creates(1, 429, retry_after_s=7)
    error = await failure_of(backend.generate_grid(PROMPT, png_bytes(SOURCE)))
    assert (error.kind, error.retry_after) == (ErrorKind.RATE_LIMITED, 7.0)


async def test_the_create_window_limit_reports_when_it_frees(start):
    server, backend = await start(create_limit_per_min=1)
    await backend.generate_grid(PROMPT, png_bytes(SOURCE))
    error = await failure_of(backend.generate_grid(PROMPT, png_bytes(SOURCE)))
    assert error.kind is ErrorKind.RATE_LIMITED and 55 <= error.retry_after <= 60
    assert server.counts.created[FLUX_KONTEXT_PRO] == 1


async def test_server_errors_and_lost_connections_are_transient(start):
    server, backend = await start()
    server.reject_creates(1, 500)
    assert (await failure_of(backend.generate_grid(PROMPT, png_bytes(SOURCE)))).kind is ErrorKind.TRANSIENT
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = ReplicateBackend(api_token=TOKEN, base_url=f"http://127.0.0.1:{closed_port}")
    try:
        error = await failure_of(unreachable.upscale(png_bytes(SOURCE)))
    finally:
        await unreachable.aclose()
    assert error.kind is ErrorKind.TRANSIENT and error.connection_error


async def created_then_interrupted(backend: ReplicateBackend) -> str:
    """The id of a grid prediction whose caller stopped once it was created (e.g. the process stopped)."""
    recorded = []
    interrupted = asyncio.create_task(
        backend.generate_grid(PROMPT, png_bytes(SOURCE), on_prediction_created=recorded.append)
    )
    while not recorded:
        await asyncio.sleep(0.02)
    interrupted.cancel()
    return recorded[0]


async def test_a_poll_answered_503_reaches_the_engine_at_once_not_retried_inside_the_sdk(start):
    server, backend = await start(grid_latency_s=0.3)
    prediction_id = await created_then_interrupted(backend)
    server.fail_polls("overloaded")
    error = await failure_of(backend.resume(FLUX_KONTEXT_PRO, prediction_id))  # the engine decides when to poll again
    assert error.kind is ErrorKind.TRANSIENT and server.faults.poll_faults["overloaded"] == 1
    result = await backend.resume(FLUX_KONTEXT_PRO, prediction_id)
    assert result.prediction_id == prediction_id and server.counts.created[FLUX_KONTEXT_PRO] == 1


async def test_bad_token_and_billing_are_fatal_and_invalid_input_permanent(start):
    _, wrong_token = await start(token="r8_not_the_right_token")
    assert (await failure_of(wrong_token.generate_grid(PROMPT, png_bytes(SOURCE)))).kind is ErrorKind.FATAL
    _, no_credit = await start(insufficient_credit=True)
    billing = await failure_of(no_credit.upscale(png_bytes(SOURCE)))
    assert billing.kind is ErrorKind.FATAL and "402" in billing.message
    _, backend = await start()
    invalid = await failure_of(backend.generate_grid(PROMPT, png_bytes(SOURCE), aspect_ratio="7:1"))
    assert invalid.kind is ErrorKind.PERMANENT and "aspect_ratio" in invalid.message


async def test_prefer_wait_answering_processing_is_still_polled_to_completion(start):
    server, backend = await start(grid_latency_s=1.3, backend_settings={"wait_s": 1})
    result = await backend.generate_grid(PROMPT, png_bytes(SOURCE))
    create = next(record for record in server.requests if record.method == "POST")
    assert (create.prefer, create.status) == ("wait=1", 202)  # answered before the prediction finished
    assert server.counts.polls >= 1
    assert decode(result.data).size == decode(server.files[f"{result.prediction_id}/output.jpg"].data).size


async def test_output_is_downloaded_in_the_same_step_before_it_expires(start):
    server, backend = await start(file_ttl_s=0.5)
    result = await backend.generate_grid(PROMPT, png_bytes(SOURCE))
    assert decode(result.data).size == (384, 384)
    await asyncio.sleep(0.6)
    expired = await failure_of(backend.resume(FLUX_KONTEXT_PRO, result.prediction_id))
    assert isinstance(expired, PredictionEnded) and expired.billed and "404" in expired.message
    assert server.counts.expired_downloads == 1


async def test_resume_collects_a_prediction_whose_caller_was_interrupted(start):
    server, backend = await start(grid_latency_s=0.5)
    prediction_id = await created_then_interrupted(backend)
    result = await backend.resume(FLUX_KONTEXT_PRO, prediction_id)
    assert result.prediction_id == prediction_id and decode(result.data).size == (384, 384)
    assert server.counts.created[FLUX_KONTEXT_PRO] == 1


async def test_deadline_cancels_a_stalled_prediction(start):
    server, backend = await start(backend_settings={"deadline_s": 0.3})
    server.script(FLUX_KONTEXT_PRO, "stall")
    error = await failure_of(backend.generate_grid(PROMPT, png_bytes(SOURCE)))
    assert error.kind is ErrorKind.TRANSIENT and "did not finish" in error.message
    assert [prediction.status for prediction in server.predictions.values()] == ["canceled"]


async def test_download_size_is_capped(start):
    _, backend = await start(backend_settings={"max_download_bytes": 1000})
    error = await failure_of(backend.generate_grid(PROMPT, png_bytes(SOURCE)))
    assert error.kind is ErrorKind.PERMANENT and "larger than 1000 bytes" in error.message


async def test_no_token_appears_in_any_error(start):
    errors = []
    _, wrong_token = await start(api_token="r8_the_server_expects_this_one")
    errors.append(await failure_of(wrong_token.generate_grid(PROMPT, png_bytes(SOURCE))))
    server, backend = await start()
    server.reject_creates(1, 429, retry_after_s=3)
    server.script(FLUX_KONTEXT_PRO, "failed", "aborted")
    for _ in range(3):
        errors.append(await failure_of(backend.generate_grid(PROMPT, png_bytes(SOURCE))))
    errors.append(await failure_of(backend.generate_grid(PROMPT, png_bytes(SOURCE), output_format="webp")))
    assert [error.kind for error in errors] == [
        ErrorKind.FATAL,
        ErrorKind.RATE_LIMITED,
        ErrorKind.TRANSIENT,
        ErrorKind.TRANSIENT,
        ErrorKind.PERMANENT,
    ]
    for error in errors:
        assert TOKEN not in "".join(traceback.format_exception(error)) + repr(error.args)


async def test_token_and_base_url_come_from_the_environment(start, monkeypatch, tmp_path):
    server, _ = await start()
    monkeypatch.chdir(tmp_path)  # no .env file
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", server.base_url)
    backend = ReplicateBackend(poll_interval_s=0.05)
    try:
        result = await backend.upscale(png_bytes(SOURCE))
    finally:
        await backend.aclose()
    assert result.prediction_id in server.predictions
    monkeypatch.delenv("REPLICATE_API_TOKEN")
    with pytest.raises(TaskError) as missing:
        ReplicateBackend()
    assert missing.value.kind is ErrorKind.FATAL
