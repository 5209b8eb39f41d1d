"""``/v1/files`` and ``/v1/batches`` of the OpenAI emulator: the Files API and the Batch API.

Files: upload (multipart ``file`` and ``purpose``), retrieve, content, list (``purpose``,
``order``, ``after``, ``limit`` up to 10,000) and delete. Batches: create (``input_file_id``,
``endpoint``, ``completion_window`` = ``24h``, ``metadata`` of at most 16 pairs with keys up to 64
and values up to 512 characters), retrieve, cancel and list (newest first, ``after``, ``limit``
1..100, default 20). Lists answer the API's cursor page ``{"object": "list", "data",
"first_id", "last_id", "has_more"}``. Only ``/v1/images/generations`` batches are emulated; the
other endpoints the SDK lists are refused with a 400 that says so. Processing is in
:mod:`~imggen.emulators.openai_batch_worker`; what is stored is in
:mod:`~imggen.emulators.openai_batch_store`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from aiohttp import web

from imggen.emulators.openai_batch_store import BATCHES, BatchEmulatorConfig, BatchJob, BatchStore
from imggen.emulators.openai_batch_worker import check_input, run_batch
from imggen.emulators.openai_replies import error_response, read_json
from imggen.emulators.openai_state import STATE

# The endpoints openai 3.57.0 accepts in batches.create (types/batch_create_params.py).
SDK_ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations",
                 "/v1/images/generations", "/v1/images/edits", "/v1/videos")
EMULATED_ENDPOINTS = ("/v1/images/generations",)
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
OPEN_STATUSES = ("validating", "in_progress", "finalizing")


def _page(items: Sequence[dict[str, Any]], request: web.Request, *, default: int, most: int) -> web.Response:
    """One cursor page of ``items`` (already in list order) after the ``after`` id."""
    try:
        limit = int(request.query.get("limit", default))
    except ValueError:
        limit = 0
    if not 1 <= limit <= most:
        return error_response(400, f"Invalid 'limit': expected an integer between 1 and {most}.", param="limit",
                              code="invalid_value")
    after = request.query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    data = list(items[:limit])
    return web.json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None, "has_more": len(items) > limit})


def _no_such(kind: str, object_id: str) -> web.Response:
    return error_response(404, f"No such {kind} object: {object_id}", param="id", code=None)


# -- files ---------------------------------------------------------------------------------------
async def upload_file(request: web.Request) -> web.Response:
    store = request.app[BATCHES]
    await store.step("upload_received")
    form = await request.post()
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, web.FileField):
        return error_response(400, "Missing required parameter: 'file'.", param="file",
                              code="missing_required_parameter")
    if purpose not in FILE_PURPOSES:
        return error_response(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose", code="invalid_value")
    data = upload.file.read()
    if purpose == "batch" and not upload.filename.endswith(".jsonl"):
        return error_response(400, "The Batch API only supports .jsonl files.", param="file", code="invalid_file")
    stored = store.add_file(upload.filename, purpose, data)
    await store.step("upload_stored")
    return web.json_response(stored.describe())


async def list_files(request: web.Request) -> web.Response:
    store, purpose = request.app[BATCHES], request.query.get("purpose")
    files = [f for f in list(store.files.values()) if store.file(f.id) and purpose in (None, f.purpose)]
    newest_first = request.query.get("order", "desc") == "desc"
    items = [f.describe() for f in (reversed(files) if newest_first else files)]
    await store.step("files_listed")
    return _page(items, request, default=10_000, most=10_000)


async def retrieve_file(request: web.Request) -> web.Response:
    stored = request.app[BATCHES].file(request.match_info["file_id"])
    return web.json_response(stored.describe()) if stored else _no_such("File", request.match_info["file_id"])


async def file_content(request: web.Request) -> web.Response:
    store = request.app[BATCHES]
    stored = store.file(request.match_info["file_id"])
    if stored is None:
        return _no_such("File", request.match_info["file_id"])
    await store.step("content_served")
    return web.Response(body=stored.data, content_type="application/octet-stream")


async def delete_file(request: web.Request) -> web.Response:
    store, file_id = request.app[BATCHES], request.match_info["file_id"]
    with store.lock:
        removed = store.files.pop(file_id, None)
    return web.json_response({"id": file_id, "object": "file", "deleted": True}) if removed else _no_such("File", file_id)


# -- batches -------------------------------------------------------------------------------------
def _metadata_problem(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > 16:
        return "metadata must be an object of at most 16 key-value pairs"
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            return "metadata keys are strings of at most 64 characters and values strings of at most 512"
    return None


async def create_batch(request: web.Request) -> web.Response:
    store, state = request.app[BATCHES], request.app[STATE]
    await store.step("create_received")
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    for param in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(param), str):
            return error_response(400, f"Missing required parameter: '{param}'.", param=param,
                                  code="missing_required_parameter")
    if body["endpoint"] not in SDK_ENDPOINTS:
        return error_response(400, f"Invalid value for 'endpoint': {body['endpoint']!r}.", param="endpoint",
                              code="invalid_value")
    if body["endpoint"] not in EMULATED_ENDPOINTS:
        return error_response(400, f"The emulator runs batches for {', '.join(EMULATED_ENDPOINTS)} only.",
                              param="endpoint", code="invalid_value")
    if body["completion_window"] != "24h":
        return error_response(400, "Invalid value for 'completion_window': only '24h' is supported.",
                              param="completion_window", code="invalid_value")
    problem = _metadata_problem(body.get("metadata"))
    if problem:
        return error_response(400, f"Invalid 'metadata': {problem}.", param="metadata", code="invalid_value")
    stored = store.file(body["input_file_id"])
    if stored is None:
        return _no_such("File", body["input_file_id"])
    if stored.purpose != "batch":
        return error_response(400, "The input file must be uploaded with purpose 'batch'.", param="input_file_id",
                              code="invalid_value")
    job = BatchJob(store.new_id("batch_"), stored.id, body["endpoint"], "24h", body.get("metadata"),
                   window_s=store.config.completion_window_s)
    with store.lock:
        store.batches[job.id] = job
        store.submitted.update(line["custom_id"] for line in check_input(stored.data, job.endpoint, store)[0])
    task = asyncio.get_running_loop().create_task(run_batch(job, store, state, str(request.url.origin())))
    request.app[RUNNING].add(task)
    task.add_done_callback(request.app[RUNNING].discard)
    await store.step("batch_created")
    return web.json_response(job.describe())


def _job(request: web.Request) -> BatchJob | None:
    return request.app[BATCHES].batches.get(request.match_info["batch_id"])


async def retrieve_batch(request: web.Request) -> web.Response:
    job = _job(request)
    if job is None:
        return _no_such("Batch", request.match_info["batch_id"])
    await request.app[BATCHES].step("batch_retrieved")
    return web.json_response(job.describe())


async def cancel_batch(request: web.Request) -> web.Response:
    job = _job(request)
    if job is None:
        return _no_such("Batch", request.match_info["batch_id"])
    if job.status not in (*OPEN_STATUSES, "cancelling"):
        return error_response(409, f"Cannot cancel a batch with status '{job.status}'.", code=None)
    if not job.cancel_requested:
        job.cancel_requested = True
        job.move("cancelling")
    return web.json_response(job.describe())


async def list_batches(request: web.Request) -> web.Response:
    jobs = list(request.app[BATCHES].batches.values())
    await request.app[BATCHES].step("batches_listed")
    return _page([job.describe() for job in reversed(jobs)], request, default=20, most=100)


RUNNING = web.AppKey("openai_emulator_batch_tasks", set)


def add_batch_routes(app: web.Application, config: BatchEmulatorConfig) -> None:
    """Serve the Files and Batch APIs on ``app``; running batches stop with the app."""
    app[BATCHES] = BatchStore(config)
    app[RUNNING] = set()

    async def stop_batches(app: web.Application) -> None:
        for task in list(app[RUNNING]):
            task.cancel()

    app.on_cleanup.append(stop_batches)
    add = app.router
    add.add_post("/v1/files", upload_file)
    add.add_get("/v1/files", list_files)
    add.add_get("/v1/files/{file_id}", retrieve_file)
    add.add_get("/v1/files/{file_id}/content", file_content)
    add.add_delete("/v1/files/{file_id}", delete_file)
    add.add_post("/v1/batches", create_batch)
    add.add_get("/v1/batches", list_batches)
    add.add_get("/v1/batches/{batch_id}", retrieve_batch)
    add.add_post("/v1/batches/{batch_id}/cancel", cancel_batch)
