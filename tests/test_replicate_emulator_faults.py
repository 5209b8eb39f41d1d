"""The Replicate emulator's inconvenient answers, from the contract: faulty polls, throttled creates, expiry, slow bodies."""

from __future__ import annotations

import asyncio
import base64
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest
from replicate_helpers import TOKEN, png_bytes, structured_image

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE, replicate_models
from imggen.emulators.fault_plan import FaultRates
from imggen.emulators.replicate_faults import ReplicateFaults
from imggen.emulators.replicate_server import start_replicate_emulator
from imggen.emulators.replicate_state import ReplicateEmulatorConfig

SOURCE_URI = "data:image/png;base64," + base64.b64encode(png_bytes(structured_image(1))).decode()
CREATE = f"/v1/models/{FLUX_KONTEXT_PRO}/predictions"
GRID = {"input": {"prompt": "a 3x3 grid", "input_image": SOURCE_URI, "aspect_ratio": "1:1", "output_format": "jpg"}}


@pytest.fixture
async def start():
    servers, sessions = [], []

    async def start_one(**settings):
        settings = {"api_token": TOKEN, "grid_latency_s": 0.2, "upscale_latency_s": 0.1, "grid_megapixels": 0.1,
                    **settings}
        server = await start_replicate_emulator(ReplicateEmulatorConfig(**settings))
        session = httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"})
        servers.append(server)
        sessions.append(session)
        return server, session

    yield start_one
    for session in sessions:
        await session.aclose()
    for server in servers:
        await server.stop()


async def settled(session: httpx.AsyncClient, prediction_id: str) -> dict:
    for _ in range(100):
        body = (await session.get(f"/v1/predictions/{prediction_id}")).json()
        if body["status"] in {"succeeded", "failed", "canceled", "aborted"}:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("never settled")


async def test_polls_answer_5xx_or_drop_the_connection_then_recover(start):
    server, session = await start()
    created = (await session.post(CREATE, json=GRID)).json()
    server.fail_polls("server_error")
    server.fail_polls("overloaded")
    server.fail_polls("drop")
    first = await session.get(f"/v1/predictions/{created['id']}")
    second = await session.get(f"/v1/predictions/{created['id']}")
    assert (first.status_code, second.status_code) == (500, 503)
    assert first.headers["content-type"].startswith("application/problem+json") and first.json()["status"] == 500
    with pytest.raises(httpx.TransportError):
        await session.get(f"/v1/predictions/{created['id']}")
    assert (await settled(session, created["id"]))["status"] == "succeeded"


async def test_random_poll_faults_hit_about_their_share(start):
    server, session = await start(faults=ReplicateFaults(FaultRates(server_error=0.3), seed=4))
    created = (await session.post(CREATE, json=GRID)).json()
    answers = [(await session.get(f"/v1/predictions/{created['id']}")).status_code for _ in range(200)]
    assert 40 <= sum(status >= 500 for status in answers) <= 80 and set(answers) <= {200, 500, 503}


@pytest.mark.parametrize("form", ["header", "http_date", "body", "detail"])
async def test_throttled_creates_in_every_documented_form(start, form):
    server, session = await start()
    server.reject_creates(1, 429, retry_after_s=3, form=form)
    throttled = await session.post(CREATE, json=GRID)
    body = throttled.json()
    assert throttled.status_code == 429 and "Your rate limit resets in ~3s." in body["detail"]
    header = throttled.headers.get("Retry-After")
    if form == "header":
        assert header == "3" and body["retry_after"] == 3
    elif form == "http_date":
        assert 2 <= parsedate_to_datetime(header).timestamp() - time.time() <= 4 and "retry_after" not in body
    elif form == "body":
        assert header is None and body["retry_after"] == 3 and body["status"] == 429
    else:
        assert header is None and body == {"detail": "Request was throttled. Your rate limit resets in ~3s."}
    assert server.counts.created[FLUX_KONTEXT_PRO] == 0 and server.counts.throttled == 1


async def test_a_create_inside_the_retry_after_counts_as_early(start):
    server, session = await start()
    server.reject_creates(1, 429, retry_after_s=1)
    assert (await session.post(CREATE, json=GRID)).status_code == 429
    await asyncio.sleep(0.4)
    assert (await session.post(CREATE, json=GRID)).status_code == 202
    assert server.faults.early_creates == 1
    await asyncio.sleep(0.7)
    await session.post(CREATE, json=GRID)
    assert server.faults.early_creates == 1


async def test_a_short_create_window_throttles_with_the_time_it_frees(start):
    server, session = await start(create_limit_per_min=2, create_window_s=2.0)
    statuses = [(await session.post(CREATE, json=GRID)).status_code for _ in range(3)]
    assert statuses[:2] == [202, 202] and statuses[2] == 429
    assert server.counts.created[FLUX_KONTEXT_PRO] == 2


async def test_an_expired_output_is_billed_but_its_file_is_gone(start):
    server, session = await start()
    server.script(FLUX_KONTEXT_PRO, "expired")
    created = (await session.post(CREATE, json=GRID)).json()
    done = await settled(session, created["id"])
    assert done["status"] == "succeeded" and (await session.get(done["output"])).status_code == 404
    assert server.counts.paid[FLUX_KONTEXT_PRO] == 1 and server.counts.expired_downloads == 1
    assert server.counts.billed_usd() == pytest.approx(replicate_models()[FLUX_KONTEXT_PRO].price_usd_per_prediction)


async def test_output_files_can_trickle_their_body(start):
    server, session = await start(faults=ReplicateFaults(file_body_s=0.8))
    created = (await session.post(CREATE, json=GRID)).json()
    done = await settled(session, created["id"])
    began = time.monotonic()
    download = await session.get(done["output"])
    assert time.monotonic() - began >= 0.7
    assert download.content == server.files[f"{created['id']}/output.jpg"].data


async def test_billed_predictions_are_counted_per_model(start):
    server, session = await start()
    server.script(FLUX_KONTEXT_PRO, "succeeded", "failed")
    ids = [(await session.post(CREATE, json=GRID)).json()["id"] for _ in range(2)]
    upscale = {"input": {"image": SOURCE_URI, "upscale_factor": "2x"}}
    ids.append((await session.post(f"/v1/models/{TOPAZ_IMAGE_UPSCALE}/predictions", json=upscale)).json()["id"])
    for prediction_id in ids:
        await settled(session, prediction_id)
    assert server.counts.paid == {FLUX_KONTEXT_PRO: 1, TOPAZ_IMAGE_UPSCALE: 1}
    assert server.counts.billed_usd() == pytest.approx(replicate_models()[FLUX_KONTEXT_PRO].price_usd_per_prediction)
