"""The judge's and the captions' questions keep to the account's chat limits: the real ``openai`` client
against the emulator limiting chat tokens per minute, the pace learned from the answers' headers and usage."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from imggen.backends.openai_images import OpenAIImageBackend
from imggen.backends.vision_calls import VisionCalls
from imggen.emulators.openai_server import OpenAIEmulatorConfig, start_openai_emulator
from imggen.engine.budget import Budget
from imggen.engine.paid_calls import PaidCalls
from imggen.engine.retry import RetryPolicy, retried

WINDOW_S = 2.0
QUESTIONS = 9


def picture() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 40)).save(buffer, "PNG")
    return buffer.getvalue()


async def ask_all(server, tmp_path, *, paced: bool) -> VisionCalls:
    """Every question asked at once and retried on a 429 as a run retries a task."""
    backend = OpenAIImageBackend(base_url=server.base_url, api_key="sk-test")
    calls = VisionCalls(PaidCalls(tmp_path / ("paced" if paced else "unpaced")), Budget(None), window_s=WINDOW_S)
    image = picture()

    def question():
        send = lambda: backend.ask_about_image(image, "Describe this picture in one sentence.")  # noqa: E731
        return calls.ask(send) if paced else send()

    try:
        await asyncio.gather(*(retried(question, RetryPolicy(max_attempts=20)) for _ in range(QUESTIONS)))
    finally:
        await backend.aclose()
    return calls


def late_429s(server) -> int:
    first = min(r.time for r in server.requests)
    return sum(r.status == 429 for r in server.requests if r.time > first + WINDOW_S)


@pytest.mark.serial
@pytest.mark.clock  # the pace is timed against the clock
async def test_questions_keep_to_the_chat_tokens_per_minute_after_the_first_window(tmp_path):
    probe = await start_openai_emulator(OpenAIEmulatorConfig())
    try:
        backend = OpenAIImageBackend(base_url=probe.base_url, api_key="sk-test")
        each = (await backend.ask_about_image(picture(), "Describe this picture in one sentence.")).usage["total_tokens"]
        await backend.aclose()
    finally:
        await probe.stop()
    limits = dict(chat_tokens_per_minute=3 * each, window_s=WINDOW_S, latency_s=0.05)

    unpaced = await start_openai_emulator(OpenAIEmulatorConfig(**limits))
    try:
        await ask_all(unpaced, tmp_path, paced=False)
    finally:
        await unpaced.stop()
    assert late_429s(unpaced) > 0  # retrying alone keeps knocking at the limit

    server = await start_openai_emulator(OpenAIEmulatorConfig(**limits))
    try:
        calls = await ask_all(server, tmp_path, paced=True)
    finally:
        await server.stop()
    answered = [r for r in server.requests if r.status == 200]
    assert len(answered) == QUESTIONS and all(r.usage["total_tokens"] == each for r in answered)
    assert late_429s(server) == 0
    assert calls.pacing.binding == "tokens"
    assert {r.path for r in server.requests} == {"/v1/chat/completions"}
