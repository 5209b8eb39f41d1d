"""The OpenAI backend and model registry, against the local emulator with the real ``openai`` client."""

from __future__ import annotations

import datetime as dt
import io
import time

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from imggen.backends.image_download import download_image
from imggen.backends.openai_errors import parse_go_duration, rate_hint, retry_after
from imggen.backends.openai_images import OpenAIImageBackend
from imggen.backends.openai_vision import parse_tile_answer, tile_question
from imggen.backends.openai_vision import price_known as vision_price_known
from imggen.backends.openai_models import (
    DEFAULT_MODEL, ModelUnavailableError, cost_from_usage, estimate_cost, get_model, load_registry, model_ids,
    price,
)
from imggen.emulators.openai_chat_route import REFUSAL
from imggen.emulators.openai_server import OpenAIEmulatorConfig, start_openai_emulator
from imggen.emulators.prompt_pictures import draw_prompt_picture
from imggen.engine.errors import ErrorKind, RateHint, TaskError
from vision_prices import VISION_TEST_PRICES, price_vision_model

KEY = "sk-test-4f9d2c7a1b3e5f60718293a4b5c6d7e8"
AS_OF = dt.date.fromisoformat(load_registry()["as_of"])


@pytest.fixture(autouse=True)
def no_real_openai_settings(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
async def start():
    """Start an emulator with the given settings and a backend on it; close both after the test."""
    opened = []

    async def _start(*, backend_options=None, **settings):
        server = await start_openai_emulator(OpenAIEmulatorConfig(**{"render_max_side": 32, **settings}))
        backend = OpenAIImageBackend(**{"api_key": KEY, "base_url": server.base_url, "today": AS_OF,
                                        **(backend_options or {})})
        opened.append((server, backend))
        return server, backend

    yield _start
    for server, backend in opened:
        await backend.aclose()
        await server.stop()


async def failure(coroutine) -> TaskError:
    with pytest.raises(TaskError) as caught:
        await coroutine
    return caught.value


# --- the registry -----------------------------------------------------------------------------


def test_retired_models_are_refused_naming_their_replacements():
    with pytest.raises(ModelUnavailableError, match="gpt-image-2.5-sunburst or gpt-image-2.5-flare"):
        get_model("gpt-image-1", AS_OF)
    with pytest.raises(ValueError, match="2026-05-12"):
        get_model("dall-e-3", AS_OF)
    with pytest.raises(ValueError, match="unknown OpenAI image model 'gpt-image-9'"):
        get_model("gpt-image-9", AS_OF)


def test_model_status_follows_the_shutdown_date():
    assert get_model("gpt-image-1-mini", AS_OF).status == "legacy"
    with pytest.raises(ModelUnavailableError, match="gpt-image-2.6-sunburst"):
        get_model("gpt-image-1-mini", dt.date(2026, 12, 1))
    assert get_model("dall-e-3", dt.date(2026, 5, 11)).status == "legacy"
    assert get_model(DEFAULT_MODEL, dt.date(2030, 1, 1)).status == "current"


def test_the_registry_file_is_consistent_with_itself():
    models = load_registry()["models"]
    for model_id in model_ids():
        entry = models[models[model_id]["snapshot_of"]] if "snapshot_of" in models[model_id] else models[model_id]
        spec = get_model(model_id, AS_OF, allow_retired=True)
        assert spec.status == entry["status"], model_id  # the stored status is the one on as_of
        assert all(r in models and get_model(r, AS_OF).status == "current" for r in spec.replacements), model_id
        for quality, by_size in spec.price_per_image.items():
            assert quality in spec.qualities and set(by_size) <= set(spec.sizes), model_id
        assert spec.price_per_image or spec.token_prices_per_million or "price" in spec.note, model_id
    assert get_model(DEFAULT_MODEL, AS_OF).status == "current"


def test_prices_come_from_the_registry_and_unknown_prices_stay_unknown():
    table = load_registry()["models"]["dall-e-3"]["price_per_image"]
    assert price("dall-e-3", "1792x1024", "hd") == table["hd"]["1792x1024"]
    assert price("gpt-image-2", "1024x1024", "high") is None  # no published price
    assert price("gpt-image-1.5", "auto", "auto") is None
    spec = get_model("gpt-image-2.6-sunburst", AS_OF)
    usage = {"input_tokens": 10, "output_tokens": 1000, "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}}
    prices = spec.token_prices_per_million
    expected = (10 * prices["text_input"] + 1000 * prices["image_output"]) / 1e6
    assert cost_from_usage(spec, usage) == pytest.approx(expected)


def test_snapshots_share_their_models_contract():
    snapshot = get_model("gpt-image-2.5-flare-2026-09-08", AS_OF)
    assert snapshot.id == "gpt-image-2.5-flare-2026-09-08"
    assert snapshot.qualities == get_model("gpt-image-2.5-flare", AS_OF).qualities


# --- generation -------------------------------------------------------------------------------


async def test_gpt_image_generation_returns_png_usage_cost_and_rate(start):
    server, backend = await start(images_per_minute=9)
    result = await backend.generate("a paper boat", model="gpt-image-2.6-sunburst", size="1024x1536", quality="high")
    assert Image.open(io.BytesIO(result.data)).format == "PNG"
    assert result.revised_prompt is None and result.usage["output_tokens"] > 0
    assert result.cost == pytest.approx(cost_from_usage(get_model("gpt-image-2.6-sunburst", AS_OF), result.usage))
    assert (result.rate.limit_per_min, result.rate.remaining) == (9.0, 8)
    assert 0 < result.rate.reset_s <= 60
    assert result.params["resolved"] == {"size": "1024x1536", "quality": "high", "background": "opaque",
                                         "output_format": "png"}
    assert server.requests[-1].prompt == "a paper boat"


async def test_auto_quality_is_priced_at_the_quality_the_api_reports(start):
    _, backend = await start()
    result = await backend.generate("x", model="gpt-image-1.5", size="1024x1024")
    reported = result.params["resolved"]["quality"]
    assert result.cost == price("gpt-image-1.5", "1024x1024", reported) is not None


async def test_url_answers_are_downloaded(start):
    server, backend = await start(backend_options={"allow_retired": True})
    result = await backend.generate("a lighthouse", model="dall-e-3", size="1792x1024", quality="hd", style="vivid")
    assert result.data == draw_prompt_picture("a lighthouse", 32, 18)  # the picture the emulator served
    assert result.revised_prompt.startswith("a lighthouse")
    assert result.cost == price("dall-e-3", "1792x1024", "hd")
    generation, download = server.requests
    assert (generation.path, generation.status, download.status) == ("/v1/images/generations", 200, 200)
    assert download.path.startswith("/files/")


async def test_b64_answers_of_a_url_model_are_decoded(start):
    server, backend = await start(backend_options={"allow_retired": True})
    result = await backend.generate("a lighthouse", model="dall-e-3", response_format="b64_json")
    assert result.data == draw_prompt_picture("a lighthouse", 32, 32)
    assert len(server.requests) == 1


async def test_expired_urls_fail_transiently(start):
    _, backend = await start(url_ttl_s=0.0, backend_options={"allow_retired": True})
    error = await failure(backend.generate("x", model="dall-e-3"))
    assert error.kind is ErrorKind.TRANSIENT and "HTTP 404" in error.message
    assert error.billed == pytest.approx(0.04)  # the answer was billed although its image is gone


async def test_bad_requests_fail_before_anything_is_sent(start):
    server, backend = await start()
    retired = await failure(backend.generate("x", model="dall-e-3"))
    assert retired.kind is ErrorKind.FATAL and "gpt-image-2.6-sunburst" in retired.message
    wrong_size = await failure(backend.generate("x", model="gpt-image-1.5", size="512x512"))
    assert wrong_size.kind is ErrorKind.PERMANENT and "size='512x512'" in wrong_size.message
    assert server.requests == []


# --- error mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind", "connection_error"),
    [("server_error", ErrorKind.TRANSIENT, False), ("overloaded", ErrorKind.TRANSIENT, False),
     ("drop", ErrorKind.TRANSIENT, True), ("slow", ErrorKind.TRANSIENT, False),
     ("rate_limit", ErrorKind.RATE_LIMITED, False), ("slow_down", ErrorKind.RATE_LIMITED, False)],
)
async def test_faults_map_to_error_kinds(start, fault, kind, connection_error):
    server, backend = await start(slow_s=2.0, backend_options={"timeout_s": 0.5})
    server.fail_next(fault)
    error = await failure(backend.generate("x", model="gpt-image-2"))
    assert (error.kind, error.connection_error) == (kind, connection_error)
    if kind is ErrorKind.RATE_LIMITED:
        assert error.retry_after == 1.0 and error.rate is not None


async def test_the_servers_own_rate_limit_says_how_long_to_wait(start):
    _, backend = await start(images_per_minute=1, window_s=30)
    await backend.generate("x", model="gpt-image-2")
    error = await failure(backend.generate("y", model="gpt-image-2"))
    assert error.kind is ErrorKind.RATE_LIMITED
    assert 29 < error.retry_after <= 30 and error.rate.remaining == 0 and error.rate.limit_per_min == 1


@pytest.mark.parametrize(("form", "low", "high"), [
    ("seconds_and_ms", 29, 30), ("seconds", 30, 30), ("date", 29, 32), ("none", None, None), ("malformed", None, None),
])
async def test_every_form_of_a_429_stays_a_rate_limit(start, form, low, high):
    _, backend = await start(images_per_minute=1, window_s=30, retry_after_form=form)
    await backend.generate("x", model="gpt-image-2")
    error = await failure(backend.generate("y", model="gpt-image-2"))
    assert error.kind is ErrorKind.RATE_LIMITED  # never a permanent failure, whatever the header says
    assert error.retry_after is None if low is None else low <= error.retry_after <= high
    assert error.rate.remaining == 0 and 29 < error.rate.reset_s <= 30


@pytest.mark.parametrize(("form", "limit", "remaining"), [
    ("all", 7.0, 6), ("no_remaining", 7.0, None)])
async def test_rate_headers_are_read_as_far_as_they_go(start, form, limit, remaining):
    _, backend = await start(images_per_minute=7, rate_header_form=form)
    result = await backend.generate("x", model="gpt-image-2")
    assert result.data and (result.rate.limit_per_min, result.rate.remaining) == (limit, remaining)


@pytest.mark.parametrize("form", ["none", "malformed"])
async def test_a_response_without_readable_rate_headers_has_no_hint(start, form):
    _, backend = await start(rate_header_form=form, tokens_per_minute=100_000)
    result = await backend.generate("x", model="gpt-image-2")
    # no budget is read from headers that cannot be read; what the answer counted comes from its usage
    assert result.data and result.rate == RateHint(tokens_used=result.usage["total_tokens"])


async def test_the_tokens_budget_and_the_answers_tokens_are_read(start):
    _, backend = await start(tokens_per_minute=100_000)
    result = await backend.generate("x", model="gpt-image-2", size="1024x1024", quality="low")
    used = result.usage["total_tokens"]
    assert (result.rate.tokens_limit_per_min, result.rate.tokens_remaining, result.rate.tokens_used) == (
        100_000, 100_000 - used, used)
    assert result.rate.limit_per_min is not None  # the requests budget beside it


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after-ms": "300", "retry-after": "1"}, 0.3), ({"retry-after": "2"}, 2.0),
    ({"retry-after-ms": "NaN", "retry-after": "2"}, 2.0), ({"retry-after": "soon"}, None),
    ({"retry-after": ""}, None), ({"retry-after": "nan"}, None), ({"retry-after": "inf"}, None),
    ({"retry-after": "Mon, 99 Foo 2026 99:99:99"}, None), ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
    ({}, None),
])
def test_retry_after_is_read_in_every_form_and_never_raises(headers, seconds):
    assert retry_after(headers) == seconds


@pytest.mark.parametrize(("headers", "hint"), [
    ({"x-ratelimit-limit-requests": "60", "x-ratelimit-reset-requests": "1s"}, RateHint(60.0, None, 1.0)),
    ({"x-ratelimit-limit-requests": "nan", "x-ratelimit-remaining-requests": "-1",
      "x-ratelimit-reset-requests": "-2s"}, None),
    ({"x-ratelimit-limit-requests": "inf", "x-ratelimit-remaining-requests": "2.5",
      "x-ratelimit-reset-requests": "6m0s"}, RateHint(None, None, 360.0)),
    ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "12ms"}, RateHint(None, 0, 0.012)),
])
def test_rate_hints_keep_what_is_readable_and_drop_the_rest(headers, hint):
    assert rate_hint(headers) == hint


async def test_a_stalled_request_times_out_as_transient_after_the_chosen_time(start):
    server, backend = await start(slow_s=5.0, backend_options={"timeout_s": 0.5})
    server.fail_next("slow")
    began = time.monotonic()
    error = await failure(backend.generate("x", model="gpt-image-2"))
    assert error.kind is ErrorKind.TRANSIENT and "timed out" in error.message
    assert time.monotonic() - began < 2.0


def test_each_model_has_a_request_timeout_that_fits_its_latency():
    assert get_model("gpt-image-2.6-sunburst").request_timeout_s == 120  # GPT images take 10-60 s
    assert get_model("dall-e-3", AS_OF, allow_retired=True).request_timeout_s == 60


@pytest.mark.parametrize(
    ("model", "code"), [("gpt-image-2", "moderation_blocked"), ("dall-e-3", "content_policy_violation")]
)
async def test_refused_prompts_are_permanent(start, model, code):
    _, backend = await start(backend_options={"allow_retired": True})
    error = await failure(backend.generate("a BLOCKED_PROMPT", model=model))
    assert error.kind is ErrorKind.PERMANENT and code in error.message


async def test_exhausted_quota_stops_the_run_and_says_what_to_do(start):
    server, backend = await start(quota_images=1)
    await backend.generate("x", model="gpt-image-2")
    error = await failure(backend.generate("y", model="gpt-image-2"))
    assert error.kind is ErrorKind.FATAL and "add credit" in error.message and "rerun" in error.message
    server.set_quota(None)
    assert (await backend.generate("y", model="gpt-image-2")).data


async def test_other_400s_are_permanent(start):
    _, backend = await start(backend_options={"allow_retired": True})
    error = await failure(backend.generate("x" * 4001, model="dall-e-3"))  # dall-e-3 takes 4000 characters
    assert error.kind is ErrorKind.PERMANENT and "string_above_max_length" in error.message


async def test_a_wrong_or_missing_key_is_fatal(start):
    server, _ = await start(api_key="sk-the-right-one-000000")
    wrong = OpenAIImageBackend(api_key=KEY, base_url=server.base_url, today=AS_OF)
    error = await failure(wrong.generate("x", model="gpt-image-2"))
    await wrong.aclose()
    assert error.kind is ErrorKind.FATAL and "API key" in error.message
    missing = OpenAIImageBackend(base_url=server.base_url, today=AS_OF)
    error = await failure(missing.generate("x", model="gpt-image-2"))
    assert error.kind is ErrorKind.FATAL and "OPENAI_API_KEY" in error.message


async def test_the_client_reads_key_and_url_from_the_environment(start, monkeypatch):
    server, _ = await start(api_key=KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    async with OpenAIImageBackend(today=AS_OF) as backend:
        assert (await backend.generate("x", model="gpt-image-2")).data


async def test_no_error_message_contains_the_api_key(start):
    """Every failure the backend raises, including a server that echoes the key back."""
    server, backend = await start(quota_images=0, api_key=KEY, backend_options={"allow_retired": True})
    errors = [await failure(backend.generate("x", model="gpt-image-2")),  # quota
              await failure(backend.generate("a BLOCKED_PROMPT", model="dall-e-3")),
              await failure(backend.generate("x", model="gpt-image-1.5", size="1x1"))]
    for fault in ("server_error", "drop", "rate_limit"):
        server.fail_next(fault)
        errors.append(await failure(backend.generate("x", model="gpt-image-2")))
    wrong_key = "sk-wrong-7d1e0c9b8a7f6e5d4c3b2a1908f7e6d5"
    async with OpenAIImageBackend(api_key=wrong_key, base_url=server.base_url, today=AS_OF) as wrong:
        errors.append(await failure(wrong.generate("x", model="gpt-image-2")))

    async def echo_key(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": f"bad request from {request.headers['Authorization']}",
                                            "type": "invalid_request_error", "param": None, "code": None}}, status=400)

    app = web.Application()
    app.router.add_post("/v1/images/generations", echo_key)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with OpenAIImageBackend(api_key=KEY, base_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v1",
                                      today=AS_OF) as echoing:
            echoed = await failure(echoing.generate("x", model="gpt-image-2"))
    finally:
        await runner.cleanup()
    assert "bad request from Bearer" in echoed.message
    for error in [*errors, echoed]:
        for secret in (KEY, wrong_key, KEY[-12:], wrong_key[-12:]):
            assert secret not in str(error) and secret not in error.message


# --- the tile judge ---------------------------------------------------------------------------


def grid_png(tile_prompts: list[str], grid: int, tile: int = 40) -> bytes:
    canvas = Image.new("RGB", (grid * tile, grid * tile))
    for index, prompt in enumerate(tile_prompts):
        canvas.paste(Image.open(io.BytesIO(draw_prompt_picture(prompt, tile, tile))),
                     ((index % grid) * tile, (index // grid) * tile))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("grid", [2, 3, 4])
async def test_the_judge_names_the_truly_unique_tiles(start, grid):
    _, backend = await start()
    prompts = [f"tile {i % (grid * grid // 2 + 1)}" for i in range(grid * grid)]  # the first tiles repeat
    expected = [i for i, p in enumerate(prompts) if prompts.count(p) == 1]
    assert 0 < len(expected) < grid * grid
    answer = await backend.ask_about_image(grid_png(prompts, grid), tile_question(grid), model="gpt-4.1-mini")
    assert parse_tile_answer(answer.text, grid * grid) == expected


async def test_judge_failures_map_like_generation_failures(start):
    server, backend = await start()
    server.fail_next("overloaded")
    error = await failure(backend.ask_about_image(grid_png(["a"] * 4, 2), tile_question(2), what="tile judging"))
    assert error.kind is ErrorKind.TRANSIENT and "tile judging" in error.message


async def test_a_vision_answer_costs_its_usage_at_the_models_token_prices(start, monkeypatch):
    priced = price_vision_model(monkeypatch, "gpt-4.1-mini", VISION_TEST_PRICES)
    server, backend = await start()
    answer = await backend.ask_about_image(grid_png(["a", "b", "c", "d"], 2), tile_question(2))
    billed = server.requests[-1].usage
    assert answer.usage == billed and answer.call_id.startswith("chatcmpl-") and answer.model == "gpt-4.1-mini"
    details = billed["prompt_tokens_details"]
    assert details["image_tokens"] > 85 and details["text_tokens"] + details["image_tokens"] == billed["prompt_tokens"]
    expected = (details["text_tokens"] * priced["text_input"] + details["image_tokens"] * priced["image_input"]
                + billed["completion_tokens"] * priced["output"]) / 1e6
    assert answer.cost == pytest.approx(expected) and answer.cost > 0

    server.set_chat_usage("counts")  # no details: every prompt token at the text price
    answer = await backend.ask_about_image(grid_png(["a", "b", "c", "d"], 2), tile_question(2))
    billed = server.requests[-1].usage
    assert answer.cost == pytest.approx((billed["prompt_tokens"] * priced["text_input"]
                                         + billed["completion_tokens"] * priced["output"]) / 1e6)

    server.set_chat_usage("none")  # the schema makes usage optional: the cost is unknown, not $0.00
    answer = await backend.ask_about_image(grid_png(["a", "b", "c", "d"], 2), tile_question(2))
    assert (answer.usage, answer.cost) == (None, None) and answer.text


async def test_a_model_without_known_prices_and_a_refusal_are_answers_of_unknown_cost(start):
    server, backend = await start()
    assert not vision_price_known("gpt-4.1-mini") and not vision_price_known("gpt-9-unlisted")
    answer = await backend.ask_about_image(grid_png(["a"] * 4, 2), tile_question(2), model="gpt-9-unlisted")
    assert answer.usage == server.requests[-1].usage and answer.cost is None
    server.refuse_next()
    refused = await backend.ask_about_image(grid_png(["a"] * 4, 2), "Caption this.")
    assert (refused.text, refused.refusal, refused.cost) == ("", REFUSAL, None)
    assert refused.usage == server.requests[-1].usage  # a refusal is billed like any answer


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("[3, 1]", [1, 3]), ("```json\n[0, 2]\n```", [0, 2]), ("```\n[]\n```", []), ('{"unique_tiles": [4]}', [4])],
)
def test_tile_answers_are_read_leniently(answer, expected):
    assert parse_tile_answer(answer, 9) == expected


@pytest.mark.parametrize("answer", ["tiles 1 and 3", "[9]", "[1, 1]", "[true]", '{"a": [1], "b": [2]}', ""])
def test_invalid_tile_answers_are_transient(answer):
    with pytest.raises(TaskError) as caught:
        parse_tile_answer(answer, 9)
    assert caught.value.kind is ErrorKind.TRANSIENT


# --- downloads and headers --------------------------------------------------------------------


async def test_downloads_retry_bounded_and_refuse_non_images_and_oversize():
    png = draw_prompt_picture("x", 16, 16)
    calls = {"flaky": 0}

    async def flaky(request):
        calls["flaky"] += 1
        return web.Response(status=503) if calls["flaky"] < 3 else web.Response(body=png, content_type="image/png")

    def always(**response):
        async def handler(request):
            return web.Response(**response)
        return handler

    routes = {
        "/flaky": flaky,
        "/down": always(status=500),
        "/html": always(text="<html>", content_type="text/html"),
        "/fake": always(body=b"not a png", content_type="image/png"),
        "/huge": always(body=png + b"\0" * 2000, content_type="image/png"),
    }
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as session:
            assert await download_image(session, base + "/flaky", attempts=3, backoff_s=0.01) == png
            down = await failure(download_image(session, base + "/down", attempts=2, backoff_s=0.01))
            assert down.kind is ErrorKind.TRANSIENT and "2 times" in down.message
            for path in ("/html", "/fake"):
                assert (await failure(download_image(session, base + path))).kind is ErrorKind.PERMANENT
            huge = await failure(download_image(session, base + "/huge", max_bytes=len(png) + 100))
            assert huge.kind is ErrorKind.PERMANENT and "larger" in huge.message
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("text", "seconds"), [("12ms", 0.012), ("1s", 1.0), ("6m0s", 360.0), ("1m30.5s", 90.5),
                                               ("2", 2.0), ("soon", None)])
def test_reset_durations_are_read_as_seconds(text, seconds):
    assert parse_go_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_budget_estimates_use_published_prices_then_token_prices():
    assert estimate_cost("gpt-image-1.5", "1024x1024", "low") == price("gpt-image-1.5", "1024x1024", "low")
    assert estimate_cost("gpt-image-1.5", "auto", "auto") == max(
        price("gpt-image-1.5", size, "high") for size in load_registry()["standard_sizes"])
    sunburst = get_model("gpt-image-2.6-sunburst", AS_OF)
    tokens = load_registry()["gpt_image_1_output_tokens"]["medium"]["1536x1024"]
    assert estimate_cost(sunburst, "1536x1024", "medium") == pytest.approx(
        tokens * sunburst.token_prices_per_million["image_output"] / 1e6)
    assert estimate_cost("gpt-image-2", "1024x1024", "high") is None  # nothing published
