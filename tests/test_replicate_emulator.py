"""The local Replicate emulator, driven by the real ``replicate`` client and plain HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import sys

import httpx
import pytest
import replicate
from replicate.exceptions import ReplicateError
from replicate_helpers import (
    TOKEN,
    decode,
    likeness,
    mean_abs_difference,
    png_bytes,
    prefer_pattern,
    spec_validator,
    split_grid,
    structured_image,
)

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE
from imggen.emulators.replicate_server import running_replicate_emulator, start_replicate_emulator
from imggen.emulators.replicate_state import SAFETY_ERROR, ReplicateEmulatorConfig

SOURCE = structured_image(1)
UNRELATED = structured_image(2)
SOURCE_URI = "data:image/png;base64," + base64.b64encode(png_bytes(SOURCE)).decode()
PREDICTION_SCHEMA = spec_validator("prediction_response")


def grid_input(prompt: str = "a 3x3 grid of portraits", **extra) -> dict:
    return {"prompt": prompt, "input_image": SOURCE_URI, "aspect_ratio": "1:1", "output_format": "jpg", **extra}


@pytest.fixture
async def start():
    """Start emulators with quick test settings; all are stopped after the test."""
    servers = []

    async def start_one(**settings):
        settings = {
            "api_token": TOKEN,
            "grid_latency_s": 0.2,
            "upscale_latency_s": 0.1,
            "grid_megapixels": 0.15,
            **settings,
        }
        server = await start_replicate_emulator(ReplicateEmulatorConfig(**settings))
        servers.append(server)
        return server

    yield start_one
    for server in servers:
        if server.base_url in _transports:
            await _transports.pop(server.base_url).aclose()
        await server.stop()


_transports: dict[str, httpx.AsyncHTTPTransport] = {}  # connections of the clients, by emulator address


def client_for(server, token: str = TOKEN) -> replicate.Client:
    transport = _transports.setdefault(server.base_url, httpx.AsyncHTTPTransport())
    return replicate.Client(token, base_url=server.base_url, transport=transport)


async def http(server, method: str, path: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        return await session.request(method, path, **kwargs)


async def prediction_json(server, prediction_id: str) -> dict:
    response = await http(server, "GET", f"/v1/predictions/{prediction_id}")
    assert response.status_code == 200
    PREDICTION_SCHEMA.validate(response.json())
    return response.json()


async def settled(server, prediction_id: str) -> dict:
    for _ in range(100):
        body = await prediction_json(server, prediction_id)
        if body["status"] in {"succeeded", "failed", "canceled", "aborted"}:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("the prediction never settled")


async def test_grid_tiles_derive_from_the_input_image(start):
    server = await start()
    prediction = await client_for(server).models.predictions.async_create(
        FLUX_KONTEXT_PRO, input=grid_input(), wait=True
    )
    assert prediction.status == "succeeded"
    grid = decode((await http(server, "GET", prediction.output)).content)
    tiles = split_grid(grid, 3, 3)
    for tile in tiles:
        assert likeness(tile, SOURCE) > 0.6
        assert likeness(tile, SOURCE) > likeness(tile, UNRELATED) + 0.3
    differences = [mean_abs_difference(a, b) for i, a in enumerate(tiles) for b in tiles[i + 1 :]]
    assert min(differences) > 10  # no near-duplicates unless asked for


@pytest.mark.parametrize(("prompt", "side"), [("a 4x4 grid of animals", 4), ("a grid of vehicles", 3)])
async def test_grid_shape_follows_the_prompt(start, prompt, side):
    server = await start()
    prediction = await client_for(server).models.predictions.async_create(
        FLUX_KONTEXT_PRO, input=grid_input(prompt), wait=True
    )
    grid = decode((await http(server, "GET", prediction.output)).content)
    assert all(likeness(tile, SOURCE) > 0.5 for tile in split_grid(grid, side, side))
    assert (server.grids[prediction.id].rows, server.grids[prediction.id].cols) == (side, side)


async def test_near_duplicate_tiles_as_configured(start):
    server = await start(near_duplicates=2)
    prediction = await client_for(server).models.predictions.async_create(
        FLUX_KONTEXT_PRO, input=grid_input(), wait=True
    )
    tiles = split_grid(decode((await http(server, "GET", prediction.output)).content), 3, 3)
    pairs = sorted((mean_abs_difference(tiles[i], tiles[j]), {i, j}) for i in range(9) for j in range(i + 1, 9))
    configured = [{copy, source} for copy, source in server.grids[prediction.id].duplicates.items()]
    assert len(configured) == 2
    assert sorted(map(sorted, (pair for _, pair in pairs[:2]))) == sorted(map(sorted, configured))
    assert pairs[1][0] * 2 < pairs[2][0]


@pytest.mark.parametrize(("factor", "scale"), [("2x", 2), ("4x", 4)])
async def test_upscale_enlarges_by_the_requested_factor(start, factor, scale):
    server = await start()
    small = structured_image(3, (96, 64))
    inputs = {
        "image": "data:image/png;base64," + base64.b64encode(png_bytes(small)).decode(),
        "upscale_factor": factor,
        "output_format": "png",
    }
    prediction = await client_for(server).models.predictions.async_create(TOPAZ_IMAGE_UPSCALE, input=inputs, wait=True)
    enlarged = decode((await http(server, "GET", prediction.output)).content)
    assert enlarged.size == (96 * scale, 64 * scale)
    assert likeness(enlarged, small) > 0.95


async def test_prefer_wait_answers_processing_when_the_model_is_slower(start):
    server = await start(grid_latency_s=1.3)
    client = client_for(server)
    prediction = await client.models.predictions.async_create(FLUX_KONTEXT_PRO, input=grid_input(), wait=1)
    assert prediction.status == "processing"
    assert (server.requests[-1].prefer, server.requests[-1].status) == ("wait=1", 202)
    assert (await settled(server, prediction.id))["status"] == "succeeded"


@pytest.mark.parametrize(
    ("outcome", "status", "error"),
    [
        ("failed", "failed", "crashed"),
        ("safety", "failed", SAFETY_ERROR),
        ("canceled", "canceled", None),
        ("aborted", "aborted", None),
    ],
)
async def test_scripted_outcomes(start, outcome, status, error):
    server = await start()
    server.script(FLUX_KONTEXT_PRO, outcome)
    created = await http(server, "POST", f"/v1/models/{FLUX_KONTEXT_PRO}/predictions", json={"input": grid_input()})
    assert created.status_code == 202 and created.json()["status"] == "starting"
    body = await settled(server, created.json()["id"])
    assert body["status"] == status
    assert (error in body["error"]) if error else body["error"] is None
    assert body["output"] is None and "predict_time" in body["metrics"]
    assert server.counts.paid[FLUX_KONTEXT_PRO] == 0
    # the next prediction is back to normal
    follow_up = await client_for(server).models.predictions.async_create(
        FLUX_KONTEXT_PRO, input=grid_input(), wait=True
    )
    assert follow_up.status == "succeeded" and server.counts.paid[FLUX_KONTEXT_PRO] == 1


async def test_failure_rate_fails_that_share_of_predictions(start):
    server = await start(grid_latency_s=0.05)
    server.config.behaviours[FLUX_KONTEXT_PRO].failure_rate = 1.0
    prediction = await client_for(server).models.predictions.async_create(
        FLUX_KONTEXT_PRO, input=grid_input(), wait=True
    )
    assert prediction.status == "failed"


async def test_cancel_stops_a_running_prediction(start):
    server = await start()
    server.script(FLUX_KONTEXT_PRO, "stall")
    client = client_for(server)
    prediction = await client.models.predictions.async_create(FLUX_KONTEXT_PRO, input=grid_input())
    await asyncio.sleep(0.1)
    canceled = await client.predictions.async_cancel(prediction.id)
    assert canceled.status == "canceled"
    assert (await prediction_json(server, prediction.id))["status"] == "canceled"
    assert server.counts.created[FLUX_KONTEXT_PRO] == 1 and server.counts.paid[FLUX_KONTEXT_PRO] == 0


async def test_create_rate_limit_answers_429_with_retry_after(start):
    server = await start(create_limit_per_min=2)
    path = f"/v1/models/{FLUX_KONTEXT_PRO}/predictions"
    for _ in range(2):
        assert (await http(server, "POST", path, json={"input": grid_input()})).status_code == 202
    throttled = await http(server, "POST", path, json={"input": grid_input()})
    assert throttled.status_code == 429
    retry_after = int(throttled.headers["Retry-After"])
    assert 55 <= retry_after <= 60
    assert throttled.json()["retry_after"] == retry_after and f"~{retry_after}s" in throttled.json()["detail"]
    # the real client does not retry a POST: one more request, one more 429
    seen = len(server.requests)
    with pytest.raises(ReplicateError) as raised:
        await client_for(server).models.predictions.async_create(FLUX_KONTEXT_PRO, input=grid_input())
    assert raised.value.status == 429 and len(server.requests) == seen + 1
    assert server.counts.created[FLUX_KONTEXT_PRO] == 2 and server.counts.throttled == 2


async def test_scripted_rejections(start):
    server = await start()
    server.reject_creates(1, 429, retry_after_s=7)
    server.reject_creates(1, 503)
    path = f"/v1/models/{FLUX_KONTEXT_PRO}/predictions"
    first = await http(server, "POST", path, json={"input": grid_input()})
    second = await http(server, "POST", path, json={"input": grid_input()})
    third = await http(server, "POST", path, json={"input": grid_input()})
    assert (first.status_code, first.headers["Retry-After"]) == (429, "7")
    assert second.status_code == 503 and second.json()["status"] == 503
    assert third.status_code == 202


async def test_invalid_input_answers_422_with_invalid_fields(start):
    server = await start()
    path = f"/v1/models/{FLUX_KONTEXT_PRO}/predictions"
    response = await http(
        server, "POST", path, json={"input": {"input_image": SOURCE_URI, "aspect_ratio": "7:1"}, "extra": 1}
    )
    assert response.status_code == 422 and response.headers["Content-Type"].startswith("application/problem+json")
    fields = {(problem["field"], problem["type"]) for problem in response.json()["invalid_fields"]}
    assert fields == {
        ("(root)", "additional_property_not_allowed"),
        ("input", "required"),
        ("input.aspect_ratio", "enum"),
    }
    assert "prompt is required" in response.json()["detail"]
    with pytest.raises(ReplicateError) as raised:
        await client_for(server).models.predictions.async_create(FLUX_KONTEXT_PRO, input=grid_input(safety_tolerance=5))
    assert raised.value.status == 422 and "input.safety_tolerance" in raised.value.detail
    assert server.counts.created[FLUX_KONTEXT_PRO] == 0


async def test_unknown_model_is_404_and_a_wrong_token_401(start):
    server = await start()
    with pytest.raises(ReplicateError) as unknown:
        await client_for(server).models.predictions.async_create(
            "topaz-labs/image-upscale", input={"image": SOURCE_URI}
        )
    assert unknown.value.status == 404
    with pytest.raises(ReplicateError) as unauthorized:
        await client_for(server, "r8_wrong").predictions.async_get("anything")
    assert unauthorized.value.status == 401 and unauthorized.value.title == "Unauthenticated"
    assert [record.authorized for record in server.requests] == [True, False]


async def test_output_files_expire(start):
    server = await start(file_ttl_s=0.4)
    prediction = await client_for(server).models.predictions.async_create(
        FLUX_KONTEXT_PRO, input=grid_input(), wait=True
    )
    assert (await http(server, "GET", prediction.output)).status_code == 200
    await asyncio.sleep(0.5)
    assert (await http(server, "GET", prediction.output)).status_code == 404
    assert (server.counts.downloads, server.counts.expired_downloads) == (1, 1)


async def test_prediction_data_is_removed_after_retention(start):
    server = await start(data_retention_s=0.3)
    prediction = await client_for(server).models.predictions.async_create(
        FLUX_KONTEXT_PRO, input=grid_input(), wait=True
    )
    assert (await prediction_json(server, prediction.id))["output"] == prediction.output
    await asyncio.sleep(0.4)
    body = await prediction_json(server, prediction.id)
    assert (body["output"], body["input"], body["data_removed"]) == (None, {}, True)


async def test_requests_of_the_real_client_and_responses_match_the_published_spec(start):
    server = await start()
    client = client_for(server)
    done = await client.models.predictions.async_create(FLUX_KONTEXT_PRO, input=grid_input(seed=5), wait=True)
    await client.models.predictions.async_create(FLUX_KONTEXT_PRO, input=grid_input(), wait=False)
    for prediction_id in server.predictions:
        PREDICTION_SCHEMA.validate(await settled(server, prediction_id))
    request_schema = spec_validator("prediction_request")
    creates = [record for record in server.requests if record.method == "POST"]
    assert len(creates) == 2
    for record in creates:
        request_schema.validate(record.body)
    assert re.fullmatch(prefer_pattern(), creates[0].prefer) and creates[1].prefer is None
    assert done.version == "hidden" and done.urls["get"].endswith(f"/v1/predictions/{done.id}")


def test_background_thread_runner_serves_the_sync_client():
    with running_replicate_emulator(ReplicateEmulatorConfig(grid_latency_s=0.1, grid_megapixels=0.1)) as server:
        with httpx.HTTPTransport() as transport:
            client = replicate.Client(TOKEN, base_url=server.base_url, transport=transport)
            prediction = client.models.predictions.create(FLUX_KONTEXT_PRO, input=grid_input(), wait=True)
        assert prediction.status == "succeeded"
        assert server.counts.paid[FLUX_KONTEXT_PRO] == 1


def test_command_line_entry_serves_until_stopped():
    process = subprocess.Popen(
        [sys.executable, "-c", "from imggen.emulators.replicate_server import main; main(['--port', '0'])"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = re.search(r"http://\S+", process.stdout.readline())[0]
        response = httpx.get(f"{base_url}/v1/predictions/missing", headers={"Authorization": "Bearer x"})
        assert response.status_code == 404 and response.json()["title"] == "Not found"
    finally:
        process.terminate()
        process.communicate(timeout=10)
