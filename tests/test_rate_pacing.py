"""Pacing against a strict-window OpenAI emulator: the advertised limit used, never exceeded, whether
it counts images or, for GPT image models, tokens too.

The runner with the real ``openai`` client (through the OpenAI backend) against the emulator's
sliding window, with its window shortened to a few seconds (``limit_window_s`` tells the runner).
What is asserted is what the server saw: when it admitted each request and what it refused.
"""

from __future__ import annotations

import gc
import statistics

import pytest

from imggen.backends.openai_images import OpenAIImageBackend
from imggen.backends.openai_models import get_model
from imggen.emulators.openai_images_route import request_tokens
from imggen.emulators.openai_server import OpenAIEmulatorConfig, start_openai_emulator
from imggen.engine.ledger import Ledger
from imggen.engine.runner import RateLimit, Runner, RunnerConfig
from imggen.engine.tasks import Outcome

from conftest import make_tasks

pytestmark = [pytest.mark.serial, pytest.mark.clock]  # pacing at the limit is timed against the clock

KEY = "sk-pacing-test-0123456789abcdef"
LIMIT, WINDOW_S = 20, 4.0  # 20 images per 4 s: 300/min, a strict window


@pytest.fixture
async def strict_server():
    servers = []

    async def _start(**settings):
        config = {"images_per_minute": LIMIT, "window_s": WINDOW_S, "latency_s": 0.3, "jitter_s": 0.1,
                  "render_max_side": 16, "seed": 3, **settings}
        server = await start_openai_emulator(OpenAIEmulatorConfig(**config))
        servers.append(server)
        gc.collect()  # the garbage of earlier tests is not collected between a start and its request
        return server

    yield _start
    for server in servers:
        await server.stop()


async def run_through(server, out, count: int, **config):
    """``count`` images through the runner and the OpenAI backend; the runner's summary."""
    backend = OpenAIImageBackend(api_key=KEY, base_url=server.base_url)

    async def work(task):
        image = await backend.generate(f"image {task.key}", model="gpt-image-2", size="1024x1024", quality="low")
        return Outcome(cost=image.cost or 0.0, rate=image.rate)

    try:
        with Ledger(out) as ledger:
            runner_config = RunnerConfig(**{"limit_window_s": WINDOW_S, **config})
            return await Runner(ledger, work, config=runner_config).run(make_tasks(count))
    finally:
        await backend.aclose()


def admitted(server) -> list[float]:
    return sorted(r.admitted for r in server.requests if r.status == 200)


def late_429s(server) -> int:
    first = min(r.time for r in server.requests)
    return sum(1 for r in server.requests if r.status == 429 and r.time > first + WINDOW_S)


def busiest(times: list[float], span_s: float) -> int:
    """The most admissions inside any ``span_s`` seconds."""
    return max(sum(1 for t in times[i:] if t < start + span_s) for i, start in enumerate(times))


def assert_paced_at_the_limit(times: list[float]) -> None:
    steady = [t for t in times if t > times[0] + WINDOW_S]  # after the first window
    for sub_window in (WINDOW_S / 6, WINDOW_S / 2):  # e.g. 10 s and 30 s of a minute
        assert busiest(steady, sub_window) <= LIMIT * sub_window / WINDOW_S + 1
    # ...and the limit is used: the steady part runs at >= 95% of it
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert rate >= 0.95 * LIMIT / WINDOW_S


@pytest.mark.slow
async def test_without_rpm_the_headers_limit_becomes_one_lasting_pace(strict_server, out):
    server = await strict_server()
    summary = await run_through(server, out, 3 * LIMIT, concurrency=32)
    assert summary.state == "finished" and summary.progress.done == 3 * LIMIT
    assert late_429s(server) == 0
    assert_paced_at_the_limit(admitted(server))


@pytest.mark.slow
async def test_rpm_spaces_at_exactly_the_rate_and_meets_no_429(strict_server, out):
    server = await strict_server()
    summary = await run_through(server, out, 3 * LIMIT, concurrency=32, rate_limit=RateLimit(LIMIT, WINDOW_S))
    assert summary.state == "finished" and summary.progress.done == 3 * LIMIT
    assert [r.status for r in server.requests].count(429) == 0
    times = admitted(server)
    assert_paced_at_the_limit(times)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert statistics.median(gaps) == pytest.approx(WINDOW_S / LIMIT, rel=0.03)  # not 5% faster


@pytest.mark.parametrize("retry_after_form", ["none", "malformed"])
async def test_a_429_without_a_readable_wait_is_paced_by_the_servers_count(strict_server, out, retry_after_form):
    server = await strict_server(images_per_minute=5, window_s=1.0, latency_s=0.05, jitter_s=0.0,
                                 retry_after_form=retry_after_form)
    summary = await run_through(server, out, 12, concurrency=8, limit_window_s=1.0)
    assert summary.state == "finished" and summary.progress.done == 12 and summary.progress.failed == 0
    assert summary.progress.rate_limit_hits >= 1  # the first burst of 8 met the window
    # 12 images at 5 per second: about 2.5 s, not the 10 s default wait nor a permanent failure
    took = max(admitted(server)) - min(r.time for r in server.requests)
    assert took < 4.0


@pytest.mark.parametrize("rate_header_form", ["no_remaining", "none", "malformed"])
async def test_absent_or_malformed_rate_headers_still_finish_the_run(strict_server, out, rate_header_form):
    server = await strict_server(images_per_minute=5, window_s=1.0, latency_s=0.05, jitter_s=0.0,
                                 rate_header_form=rate_header_form)
    summary = await run_through(server, out, 12, concurrency=8, limit_window_s=1.0)
    assert summary.state == "finished" and summary.progress.done == 12 and summary.progress.failed == 0
    assert busiest(admitted(server), 1.0) <= 5


def tokens_of_one_image() -> int:
    """What one of ``run_through``'s images counts against a tokens limit (its answer's usage)."""
    return request_tokens({"prompt": "image t000", "size": "1024x1024", "quality": "low"}, get_model("gpt-image-2"))


@pytest.mark.slow
async def test_a_tokens_limit_sets_the_pace_from_the_headers_and_the_answers_usage(strict_server, out):
    each = tokens_of_one_image()
    # images would allow ten times more: the tokens limit binds at LIMIT images a window
    server = await strict_server(images_per_minute=10 * LIMIT, tokens_per_minute=LIMIT * each)
    summary = await run_through(server, out, 3 * LIMIT, concurrency=32)
    assert summary.state == "finished" and summary.progress.done == 3 * LIMIT
    assert summary.progress.limit_by == "tokens"
    assert summary.progress.limit_per_min == pytest.approx(LIMIT * 60 / WINDOW_S, rel=0.02)
    assert late_429s(server) == 0
    assert_paced_at_the_limit(admitted(server))


async def test_tpm_paces_an_account_whose_headers_say_nothing(strict_server, out):
    # A 2 s window: the pacer's margin for the way from a start to the server is 5 % of a short window.
    # With a 1 s window (a 50 ms margin) and the other clock tests running beside it, the server
    # refused the sixth request in 2 of 5 runs; with 2 s (100 ms), none of 6.
    each, window_s = tokens_of_one_image(), 2.0
    server = await strict_server(images_per_minute=100, tokens_per_minute=5 * each, window_s=window_s,
                                 latency_s=0.05, jitter_s=0.0, rate_header_form="none")
    summary = await run_through(server, out, 12, concurrency=8, limit_window_s=window_s,
                                tokens_per_min=5 * each * 60 / window_s, tokens_each=each)
    assert summary.state == "finished" and summary.progress.done == 12
    assert [r.status for r in server.requests].count(429) == 0  # paced by --tpm from the first request
    assert busiest(admitted(server), window_s) <= 5
