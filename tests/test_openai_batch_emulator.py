"""The emulator's Files and Batch APIs, driven by the real ``openai`` client over 127.0.0.1: the documented
lifecycle, request counts, the output and error files' line formats, validation, limits, expiry and cancel."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from openai.types import Batch, FileObject

from imggen.backends.openai_models import batch_terms
from imggen.emulators.openai_batch_store import DAY_S, BatchEmulatorConfig
from imggen.emulators.openai_server import OpenAIEmulatorConfig, start_openai_emulator

ENDPOINT = "/v1/images/generations"


@pytest.fixture
async def start():
    servers = []

    async def _start(**batch_settings):
        server = await start_openai_emulator(OpenAIEmulatorConfig(render_max_side=16,
                                                                  batch=BatchEmulatorConfig(**batch_settings)))
        servers.append(server)
        return server, openai.AsyncOpenAI(api_key="sk-test-key", base_url=server.base_url, max_retries=0)

    yield _start
    for server in servers:
        await server.stop()


def lines(count: int, *, prompt: str = "a red fox", **extra) -> bytes:
    body = {"model": "gpt-image-1.5", "prompt": prompt, "size": "1024x1024", "quality": "low"}
    return "".join(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": ENDPOINT,
                               "body": {**body, "prompt": f"{prompt} {i}"}, **extra}) + "\n"
                   for i in range(count)).encode()


async def submit(client, data: bytes, **options) -> Batch:
    uploaded = await client.files.create(file=("requests.jsonl", data, "application/jsonl"), purpose="batch")
    return await client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h",
                                       **options)


async def until(client, batch: Batch, statuses: tuple[str, ...], seen: list[str] | None = None) -> Batch:
    for _ in range(2000):
        batch = await client.batches.retrieve(batch.id)
        if seen is not None and (not seen or seen[-1] != batch.status):
            seen.append(batch.status)
        if batch.status in statuses:
            return batch
        await asyncio.sleep(0.005)
    raise AssertionError(f"batch stayed {batch.status}")


async def result_lines(client, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(line) for line in (await client.files.content(file_id)).text.splitlines()]


async def test_a_batch_goes_through_the_documented_lifecycle_and_answers_each_line(start):
    server, client = await start(validating_s=0.1, line_s=0.03, finalizing_s=0.1)
    raw = json.loads((await submit(client, lines(4))).model_dump_json())
    assert set(Batch.model_fields) <= set(raw) and raw["status"] == "validating"
    batch = Batch.model_validate(raw)
    assert batch.completion_window == "24h" and batch.expires_at - batch.created_at == DAY_S
    seen: list[str] = []
    batch = await until(client, batch, ("completed",), seen)
    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 4, "failed": 0}
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at and batch.error_file_id is None
    output = await result_lines(client, batch.output_file_id)
    assert sorted(line["custom_id"] for line in output) == [f"req-{i}" for i in range(4)]
    line = output[0]
    assert set(line) == {"id", "custom_id", "response", "error"} and line["id"].startswith("batch_req_")
    assert line["error"] is None and line["response"]["status_code"] == 200
    assert line["response"]["request_id"].startswith("req_")
    assert line["response"]["body"]["data"][0]["b64_json"] and line["response"]["body"]["usage"]["output_tokens"]
    assert (await client.files.retrieve(batch.output_file_id)).purpose == "batch_output"
    assert sum(server.batches.billed.values()) == 4


async def test_failed_lines_go_to_the_error_file_with_the_endpoints_own_error(start):
    server, client = await start()
    data = lines(2) + lines(1, prompt="BLOCKED_PROMPT").replace(b"req-0", b"req-refused")
    data += json.dumps({"custom_id": "req-big", "method": "POST", "url": ENDPOINT,
                        "body": {"model": "gpt-image-1.5", "prompt": "x", "size": "999x999"}}).encode() + b"\n"
    batch = await until(client, await submit(client, data), ("completed",))
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 2}
    errors = {line["custom_id"]: line["response"] for line in await result_lines(client, batch.error_file_id)}
    assert errors["req-refused"]["status_code"] == 400
    assert errors["req-refused"]["body"]["error"]["code"] == "moderation_blocked"
    assert errors["req-big"]["status_code"] == 400 and errors["req-big"]["body"]["error"]["param"] == "size"
    assert set(server.batches.billed) == {"req-0", "req-1"}


async def test_a_bad_input_file_fails_the_batch_with_the_line_of_each_problem(start):
    _, client = await start()
    good = lines(2).splitlines()
    data = b"\n".join([good[0], good[0], b"not json", good[1].replace(ENDPOINT.encode(), b"/v1/embeddings")]) + b"\n"
    batch = await until(client, await submit(client, data), ("failed",))
    problems = [(error.line, error.code) for error in batch.errors.data]
    assert problems == [(2, "duplicate_custom_id"), (3, "invalid_json_line"), (4, "mismatched_endpoint")]
    assert batch.failed_at and batch.output_file_id is None and batch.request_counts.total == 0


async def test_the_documented_limits_hold(start):
    assert BatchEmulatorConfig().max_requests == 50_000 == batch_terms().max_requests_per_file
    assert BatchEmulatorConfig().max_file_bytes == 200_000_000 == batch_terms().max_input_file_bytes
    _, client = await start(max_requests=3, max_file_bytes=10_000)
    batch = await until(client, await submit(client, lines(4)), ("failed",))
    assert [error.code for error in batch.errors.data] == ["too_many_requests"]
    batch = await until(client, await submit(client, lines(3, prompt="x" * 4000)), ("failed",))
    assert [error.code for error in batch.errors.data] == ["file_too_large"]
    with pytest.raises(openai.BadRequestError) as refused:
        await submit(client, lines(1), metadata={f"k{i}": "v" for i in range(17)})
    assert refused.value.param == "metadata"
    uploaded = await client.files.create(file=("r.jsonl", lines(1), "application/jsonl"), purpose="batch")
    with pytest.raises(openai.BadRequestError) as window:
        await client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="1h")
    assert window.value.param == "completion_window"
    with pytest.raises(openai.NotFoundError):
        await client.batches.create(input_file_id="file-missing", endpoint=ENDPOINT, completion_window="24h")


async def test_a_batch_past_its_window_expires_with_batch_expired_lines(start):
    server, client = await start(line_s=0.05, completion_window_s=0.3)
    batch = await until(client, await submit(client, lines(20)), ("expired",))
    finished = await result_lines(client, batch.output_file_id)
    expired = await result_lines(client, batch.error_file_id)
    assert 0 < len(finished) < 20 and len(finished) + len(expired) == 20
    assert all(line["response"] is None and line["error"]["code"] == "batch_expired" for line in expired)
    assert batch.expired_at and batch.request_counts.failed == len(expired)
    assert sum(server.batches.billed.values()) == len(finished)


async def test_cancel_goes_through_cancelling_and_keeps_the_finished_lines(start):
    _, client = await start(line_s=0.05, cancelling_s=0.2)
    batch = await until(client, await submit(client, lines(20)), ("in_progress",))
    await asyncio.sleep(0.2)
    cancelling = await client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    batch = await until(client, batch, ("cancelled",))
    assert 0 < batch.request_counts.completed < 20 and batch.cancelled_at
    assert len(await result_lines(client, batch.output_file_id)) == batch.request_counts.completed
    with pytest.raises(openai.ConflictError):
        await client.batches.cancel(batch.id)


async def test_files_can_be_listed_read_and_deleted(start):
    _, client = await start()
    first = await client.files.create(file=("a.jsonl", lines(1), "application/jsonl"), purpose="batch")
    second = await client.files.create(file=("b.jsonl", b"{}\n", "application/jsonl"), purpose="user_data")
    assert isinstance(first, FileObject) and first.bytes == len(lines(1)) and first.expires_at
    assert [f.filename async for f in client.files.list(purpose="batch")] == ["a.jsonl"]
    assert [f.id async for f in client.files.list(limit=1)] == [second.id, first.id]  # newest first, paged
    assert (await client.files.content(first.id)).content == lines(1)
    assert (await client.files.delete(first.id)).deleted
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(first.id)


async def test_batches_are_listed_newest_first_across_pages_with_their_metadata(start):
    _, client = await start()
    made = [await submit(client, lines(1), metadata={"run": str(i)}) for i in range(3)]
    listed = [batch async for batch in client.batches.list(limit=2)]
    assert [batch.id for batch in listed] == [batch.id for batch in reversed(made)]
    assert [batch.metadata["run"] for batch in listed] == ["2", "1", "0"]
