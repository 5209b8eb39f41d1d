"""The local OpenAI emulator, driven by the real ``openai`` client over 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import jsonschema
import openai
import pydantic
import pytest
from PIL import Image

from imggen.backends.openai_errors import parse_go_duration
from imggen.backends.openai_models import DEFAULT_MODEL, load_registry
from imggen.emulators.openai_server import OpenAIEmulatorConfig, openai_emulator_in_thread, start_openai_emulator
from imggen.emulators.prompt_pictures import draw_prompt_picture

SPEC = json.loads((Path(__file__).parent / "specs" / "openai-responses.json").read_text())


def assert_matches_spec(body: dict, schema_name: str) -> None:
    validator = jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema_name}", **SPEC})
    validator.validate(body)


@pytest.fixture
async def start():
    """Start emulators with small pictures and the given settings; stop them after the test."""
    servers = []

    async def _start(**settings):
        server = await start_openai_emulator(OpenAIEmulatorConfig(**{"render_max_side": 32, **settings}))
        servers.append(server)
        return server

    yield _start
    for server in servers:
        await server.stop()


def client_for(server, **options) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test-key", base_url=server.base_url, max_retries=0, **options)


def decode(b64: str) -> Image.Image:
    picture = Image.open(io.BytesIO(base64.b64decode(b64)))
    picture.load()
    return picture


async def test_gpt_image_answer_is_base64_with_usage_and_matches_the_spec(start):
    server = await start(images_per_minute=7)
    raw = await client_for(server).images.with_raw_response.generate(
        model="gpt-image-1.5", prompt="a red fox", size="1536x1024", quality="low"
    )
    body = json.loads(raw.content)
    assert_matches_spec(body, "ImagesResponse")
    assert set(body["data"][0]) == {"b64_json"}
    assert body["size"] == "1536x1024" and body["quality"] == "low" and body["output_format"] == "png"
    assert body["usage"]["output_tokens"] == load_registry()["gpt_image_1_output_tokens"]["low"]["1536x1024"]
    picture = decode(body["data"][0]["b64_json"])
    assert picture.format == "PNG" and picture.size == (32, 21)  # drawn small, requested aspect kept
    assert raw.headers["x-ratelimit-limit-requests"] == "7"
    assert raw.headers["x-ratelimit-remaining-requests"] == "6"
    assert raw.headers["x-request-id"].startswith("req_")


async def test_dalle3_answers_a_url_the_emulator_serves_with_a_revised_prompt(start):
    server = await start()
    client = client_for(server)
    raw = await client.images.with_raw_response.generate(model="dall-e-3", prompt="a lighthouse", style="natural")
    body = json.loads(raw.content)
    assert_matches_spec(body, "ImagesResponse")
    item = body["data"][0]
    assert "usage" not in body and "b64_json" not in item
    assert item["revised_prompt"].startswith("a lighthouse") and "natural" in item["revised_prompt"]
    assert item["url"].startswith(server.origin + "/files/")
    async with aiohttp.ClientSession() as session, session.get(item["url"]) as fetched:
        assert fetched.status == 200 and fetched.headers["content-type"] == "image/png"
        Image.open(io.BytesIO(await fetched.read())).verify()

    b64 = await client.images.generate(model="dall-e-3", prompt="a lighthouse", response_format="b64_json")
    assert b64.data[0].url is None and decode(b64.data[0].b64_json).format == "PNG"


async def test_pictures_follow_the_prompt(start):
    server = await start()
    client = client_for(server)

    async def picture(prompt: str) -> bytes:
        result = await client.images.generate(model="gpt-image-2", prompt=prompt, size="1024x1024")
        return base64.b64decode(result.data[0].b64_json)

    first, again, other = await picture("a blue whale"), await picture("a blue whale"), await picture("a green frog")
    assert first == again
    assert first != other


async def test_render_scale_draws_fewer_pixels_but_reports_the_requested_size(start):
    server = await start(render_scale=0.05, render_max_side=None)
    result = await client_for(server).images.generate(model="gpt-image-2", prompt="x", size="1536x864")
    assert result.size == "1536x864"
    assert decode(result.data[0].b64_json).size == (77, 43)


@pytest.mark.parametrize(
    ("model", "size", "code", "param"),
    [
        ("dall-e-3", "1536x1024", "invalid_size", None),
        ("gpt-image-1.5", "512x512", "invalid_value", "size"),
        ("gpt-image-2", "1000x1000", "invalid_value", "size"),  # not multiples of 16
        ("gpt-image-2", "3840x1024", "invalid_value", "size"),  # wider than 3:1
        ("gpt-image-2.6-sunburst", "1536x864", "invalid_value", "size"),  # standard sizes only
    ],
)
async def test_sizes_a_model_does_not_take_get_the_apis_400(start, model, size, code, param):
    server = await start()
    with pytest.raises(openai.BadRequestError) as caught:
        await client_for(server).images.generate(model=model, prompt="x", size=size)
    assert_matches_spec(json.loads(caught.value.response.content), "ErrorResponse")
    assert (caught.value.code, caught.value.param) == (code, param)
    assert server.requests[-1].status == 400 and server.requests[-1].images == 0


@pytest.mark.parametrize(("model", "size"), [("gpt-image-2", "1536x864"), ("dall-e-3", "1792x1024")])
async def test_sizes_a_model_takes_are_served(start, model, size):
    server = await start()
    result = await client_for(server).images.generate(model=model, prompt="x", size=size)
    assert result.data


async def test_other_parameters_are_checked_per_model(start):
    client = client_for(await start())
    with pytest.raises(openai.BadRequestError) as caught:
        await client.images.generate(model="gpt-image-1.5", prompt="x", response_format="url")
    assert (caught.value.code, caught.value.param) == ("unknown_parameter", "response_format")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.images.generate(model="dall-e-3", prompt="x", n=2)
    assert "n=1" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        await client.images.generate(model="gpt-image-2", prompt="x", quality="hd")
    assert (caught.value.code, caught.value.param) == ("invalid_value", "quality")


async def test_the_images_per_minute_window_holds_and_429s_say_when_to_return(start):
    limit, window = 3, 1.0
    server = await start(images_per_minute=limit, window_s=window)
    client = client_for(server)
    outcomes = []

    async def one(i: int) -> None:
        try:
            await client.images.generate(model="gpt-image-2", prompt=f"p{i}")
            outcomes.append("ok")
        except openai.RateLimitError as exc:
            assert exc.code == "rate_limit_exceeded"
            wait_ms = int(exc.response.headers["retry-after-ms"])
            assert int(exc.response.headers["retry-after"]) >= 1 and 0 < wait_ms <= window * 1000
            assert exc.response.headers["x-ratelimit-remaining-requests"] == "0"
            outcomes.append("429")
            await asyncio.sleep(wait_ms / 1000)
            await one(i)

    deadline = time.monotonic() + 2.5 * window
    while time.monotonic() < deadline:  # keep 6 callers pushing for 2.5 windows
        await asyncio.gather(*(one(i) for i in range(6)))
    accepted = sorted(r.admitted for r in server.requests if r.status == 200)
    assert "429" in outcomes and len(accepted) >= limit * 2
    for i, start_time in enumerate(accepted):  # no more than `limit` admitted inside any window
        inside = [t for t in accepted[i:] if t < start_time + window - 0.01]
        assert len(inside) <= limit


async def test_the_reset_header_is_the_time_until_the_window_is_full_again(start):
    server = await start(images_per_minute=3, window_s=2.0)
    client = client_for(server)
    await client.images.generate(model="gpt-image-2", prompt="first")
    await asyncio.sleep(0.6)
    raw = await client.images.with_raw_response.generate(model="gpt-image-2", prompt="second")
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    # not when the first one leaves the window (~1.4 s) but when the second does (~2 s)
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    assert 1.8 <= parse_go_duration(raw.headers["x-ratelimit-reset-requests"]) <= 2.0


@pytest.mark.parametrize("kind", ["sliding_next", "fixed", "bucket"])
async def test_each_way_of_counting_the_limit_serves_the_real_client(start, kind):
    server = await start(images_per_minute=2, window_s=30.0, window_kind=kind)
    client = client_for(server)
    for prompt in ("one", "two"):
        await client.images.generate(model="gpt-image-2", prompt=prompt)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.images.generate(model="gpt-image-2", prompt="three")
    assert 0 < float(caught.value.response.headers["retry-after-ms"]) <= 30_000
    with pytest.raises(ValueError, match="unknown window kind"):
        await start(window_kind="leaky")


async def refusal(server) -> openai.RateLimitError:
    client = client_for(server)
    await client.images.generate(model="gpt-image-2", prompt="fills the window")
    with pytest.raises(openai.RateLimitError) as caught:
        await client.images.generate(model="gpt-image-2", prompt="one too many")
    return caught.value


@pytest.mark.parametrize(("form", "sent"), [
    ("seconds_and_ms", {"retry-after", "retry-after-ms"}), ("seconds", {"retry-after"}), ("date", {"retry-after"}),
    ("none", set()), ("malformed", {"retry-after", "retry-after-ms"}),
])
async def test_a_429_says_when_to_return_in_each_form_the_api_may_use(start, form, sent):
    headers = (await refusal(await start(images_per_minute=1, window_s=30, retry_after_form=form))).response.headers
    assert {name for name in ("retry-after", "retry-after-ms") if name in headers} == sent
    if form in ("seconds", "seconds_and_ms"):
        assert headers["retry-after"] == "30"
    if form == "seconds_and_ms":
        assert 29_000 < int(headers["retry-after-ms"]) <= 30_000
    if form == "date":
        when = email.utils.parsedate_to_datetime(headers["retry-after"])
        assert when.tzinfo is not None and 29 <= when.timestamp() - time.time() <= 32
    if form == "malformed":
        assert (headers["retry-after"], headers["retry-after-ms"]) == ("in a moment", "NaN")


@pytest.mark.parametrize(("form", "present"), [
    ("all", {"limit", "remaining", "reset"}), ("no_remaining", {"limit", "reset"}), ("none", set()),
    ("malformed", {"limit", "remaining", "reset"}),
])
async def test_rate_limit_headers_can_be_partial_absent_or_malformed(start, form, present):
    server = await start(images_per_minute=7, rate_header_form=form)
    raw = await client_for(server).images.with_raw_response.generate(model="gpt-image-2", prompt="x")
    sent = {name: raw.headers[f"x-ratelimit-{name}-requests"] for name in ("limit", "remaining", "reset")
            if f"x-ratelimit-{name}-requests" in raw.headers}
    assert set(sent) == present
    if form == "all":
        assert sent["limit"] == "7" and sent["remaining"] == "6"
    if form == "malformed":
        assert sent["limit"] != "7" and parse_go_duration(sent["reset"]) is None
    assert raw.headers["x-request-id"].startswith("req_")


async def test_scripted_faults_reach_the_client_as_the_api_sends_them(start):
    server = await start(slow_s=2.0)
    client = client_for(server, timeout=0.5)
    server.fail_next("server_error")
    with pytest.raises(openai.InternalServerError) as caught:
        await client.images.generate(model="gpt-image-2", prompt="x")
    assert caught.value.status_code == 500 and caught.value.type == "server_error"
    server.fail_next("overloaded")
    with pytest.raises(openai.InternalServerError) as caught:
        await client.images.generate(model="gpt-image-2", prompt="x")
    assert (caught.value.status_code, caught.value.code) == (503, "server_is_overloaded")
    server.fail_next("drop")
    with pytest.raises(openai.APIConnectionError) as dropped:
        await client.images.generate(model="gpt-image-2", prompt="x")
    assert not isinstance(dropped.value, openai.APITimeoutError)
    server.fail_next("slow")
    with pytest.raises(openai.APITimeoutError):
        await client.images.generate(model="gpt-image-2", prompt="x")
    server.fail_next("slow_down")
    with pytest.raises(openai.RateLimitError) as caught:
        await client.images.generate(model="gpt-image-2", prompt="x")
    assert caught.value.code == "slow_down" and caught.value.response.headers["retry-after"] == "1"
    assert (await client.images.generate(model="gpt-image-2", prompt="x")).data  # the script is spent
    assert [r.status for r in server.requests][:3] == [500, 503, None]  # None: dropped without an answer


@pytest.mark.parametrize(
    ("model", "code", "error_type"),
    [("dall-e-3", "content_policy_violation", "invalid_request_error"),
     ("gpt-image-2", "moderation_blocked", "image_generation_user_error")],
)
async def test_the_trigger_word_is_refused_by_the_safety_system(start, model, code, error_type):
    server = await start(blocked_word="FORBIDDEN")
    with pytest.raises(openai.BadRequestError) as caught:
        await client_for(server).images.generate(model=model, prompt="a FORBIDDEN scene")
    assert (caught.value.code, caught.value.type) == (code, error_type)


async def test_quota_runs_out_and_can_be_restored(start):
    server = await start(quota_images=2)
    client = client_for(server)
    for _ in range(2):
        await client.images.generate(model="gpt-image-2", prompt="x")
    with pytest.raises(openai.RateLimitError) as caught:
        await client.images.generate(model="gpt-image-2", prompt="x")
    assert caught.value.code == "insufficient_quota" and caught.value.type == "insufficient_quota"
    server.set_quota(1)
    await client.images.generate(model="gpt-image-2", prompt="x")
    with pytest.raises(openai.RateLimitError):
        await client.images.generate(model="gpt-image-2", prompt="x")


async def test_random_faults_follow_the_configured_rates(start):
    server = await start(error_rate=0.5, seed=7)
    client = client_for(server)
    statuses = []
    for i in range(40):
        try:
            await client.images.generate(model="gpt-image-2", prompt=f"p{i}")
            statuses.append(200)
        except openai.InternalServerError as exc:
            statuses.append(exc.status_code)
    failures = sum(s >= 500 for s in statuses)
    assert 10 <= failures <= 30 and {500, 503} <= set(statuses)


async def test_request_log_and_wrong_key(start):
    server = await start(api_key="sk-right-key-0123456789")
    wrong = openai.AsyncOpenAI(api_key="sk-wrong-key-9876543210", base_url=server.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await wrong.images.generate(model="gpt-image-2", prompt="x")
    assert caught.value.code == "invalid_api_key" and "sk-wrong-key-9876543210" not in caught.value.message
    right = openai.AsyncOpenAI(api_key="sk-right-key-0123456789", base_url=server.base_url, max_retries=0)
    before = time.time()
    await right.images.generate(model="gpt-image-2", prompt="a kite")
    record = server.requests[-1]
    assert (record.method, record.path, record.model, record.prompt, record.status, record.images) == (
        "POST", "/v1/images/generations", "gpt-image-2", "a kite", 200, 1)
    assert before - 1 <= record.time <= time.time()
    assert server.requests[0].status == 401


async def test_unknown_routes_answer_the_error_envelope(start):
    server = await start()
    async with aiohttp.ClientSession() as session:
        async with session.post(server.base_url + "/nope", headers={"Authorization": "Bearer k"}) as response:
            assert response.status == 404
            assert_matches_spec(await response.json(), "ErrorResponse")


def grid_image(tile_prompts: list[str], grid: int, tile: int = 48) -> bytes:
    canvas = Image.new("RGB", (grid * tile, grid * tile))
    for index, prompt in enumerate(tile_prompts):
        picture = Image.open(io.BytesIO(draw_prompt_picture(prompt, tile, tile)))
        canvas.paste(picture, ((index % grid) * tile, (index // grid) * tile))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


async def test_vision_judge_names_the_truly_unique_tiles_of_a_grid(start):
    server = await start()
    prompts = ["cat", "dog", "cat", "owl", "eel", "dog", "fox", "ant", "cat"]  # unique: owl eel fox ant
    expected = [i for i, p in enumerate(prompts) if prompts.count(p) == 1]
    raw = await client_for(server).chat.completions.with_raw_response.create(
        model="gpt-4.1-mini",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "This is a 3x3 grid. Which tiles are unique? Answer with a JSON list."},
            {"type": "image_url", "image_url": {"url": data_uri(grid_image(prompts, 3)), "detail": "high"}},
        ]}],
    )
    body = json.loads(raw.content)
    assert_matches_spec(body, "CreateChatCompletionResponse")
    assert json.loads(body["choices"][0]["message"]["content"]) == expected == [3, 4, 6, 7]
    assert "x-ratelimit-remaining-requests" in raw.headers


async def test_vision_judge_takes_separate_tiles_urls_and_json_object_mode(start):
    server = await start()
    tile_urls = []
    client = client_for(server)
    for prompt in ["sun", "moon", "sun", "star"]:  # served by the emulator, fetched over http
        made = await client.images.generate(model="dall-e-3", prompt=prompt)
        tile_urls.append(made.data[0].url)
    completion = await client.chat.completions.create(
        model="gpt-4.1-mini", response_format={"type": "json_object"},
        messages=[{"role": "user", "content": [{"type": "text", "text": "Which of these tiles are unique?"}]
                   + [{"type": "image_url", "image_url": {"url": u}} for u in tile_urls]}],
    )
    # dall-e-3 pictures come from the prompt, so the two "sun" tiles are identical
    assert json.loads(completion.choices[0].message.content) == {"unique_tiles": [1, 3]}


class UniqueTiles(pydantic.BaseModel):
    unique_tiles: list[int]
    reason: str


async def test_parse_with_a_schema_and_the_calls_the_spec_makes_optional_or_the_emulator_leaves_out(start):
    server = await start(allow_retired=False)  # as the service: retired models are gone
    client = client_for(server)
    prompts = ["cat", "dog", "cat", "owl"]
    parsed = await client.chat.completions.parse(  # sends response_format json_schema
        model="gpt-4.1-mini", response_format=UniqueTiles,
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "This is a 2x2 grid. Which tiles are unique?"},
            {"type": "image_url", "image_url": {"url": data_uri(grid_image(prompts, 2))}}]}],
    )
    assert parsed.choices[0].message.parsed.unique_tiles == [1, 3]

    made = await client.images.generate(prompt="a kite")  # model is optional in the spec
    assert made.data and server.requests[-1].model == DEFAULT_MODEL

    listed = {model.id async for model in client.models.list()}
    assert {DEFAULT_MODEL, "gpt-4.1-mini"} <= listed and "gpt-image-1" not in listed  # no retired model
    assert (await client.models.retrieve(DEFAULT_MODEL)).id == DEFAULT_MODEL
    with pytest.raises(openai.NotFoundError) as missing:
        await client.images.edit(model=DEFAULT_MODEL, image=("a.png", grid_image(prompts, 2)), prompt="x")
    assert missing.value.code == "not_emulated" and "/v1/images/edits" in missing.value.message


async def test_vision_rejects_an_unreadable_image(start):
    server = await start()
    with pytest.raises(openai.BadRequestError) as caught:
        await client_for(server).chat.completions.create(
            model="gpt-4.1-mini",
            messages=[{"role": "user", "content": [{"type": "text", "text": "2x2?"},
                                                    {"type": "image_url", "image_url": {"url": data_uri(b"nope")}}]}],
        )
    assert caught.value.code == "invalid_image_format"


def test_thread_variant_serves_synchronous_callers():
    with openai_emulator_in_thread(OpenAIEmulatorConfig(render_max_side=16, images_per_minute=2)) as server:
        client = openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
        assert client.images.generate(model="gpt-image-2", prompt="x").data
        server.fail_next("server_error")
        with pytest.raises(openai.InternalServerError):
            client.images.generate(model="gpt-image-2", prompt="x")
        with pytest.raises(openai.RateLimitError):
            client.images.generate(model="gpt-image-2", prompt="x")
    assert [r.status for r in server.requests] == [200, 500, 429]


@pytest.mark.timeout(60)
def test_command_line_serves_on_the_given_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "imggen.emulators.openai_server", "--port", str(port), "--rpm", "2",
         "--render-max-side", "16"], stdout=subprocess.PIPE, text=True,
    )
    try:
        assert f"127.0.0.1:{port}/v1" in process.stdout.readline()
        client = openai.OpenAI(api_key="sk-test", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
        raw = client.images.with_raw_response.generate(model="gpt-image-2", prompt="x")
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
    finally:
        process.terminate()
        process.wait(timeout=10)

