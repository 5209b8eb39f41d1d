"""``POST /v1/chat/completions`` of the OpenAI emulator: a vision model that judges grid tiles.

It accepts the vision input format (``text`` and ``image_url`` parts; the URL may be a ``data:``
URI or an http(s) URL it fetches). When the question names an ``NxN`` grid and one image is
attached, it splits the image and answers with the JSON list of unique tile indices (see
:mod:`imggen.emulators.tile_judge`); with several images attached, each image is one tile. With
``response_format={"type": "json_object"}`` the list comes as ``{"unique_tiles": [...]}``; with a
``json_schema`` (``chat.completions.parse``) the answer fills an object of that schema. One
image with no grid named gets a one-sentence caption (:mod:`imggen.emulators.picture_caption`).
Anything else gets a short text saying what it can answer. A refusal scripted with
``refuse_next`` answers 200 with ``content: null`` and the ``refusal`` text, billed like any answer.

Every answer carries the ``usage`` block the API bills by (``CompletionUsage`` in
``specs/openai-chat-completions.yaml``): prompt tokens (text at about four characters a token, plus
each image's tokens: 85 at ``detail: low``, else 85 + 170 per 512-pixel tile of the image fitted in
2048x2048 and then to 768 pixels on its short side, the vision guide's rule), completion tokens,
and ``prompt_tokens_details`` with ``cached_tokens``, ``text_tokens`` and ``image_tokens``. The
schema makes ``usage`` optional and its details more so: ``chat_usage_form`` ``counts`` sends only
the three counts, ``none`` no usage at all. What each answer was billed is kept on its request record.

Chat completions are limited per minute in requests (``chat_requests_per_minute``) and, when
``chat_tokens_per_minute`` is set, in tokens: an answer's tokens count at admission, a request that
would pass the limit gets a 429 ``type: tokens``, and every answer carries the ``x-ratelimit-*-tokens``
headers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import math
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image, UnidentifiedImageError

from imggen.backends.image_download import MAX_IMAGE_BYTES, read_capped
from imggen.emulators.openai_replies import apply_fault, error_response, rate_limited, read_json
from imggen.emulators.openai_state import RECORD, STATE
from imggen.emulators.picture_caption import caption_picture
from imggen.emulators.tile_judge import grid_size_from_text, split_grid, unique_tiles
from imggen.engine.errors import TaskError

_BASE_IMAGE_TOKENS, _TOKENS_PER_TILE = 85, 170


REFUSAL = "I'm sorry, but I can't help with that request."


class _BadImage(Exception):
    pass


def _parts(messages: list[Any]) -> tuple[str, list[tuple[str, str]]]:
    """All text and all image URLs (with their ``detail``) of the user messages, in order."""
    texts, urls = [], []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
            elif part.get("type") == "image_url":
                image_url = part.get("image_url") or {}
                urls.append((image_url.get("url", ""), image_url.get("detail", "auto")))
    return "\n".join(texts), urls


async def _load_image(url: str) -> Image.Image:
    if url.startswith("data:"):
        try:
            data = base64.b64decode(url.partition(",")[2], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _BadImage() from exc
    elif url.startswith(("http://", "https://")):
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                response.raise_for_status()
                data = await read_capped(response, MAX_IMAGE_BYTES)
        except (aiohttp.ClientError, asyncio.TimeoutError, TaskError) as exc:
            raise _BadImage() from exc
    else:
        raise _BadImage()
    if len(data) > MAX_IMAGE_BYTES:
        raise _BadImage()
    try:
        picture = Image.open(io.BytesIO(data))
        picture.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise _BadImage() from exc
    return picture


def _answer(text: str, pictures: list[Image.Image], threshold: float) -> list[int] | str:
    """The unique tiles' indices, or a caption or help text."""
    grid = grid_size_from_text(text)
    if len(pictures) == 1 and grid:
        tiles = split_grid(pictures[0], grid)
    elif len(pictures) > 1:
        tiles = pictures
    elif pictures:
        return caption_picture(pictures[0])
    else:
        return ("I can say which tiles of an NxN grid image are unique (attach one grid image and name its size, "
                "for example 3x3, or attach the tiles as separate images), or caption one image.")
    return unique_tiles(tiles, threshold)


def _content(answer: list[int] | str, response_format: dict) -> str:
    """The answer in the form asked for: as it is, ``json_object`` (``{"unique_tiles": [...]}``), or an
    object of the ``json_schema`` given (what ``chat.completions.parse`` sends)."""
    kind = response_format.get("type")
    if kind == "json_schema":
        return json.dumps(_filled((response_format.get("json_schema") or {}).get("schema") or {}, answer))
    if isinstance(answer, str):
        return answer
    return json.dumps({"unique_tiles": answer} if kind == "json_object" else answer)


def _filled(schema: dict, answer: list[int] | str) -> Any:
    """A value of ``schema`` that carries ``answer``: lists of integers get the tiles, strings the text."""
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {name: _filled(part, answer) for name, part in (schema.get("properties") or {}).items()}
    if kind == "array":
        wants_numbers = (schema.get("items") or {}).get("type") in ("integer", "number")
        return answer if isinstance(answer, list) and wants_numbers else []
    if kind == "string":
        return answer if isinstance(answer, str) else json.dumps(answer)
    return {"integer": 0, "number": 0, "boolean": False}.get(kind)


def image_tokens(picture: Image.Image, detail: str) -> int:
    """Prompt tokens of one image: 85 at low detail, else 85 + 170 per 512-pixel tile after fitting it in
    2048x2048 and then its short side to 768 pixels."""
    if detail == "low":
        return _BASE_IMAGE_TOKENS
    width, height = picture.size
    scale = min(1.0, 2048 / max(width, height))
    scale *= min(1.0, 768 / (min(width, height) * scale))
    tiles = math.ceil(width * scale / 512) * math.ceil(height * scale / 512)
    return _BASE_IMAGE_TOKENS + _TOKENS_PER_TILE * tiles


def billed_usage(text: str, images: int, content: str) -> dict[str, Any]:
    """The full usage block of one answer to ``text`` with ``images`` image tokens, answering ``content``."""
    text_tokens = max(len(text) // 4, 1)
    prompt_tokens = text_tokens + images
    completion_tokens = max(len(content) // 4, 1)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0, "text_tokens": text_tokens,
                                      "image_tokens": images},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def usage_as_sent(usage: dict[str, Any], form: str) -> dict[str, Any] | None:
    if form == "none":
        return None
    if form == "counts":
        return {key: usage[key] for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
    return usage


async def create_chat_completion(request: web.Request) -> web.Response:
    state = request.app[STATE]
    record = request[RECORD]
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    record.model = body.get("model")
    if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list) or not body["messages"]:
        missing = "model" if not isinstance(body.get("model"), str) else "messages"
        return error_response(400, f"Missing required parameter: '{missing}'.", code="missing_required_parameter",
                              param=missing)
    text, urls = _parts(body["messages"])
    record.prompt = text
    try:
        pictures = [await _load_image(url) for url, _ in urls]
    except _BadImage:
        return error_response(
            400, "You uploaded an unsupported image. Please make sure your image is below 50 MB in size and is of "
            "one the following formats: ['png', 'jpeg', 'gif', 'webp'].", code="invalid_image_format")
    answer = _content(_answer(text, pictures, state.config.tile_threshold), body.get("response_format") or {})
    picture_tokens = sum(image_tokens(p, d) for p, (_, d) in zip(pictures, urls))
    tokens = billed_usage(text, picture_tokens, answer)["total_tokens"]  # what the request counts at admission
    if state.chat_token_window is not None:
        tokens_wait_s, tokens_window = state.chat_token_window.wait_for(tokens)
        if tokens_wait_s > 0:
            return rate_limited(body["model"], "tokens per min (TPM)", tokens_window, tokens_wait_s, tokens,
                                kind="tokens")
    admitted, wait_s, window = state.chat_window.try_admit(1)
    if not admitted:
        return rate_limited(body["model"], "requests per min (RPM)", window, wait_s, 1)
    if state.chat_token_window is not None:
        state.chat_token_window.admit(tokens)
    record.admitted = time.time()
    fault = await apply_fault(state.faults.next_fault(), state.config.slow_s)
    if fault is not None:
        return fault
    record.refused = state.take_refusal()
    refusal = REFUSAL if record.refused else None
    content = refusal or answer
    await asyncio.sleep(state.latency())
    record.usage = billed_usage(text, picture_tokens, content)
    reply = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": body["model"], "service_tier": "default",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": None if refusal else content, "refusal": refusal,
                                 "annotations": []}}],
    }
    usage = usage_as_sent(record.usage, state.chat_usage_form)
    return web.json_response(reply if usage is None else {**reply, "usage": usage})
