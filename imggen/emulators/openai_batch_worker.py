"""Running one emulated batch: check its input file, run each request line, write the result files.

The lifecycle is the Batch API's: ``validating`` while the input file is checked (a bad file
moves the batch to ``failed`` with ``errors.data``, one entry per problem with its ``line``);
``in_progress`` while the lines run one by one, ``request_counts`` counting them; ``finalizing``;
then ``completed``. A cancel moves the batch to ``cancelling`` and, after the cancel time, to
``cancelled`` with what finished so far. A batch still running when its completion window ends
becomes ``expired``: finished lines are in the output file and every unfinished one is in the
error file with code ``batch_expired``, as the Batch API guide describes.

Input lines are ``{"custom_id", "method": "POST", "url", "body"}``; output and error lines are
``{"id": "batch_req_...", "custom_id", "response": {"status_code", "request_id", "body"} | null,
"error": {"code", "message"} | null}``. Successful lines (status 200) go to the output file, all
others to the error file. Each line runs through the images route's own validation and drawing,
so a line gets the same answer the synchronous endpoint would give.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

from aiohttp import web

from imggen.emulators.openai_batch_store import BatchJob, BatchStore
from imggen.emulators.openai_images_route import render_image_response, validate_image_request
from imggen.emulators.openai_replies import content_refused
from imggen.emulators.openai_state import EmulatorState

EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
SERVER_ERROR = {"error": {"message": "The server had an error while processing your request. Sorry about that!",
                          "type": "server_error", "param": None, "code": None}}


def check_input(data: bytes, endpoint: str, store: BatchStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The request lines of an input file and the problems that fail the batch (codes are the emulator's)."""
    config = store.config
    if len(data) > config.max_file_bytes:
        return [], [{"code": "file_too_large", "line": None, "param": None,
                     "message": f"The input file has {len(data)} bytes; a batch takes at most {config.max_file_bytes}."}]
    lines, problems, seen = [], [], set()
    for number, text in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            line = None
        problem = _line_problem(line, endpoint, seen)
        if problem is not None:
            problems.append({"code": problem[0], "message": problem[1], "line": number, "param": problem[2]})
            continue
        seen.add(line["custom_id"])
        lines.append(line)
    if len(lines) > config.max_requests:
        problems.append({"code": "too_many_requests", "line": None, "param": None,
                         "message": f"The input file has {len(lines)} requests; a batch takes at most "
                                    f"{config.max_requests}."})
    if not lines and not problems:
        problems.append({"code": "empty_file", "line": None, "param": None, "message": "The input file is empty."})
    return lines, problems


def _line_problem(line: Any, endpoint: str, seen: set[str]) -> tuple[str, str, str | None] | None:
    if not isinstance(line, dict):
        return "invalid_json_line", "This line is not a JSON object.", None
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id"
    if custom_id in seen:
        return "duplicate_custom_id", f"The custom_id {custom_id!r} is used by more than one request.", "custom_id"
    if line.get("method") != "POST":
        return "invalid_method", "Batch requests must use method POST.", "method"
    if line.get("url") != endpoint:
        return "mismatched_endpoint", f"The url {line.get('url')!r} is not the batch's endpoint {endpoint}.", "url"
    if not isinstance(line.get("body"), dict):
        return "missing_required_parameter", "Missing required parameter: 'body'.", "body"
    return None


def _answer(custom_id: str, status: int | None, body: Any, error: dict[str, str] | None = None) -> dict[str, Any]:
    response = None if status is None else {"status_code": status, "request_id": f"req_{uuid.uuid4().hex}",
                                            "body": body}
    return {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id, "response": response, "error": error}


def run_line(line: dict[str, Any], state: EmulatorState, store: BatchStore, origin: str,
             rng: random.Random) -> dict[str, Any]:
    """One request line's answer, as the synchronous endpoint would give it."""
    custom_id, body = line["custom_id"], {k: v for k, v in line["body"].items() if v is not None}
    spec = validate_image_request(body, state)
    if isinstance(spec, web.Response):  # the 400 the endpoint would answer
        return _answer(custom_id, spec.status, json.loads(spec.text))
    if rng.random() < store.config.line_error_rate:
        return _answer(custom_id, 500, SERVER_ERROR)
    if state.config.blocked_word and state.config.blocked_word in body["prompt"]:
        refused = content_refused(spec.is_gpt_image)
        return _answer(custom_id, refused.status, json.loads(refused.text))
    with store.lock:
        store.billed[custom_id] += body.get("n", 1)
    return _answer(custom_id, 200, render_image_response(origin, state, spec, body))


async def run_batch(job: BatchJob, store: BatchStore, state: EmulatorState, origin: str) -> None:
    """Take ``job`` through its lifecycle; the job's fields are what the batch routes answer."""
    config, rng = store.config, random.Random(f"{state.config.seed}:{job.id}")
    await asyncio.sleep(config.validating_s)
    stored = store.file(job.input_file_id)
    lines, problems = check_input(stored.data if stored else b"", job.endpoint, store)
    if job.cancel_requested:
        await _close(job, store, [], [], "cancelled", rng)
        return
    if problems:
        job.errors = problems
        job.move("failed")
        return
    job.total = len(lines)
    job.move("in_progress")
    outputs, errors = [], []
    for line in lines:
        if job.cancel_requested or time.time() >= job.expires_at:
            break
        await asyncio.sleep(config.line_s)
        answer = run_line(line, state, store, origin, rng)
        ok = answer["response"]["status_code"] == 200
        (outputs if ok else errors).append(answer)
        job.completed, job.failed = job.completed + ok, job.failed + (not ok)
    if job.cancel_requested:
        await asyncio.sleep(config.cancelling_s)
        await _close(job, store, outputs, errors, "cancelled", rng)
    elif len(outputs) + len(errors) < len(lines):  # the window ended first
        unfinished = lines[len(outputs) + len(errors):]
        errors += [_answer(line["custom_id"], None, None, {"code": "batch_expired", "message": EXPIRED_MESSAGE})
                   for line in unfinished]
        job.failed += len(unfinished)
        await _close(job, store, outputs, errors, "expired", rng)
    else:
        job.move("finalizing")
        await asyncio.sleep(config.finalizing_s)
        await _close(job, store, outputs, errors, "completed", rng)


async def _close(job: BatchJob, store: BatchStore, outputs: list, errors: list, status: str,
                 rng: random.Random) -> None:
    if store.config.shuffle_output:
        rng.shuffle(outputs)
    for kind, answers in (("output", outputs), ("error", errors)):
        if answers:
            data = "".join(json.dumps(answer) + "\n" for answer in answers).encode("utf-8")
            stored = store.add_file(f"{job.id}_{kind}.jsonl", "batch_output", data)
            setattr(job, f"{kind}_file_id", stored.id)
    job.move(status)
