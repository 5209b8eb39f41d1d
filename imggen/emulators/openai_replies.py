"""The OpenAI API's answers that are not a result: error bodies, rate-limit headers and faults.

Every error uses the API's envelope ``{"error": {"message", "type", "param", "code"}}`` with the
bodies the real service sends (see the reference notes quoted in each helper). Rate-limit headers
follow the OpenAI guide: ``x-ratelimit-{limit,remaining,reset}-requests`` with Go-style durations.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from aiohttp import web

from imggen.emulators.rate_window import WindowState


class DroppedConnection(Exception):
    """Raised by a handler to close the connection without any response."""


def error_response(
    status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
    param: str | None = None, headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


async def read_json(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return error_response(400, "We could not parse the JSON body of your request. The OpenAI API expects a "
                              "JSON payload, but what was sent was not valid JSON.")
    return {k: v for k, v in body.items() if v is not None}


def go_duration(seconds: float) -> str:
    """Seconds as the API's reset durations: ``12ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(round(seconds * 1000), 0)}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{round(rest, 3):g}s"


def rate_headers(state: WindowState, unit: str = "requests") -> dict[str, str]:
    return {
        f"x-ratelimit-limit-{unit}": str(state.limit),
        f"x-ratelimit-remaining-{unit}": str(state.remaining),
        f"x-ratelimit-reset-{unit}": go_duration(state.reset_s),
    }


def retry_headers(wait_s: float) -> dict[str, str]:
    """``retry-after`` in whole seconds (rounded up) and the finer ``retry-after-ms``."""
    return {"retry-after": str(max(math.ceil(wait_s), 1)), "retry-after-ms": str(max(math.ceil(wait_s * 1000), 1))}


def rate_limited(model: str, unit: str, state: WindowState, wait_s: float, requested: int,
                 kind: str = "requests") -> web.Response:
    """429 ``rate_limit_exceeded`` as the API words it (``type`` ``requests`` or ``tokens``), with when to come back."""
    wait_text = f"Please try again in {wait_s:.3g}s." if math.isfinite(wait_s) else "The request can never fit."
    message = (
        f"Rate limit reached for {model} in organization org-emulator on {unit}: Limit {state.limit}, "
        f"Used {state.limit - state.remaining}, Requested {requested}. {wait_text}"
    )
    headers = retry_headers(wait_s) if math.isfinite(wait_s) else {}
    return error_response(429, message, type=kind, code="rate_limit_exceeded", headers=headers)


def insufficient_quota() -> web.Response:
    return error_response(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more information on "
        "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        type="insufficient_quota", code="insufficient_quota",
    )


def content_refused(gpt_image: bool) -> web.Response:
    """400 for a prompt the safety system rejects: DALL·E's and the GPT image models' wording."""
    if gpt_image:
        return error_response(
            400,
            "Your request was rejected by the safety system. If you believe this is an error, contact us at "
            "help.openai.com and include the request ID. safety_violations=[violence].",
            type="image_generation_user_error", code="moderation_blocked",
        )
    return error_response(
        400,
        "Your request was rejected as a result of our safety system. Your prompt may contain text that is "
        "not allowed by our safety system.",
        code="content_policy_violation",
    )


async def apply_fault(kind: str | None, slow_s: float) -> web.Response | None:
    """The response a scripted or random fault gives (None: carry on, possibly after a delay)."""
    if kind is None:
        return None
    if kind == "drop":
        raise DroppedConnection()
    if kind == "slow":
        await asyncio.sleep(slow_s)
        return None
    if kind == "server_error":
        return error_response(
            500, "The server had an error while processing your request. Sorry about that!", type="server_error"
        )
    if kind == "overloaded":
        return error_response(
            503, "The server is overloaded or not ready yet.", type="service_unavailable_error",
            code="server_is_overloaded",
        )
    if kind == "rate_limit":
        return error_response(
            429, "Rate limit reached (scripted). Please try again in 1s.", type="requests",
            code="rate_limit_exceeded", headers=retry_headers(1.0),
        )
    if kind == "slow_down":
        return error_response(
            429, "Please reduce your rate of requests: the ramp-up was too fast.", type="rate_limit_error",
            code="slow_down", headers=retry_headers(1.0),
        )
    raise ValueError(f"unknown fault {kind!r}")
