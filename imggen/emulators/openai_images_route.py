"""``POST /v1/images/generations`` and ``GET /files/{name}`` of the OpenAI emulator.

Per-model validation comes from the package's model registry and answers with the API's own 400
bodies; then the images-per-minute window, scripted and random faults, the safety trigger word
and the quota are applied in that order, and the pictures are drawn from the prompt. GPT image
models answer base64 with ``usage`` and the resolved size/quality; dall-e-3 answers a URL served
by the emulator itself (or base64 on request) with a ``revised_prompt``. Token usage follows
gpt-image-1's published output-token table (see ``openai_models.output_tokens``). The Batch API
emulation runs each request line through :func:`validate_image_request` and :func:`render_image_response`.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any

from aiohttp import web

from imggen.backends.openai_models import (
    DEFAULT_MODEL, ImageModelSpec, ModelUnavailableError, find_problem, get_model, output_tokens, parse_size,
)
from imggen.emulators.openai_replies import (
    apply_fault, content_refused, error_response, insufficient_quota, rate_limited, read_json,
)
from imggen.emulators.openai_state import RECORD, STATE, EmulatorState, RequestRecord
from imggen.emulators.prompt_pictures import draw_prompt_picture, render_dimensions

_CORE_FIELDS = {"model", "prompt", "n", "size", "quality", "user", "safety_identifier", "partial_images"}
_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def _missing(param: str) -> web.Response:
    return error_response(400, f"Missing required parameter: '{param}'.", code="missing_required_parameter",
                          param=param)


def _problem_response(spec: ImageModelSpec, param: str, value: Any, allowed: tuple[str, ...]) -> web.Response:
    """The 400 the API sends for a value the model does not accept."""
    if param not in spec.params and param not in ("size", "quality", "n", "output_compression"):
        return error_response(400, f"Unknown parameter: '{param}'.", code="unknown_parameter", param=param)
    if not spec.is_gpt_image:
        if param == "size":
            return error_response(400, "The size is not supported by this model.", code="invalid_size")
        if param == "n":
            return error_response(400, "You must provide n=1 for this model.")
        return error_response(400, f"'{value}' is not one of {list(allowed)} - '{param}'")
    quoted = [f"'{a}'" for a in allowed]
    listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    return error_response(400, f"Invalid value: '{value}'. Supported values are: {listed}.", code="invalid_value",
                          param=param)


def validate_image_request(body: dict[str, Any], state: EmulatorState) -> ImageModelSpec | web.Response:
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return _missing("prompt")
    # ``model`` is optional: the spec's default (gpt-image-1.5) is retired in the registry, so an
    # omitted model is the registry's current default
    body.setdefault("model", DEFAULT_MODEL)
    if not isinstance(body["model"], str) or not body["model"]:
        return _missing("model")
    try:
        spec = get_model(body["model"], state.config.today, allow_retired=state.config.allow_retired)
    except ModelUnavailableError:
        return error_response(400, f"The model '{body['model']}' does not exist or you do not have access to it.",
                              code="model_not_found", param="model")
    if len(body["prompt"]) > spec.max_prompt_chars:
        return error_response(
            400, f"Invalid 'prompt': string too long. Expected a string with maximum length {spec.max_prompt_chars}, "
            f"but got a string with length {len(body['prompt'])} instead.", code="string_above_max_length",
            param="prompt")
    if body.get("stream"):
        return error_response(400, "Streaming is not emulated; send stream=false.", param="stream")
    extras = {k: v for k, v in body.items() if k not in _CORE_FIELDS and k != "stream"}
    problem = find_problem(spec, size=body.get("size"), quality=body.get("quality"), n=body.get("n", 1),
                           params=extras)
    if problem is not None:
        return _problem_response(spec, problem.param, problem.value, problem.allowed)
    if extras.get("output_format") not in (None, *_CONTENT_TYPES):
        return error_response(400, f"output_format {extras['output_format']!r} is not emulated.",
                              param="output_format")
    return spec


def _usage(prompt: str, quality: str, width: int, height: int, n: int) -> dict[str, Any]:
    output = n * output_tokens(quality, width, height)
    text = max(len(prompt) // 4, 1)
    return {
        "total_tokens": text + output, "input_tokens": text, "output_tokens": output,
        "input_tokens_details": {"text_tokens": text, "image_tokens": 0},
        "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
    }


def _revised_prompt(prompt: str, style: str) -> str:
    look = "hyper-real, dramatic" if style == "vivid" else "natural, understated"
    return f"{prompt.strip()} Rendered as a detailed, {look} image with balanced composition."


async def create_image(request: web.Request) -> web.Response:
    state = request.app[STATE]
    record: RequestRecord = request[RECORD]
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    record.model, record.prompt = body.get("model"), body.get("prompt")
    spec = validate_image_request(body, state)
    if isinstance(spec, web.Response):
        return spec
    record.model = spec.id  # the model that drew it, when the request left it to the default
    n = body.get("n", 1)
    tokens = request_tokens(body, spec) if state.token_window is not None and spec.is_gpt_image else 0
    wait_s, window = state.image_window.wait_for(n)
    tokens_wait_s, tokens_window = state.token_window.wait_for(tokens) if tokens else (0.0, None)
    if tokens_wait_s > 0:
        return rate_limited(spec.id, "tokens per min (TPM)", tokens_window, tokens_wait_s, tokens, kind="tokens")
    if wait_s > 0:
        return rate_limited(spec.id, "images per minute (IPM)", window, wait_s, n)
    state.image_window.admit(n)
    if tokens:
        state.token_window.admit(tokens)
    record.admitted = time.time()
    fault = await apply_fault(state.faults.next_fault(), state.config.slow_s)
    if fault is not None:
        return fault
    if state.config.blocked_word and state.config.blocked_word in body["prompt"]:
        return content_refused(spec.is_gpt_image)
    if not state.faults.spend_quota(n):
        return insufficient_quota()
    await asyncio.sleep(state.latency())
    record.images = n
    answer = render_image_response(str(request.url.origin()), state, spec, body)
    record.usage = answer.get("usage")  # what it was billed, in tokens (GPT image models)
    return web.json_response(answer)


def _size_and_quality(body: dict[str, Any], spec: ImageModelSpec) -> tuple[str, str]:
    """The size and quality a request is drawn at (``auto`` resolved as the emulator resolves it)."""
    size = body.get("size", spec.default_size)
    quality = body.get("quality", spec.default_quality)
    return ("1024x1024" if size == "auto" else size), ("medium" if quality == "auto" else quality)


def request_tokens(body: dict[str, Any], spec: ImageModelSpec) -> int:
    """What a request counts against a tokens-per-minute limit: its answer's usage tokens."""
    size, quality = _size_and_quality(body, spec)
    return _usage(body["prompt"], quality, *parse_size(size), body.get("n", 1))["total_tokens"]


def render_image_response(origin: str, state: EmulatorState, spec: ImageModelSpec, body: dict[str, Any]) -> dict:
    """The API's success body for a valid request; URLs (dall-e-3) are served from ``origin``."""
    size, quality = _size_and_quality(body, spec)
    width, height = parse_size(size)
    draw_w, draw_h = render_dimensions(width, height, scale=state.config.render_scale,
                                       max_side=state.config.render_max_side)
    image_format = body.get("output_format", "png")
    background = "transparent" if body.get("background") == "transparent" else "opaque"
    as_url = not spec.is_gpt_image and body.get("response_format", "url") == "url"
    data = []
    for index in range(body.get("n", 1)):
        picture = draw_prompt_picture(body["prompt"] + (f"\n#{index}" if index else ""), draw_w, draw_h,
                                      transparent=background == "transparent", image_format=image_format,
                                      compression=body.get("output_compression"))
        item: dict[str, Any] = {}
        if as_url:
            name = f"img-{uuid.uuid4().hex}.{image_format}"
            state.store_file(name, picture, _CONTENT_TYPES[image_format])
            item["url"] = f"{origin}/files/{name}"
        else:
            item["b64_json"] = base64.b64encode(picture).decode("ascii")
        if not spec.is_gpt_image:
            item["revised_prompt"] = _revised_prompt(body["prompt"], body.get("style", "vivid"))
        data.append(item)
    response: dict[str, Any] = {"created": int(time.time()), "data": data}
    if spec.is_gpt_image:
        usage = _usage(body["prompt"], quality, width, height, len(data))
        response.update(background=background, output_format=image_format, quality=quality, size=size, usage=usage)
    return response


async def get_file(request: web.Request) -> web.Response:
    stored = request.app[STATE].get_file(request.match_info["name"])
    if stored is None:
        return web.Response(status=404, text="The file does not exist or its URL has expired.")
    return web.Response(body=stored.data, content_type=stored.content_type)
