"""The OpenAI backend: one image from the Images API, and questions about an image (judge, captions) on vision chat.

Built on the official ``openai.AsyncOpenAI`` client (``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``
are honoured) with ``max_retries=0``: the engine owns retries, this module only sorts failures
into :class:`~imggen.engine.errors.TaskError` kinds (see :mod:`imggen.backends.openai_errors`).
Models are checked against the registry before any request is sent, so a retired model or a
size the model does not take fails at once without spending money.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
from openai.types import ImagesResponse
from PIL import Image

from imggen.backends.image_download import MAX_IMAGE_BYTES, check_image, download_image
from imggen.backends.openai_errors import rate_hint, task_error, with_tokens_used
from imggen.backends.openai_models import (
    DEFAULT_MODEL, DEFAULT_VISION_MODEL, ImageModelSpec, ModelUnavailableError, cost_from_usage, find_problem,
    get_model, price,
)
from imggen.backends.openai_vision import VisionAnswer, answer_cost
from imggen.engine.errors import ErrorKind, RateHint, TaskError
from imggen.settings import credential, load_settings

DEFAULT_TIMEOUT_S = 120.0  # a vision answer or an image download


@dataclass(frozen=True)
class GeneratedImage:
    """One generated image and what it took."""

    data: bytes  # the encoded image (PNG unless another output_format was asked for)
    model: str
    params: dict[str, Any]  # what was sent, plus "resolved" size/quality/... when the API reports them
    revised_prompt: str | None = None
    usage: dict[str, Any] | None = None
    cost: float | None = None  # US dollars; None where no price is published
    rate: RateHint | None = None


def request_params(model: str, size: str | None, quality: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    """The Images API parameters of one request (besides the prompt), leaving out what is unset."""
    asked = {"model": model, "size": size, "quality": quality, **extra}
    return {k: v for k, v in asked.items() if v is not None}


class OpenAIImageBackend:
    """Generates images and answers questions about images through one OpenAI account."""

    def __init__(
        self, *, api_key: str | None = None, base_url: str | None = None, timeout_s: float | None = None,
        allow_retired: bool = False, today: dt.date | None = None, download_attempts: int = 3,
        max_download_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        """``api_key``/``base_url`` default to ``OPENAI_API_KEY``/``OPENAI_BASE_URL`` (environment or ``.env``).
        ``timeout_s``: how long one request may take before it fails as a transient timeout (None: each
        image model's own, from the registry; the judge and downloads get DEFAULT_TIMEOUT_S).
        ``allow_retired`` lets a retired model's legacy contract be rehearsed against the emulator."""
        self._api_key = api_key or credential("openai_api_key")
        self._base_url = base_url or load_settings().openai_base_url
        self._timeout_s = timeout_s
        self._allow_retired = allow_retired
        self._today = today
        self._download_attempts = download_attempts
        self._max_download_bytes = max_download_bytes
        self._client: openai.AsyncOpenAI | None = None
        self._session: aiohttp.ClientSession | None = None

    def _openai(self) -> openai.AsyncOpenAI:
        if self._client is None:
            try:
                self._client = openai.AsyncOpenAI(
                    api_key=self._api_key, base_url=self._base_url, max_retries=0,
                    timeout=self._timeout_s or DEFAULT_TIMEOUT_S,
                )
            except openai.OpenAIError:
                raise TaskError(ErrorKind.FATAL, "no OpenAI API key: set OPENAI_API_KEY") from None
        return self._client

    def _failure(self, exc: Exception, what: str) -> TaskError:
        return task_error(exc, secret=self._client.api_key if self._client else self._api_key, what=what)

    async def generate(
        self, prompt: str, *, model: str = DEFAULT_MODEL, size: str | None = None, quality: str | None = None,
        **extra: Any,
    ) -> GeneratedImage:
        """One image for ``prompt``; ``extra`` are the model's other parameters (style, background, ...)."""
        try:
            spec = get_model(model, self._today, allow_retired=self._allow_retired)
        except ModelUnavailableError as exc:
            raise TaskError(ErrorKind.FATAL, str(exc)) from None
        problem = find_problem(spec, size=size, quality=quality, params=extra)
        if problem is not None:
            raise TaskError(ErrorKind.PERMANENT, problem.describe(spec.id))
        params = request_params(model, size, quality, extra)
        client = self._openai()
        try:
            raw = await client.images.with_raw_response.generate(
                prompt=prompt, timeout=self._timeout_s or spec.request_timeout_s, **params)
            response = raw.parse()
        except openai.APIError as exc:
            raise self._failure(exc, "image generation") from None
        return await self.image_from_response(response, spec, params, rate=rate_hint(raw.headers))

    async def image_from_response(
        self, response: ImagesResponse, spec: ImageModelSpec, params: dict[str, Any], *, rate: RateHint | None = None,
    ) -> GeneratedImage:
        """The image of an Images API answer to a request of ``params`` (from :func:`request_params`),
        with its price; used for synchronous answers and for the Batch API's output lines alike."""
        usage = response.usage.model_dump(exclude_none=True) if response.usage else None
        resolved = {k: getattr(response, k, None) for k in ("size", "quality", "background", "output_format")}
        resolved = {k: v for k, v in resolved.items() if v}
        cost = price(spec, resolved.get("size", params.get("size") or spec.default_size),
                     resolved.get("quality", params.get("quality") or spec.default_quality))
        cost = cost if cost is not None else cost_from_usage(spec, usage)
        try:
            if not response.data:
                raise TaskError(ErrorKind.TRANSIENT, "OpenAI answered without an image")
            item = response.data[0]
            data = await self._image_bytes(item.b64_json, item.url)
        except TaskError as error:  # the answer was billed all the same: the run books it as wasted
            error.billed = cost or 0.0
            raise
        return GeneratedImage(
            data=data, model=params["model"], params={**params, "resolved": resolved} if resolved else params,
            revised_prompt=item.revised_prompt, usage=usage, cost=cost, rate=with_tokens_used(rate, usage),
        )

    async def _image_bytes(self, b64_json: str | None, url: str | None) -> bytes:
        if b64_json:
            try:
                return check_image(base64.b64decode(b64_json, validate=True), "the returned image")
            except (binascii.Error, ValueError):
                raise TaskError(ErrorKind.PERMANENT, "the returned image is not valid base64") from None
        if url:
            if self._session is None:
                self._session = aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self._timeout_s or DEFAULT_TIMEOUT_S))
            return await download_image(self._session, url, attempts=self._download_attempts,
                                        max_bytes=self._max_download_bytes)
        raise TaskError(ErrorKind.TRANSIENT, "OpenAI answered with neither image data nor a URL")

    async def ask_about_image(
        self, image_bytes: bytes, question: str, *, model: str = DEFAULT_VISION_MODEL, what: str = "a vision question"
    ) -> VisionAnswer:
        """A vision model's answer to ``question`` about the image ``image_bytes``, with what it cost
        (from the response's ``usage``; unknown without one)."""
        with Image.open(io.BytesIO(image_bytes)) as picture:
            mime = Image.MIME.get(picture.format or "PNG", "image/png")
        data_uri = f"data:{mime};base64,{base64.b64encode(image_bytes).decode('ascii')}"
        content = [
            {"type": "text", "text": question},
            {"type": "image_url", "image_url": {"url": data_uri, "detail": "high"}},
        ]
        try:
            raw = await self._openai().chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": content}]
            )
            completion = raw.parse()
        except openai.APIError as exc:
            raise self._failure(exc, what) from None
        message = completion.choices[0].message if completion.choices else None
        usage = completion.usage.model_dump(exclude_none=True) if completion.usage else None
        return VisionAnswer(
            text=(message.content if message else None) or "", model=model,
            call_id=completion.id or f"chatcmpl-unnamed-{uuid.uuid4().hex}", usage=usage,
            cost=answer_cost(model, usage), refusal=message.refusal if message else None,
            rate=with_tokens_used(rate_hint(raw.headers), usage),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> OpenAIImageBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
