"""Replicate backend: flux-kontext-pro tile grids and Topaz upscales through the official ``replicate`` client.

Each call creates its prediction, polls it on the engine's schedule (:mod:`imggen.engine.polling`)
under a deadline, and downloads the output in the same step, because Replicate deletes outputs after an hour. ``async_run`` is not used: in
replicate 1.0.7 it returns ``None`` when ``Prefer: wait`` answers "processing", and its pydantic
model rejects the API's "aborted" status, so prediction states are read from the raw responses.
Every failure becomes a :class:`TaskError` (see ``replicate_responses``) whose kind tells the
runner what to do. The backend never creates a prediction again; within one call it only polls the
prediction it created and fetches its output file once: a failed poll or download is retried on the
same id by whoever collects it (:func:`~imggen.engine.retry.retried`), so every request again is the
engine's decision. The SDK's own retrying transport is turned off: a poll answered 503 reaches the
engine at once.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
import replicate
from replicate.client import RetryTransport
from PIL import Image, UnidentifiedImageError

from imggen.backends.image_download import MAX_IMAGE_BYTES, ImageGone, check_image, download_image
from imggen.backends.replicate_predictions import this_runs_predictions
from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE, replicate_models
from imggen.backends.replicate_responses import (
    PredictionEnded,
    call_for_prediction,
    failed_prediction,
    note_response,
    run_time,
)
from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.polling import Durations, PollDeadline, PollSchedule, poll_until
from imggen.settings import credential, load_settings

DEFAULT_BASE_URL = "https://api.replicate.com"
_TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
_DELIVERY_HOST = "replicate.delivery"
_DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=10)

OnPredictionCreated = Callable[[str], "Awaitable[None] | None"]


@dataclass(frozen=True)
class ReplicateImage:
    """A finished prediction's image, already downloaded."""

    data: bytes
    url: str  # where Replicate served it; it expires an hour after the prediction
    prediction_id: str
    cost: float | None  # USD, from the model catalog; None where no price is known
    metrics: dict[str, Any] = field(default_factory=dict)


class ReplicateBackend:
    """Grids from flux-kontext-pro and upscales from Topaz, as :class:`ReplicateImage` results."""

    def __init__(
        self,
        *,
        api_token: str | None = None,
        base_url: str | None = None,
        wait_s: int | None = None,
        poll_interval_s: float = 0.25,
        max_poll_interval_s: float = 1.0,
        deadline_s: float = 600.0,
        max_download_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        """``api_token`` and ``base_url`` default to REPLICATE_API_TOKEN and REPLICATE_BASE_URL.

        ``wait_s`` is the ``Prefer: wait=N`` hold on create (None: answer at once); polls come
        between ``poll_interval_s`` and ``max_poll_interval_s`` apart (at most ~1 GET/s per
        prediction, far under the API's 3000/min); ``deadline_s`` bounds one prediction from
        creation to output.
        """
        settings = load_settings()
        token = api_token or credential("replicate_api_token", settings)
        if not token:
            raise TaskError(ErrorKind.FATAL, "REPLICATE_API_TOKEN is not set")
        self._token = token
        self._base_url = base_url or settings.replicate_base_url or DEFAULT_BASE_URL
        self._transport = httpx.AsyncHTTPTransport()
        self._client = replicate.Client(
            api_token=token,
            base_url=self._base_url,
            timeout=httpx.Timeout(30.0, connect=10.0, pool=30.0),
            transport=self._transport,
            event_hooks={"response": [note_response]},
        )
        _without_hidden_retries(self._client)
        self._wait_s = wait_s
        self._polls = PollSchedule(least_s=poll_interval_s, most_s=max_poll_interval_s, deadline_s=deadline_s)
        self._max_download_bytes = max_download_bytes
        self._began: dict[str, float] = {}  # when each prediction still being polled was first seen
        self._durations = Durations()  # how long each model's predictions took lately: when to poll
        self._sessions: dict[bool, aiohttp.ClientSession] = {}  # for Replicate's hosts (with the token) and others

    async def generate_grid(
        self,
        prompt: str,
        input_image: bytes | str,
        *,
        aspect_ratio: str = "1:1",
        output_format: str = "jpg",
        seed: int | None = None,
        on_prediction_created: OnPredictionCreated | None = None,
    ) -> ReplicateImage:
        """A tile grid from flux-kontext-pro; ``input_image`` is image bytes, an http(s) URL or a data URI."""
        inputs: dict[str, Any] = {
            "prompt": prompt,
            "input_image": _as_uri(input_image),
            "aspect_ratio": aspect_ratio,
            "output_format": output_format,
        }
        if seed is not None:
            inputs["seed"] = seed
        return await self._predict(FLUX_KONTEXT_PRO, inputs, on_prediction_created)

    async def upscale(
        self,
        image: bytes | str,
        *,
        enhance_model: str = "Standard V2",
        upscale_factor: str = "2x",
        output_format: str = "jpg",
        on_prediction_created: OnPredictionCreated | None = None,
    ) -> ReplicateImage:
        """``image`` enlarged by Topaz (``upscale_factor`` "2x", "4x" or "6x")."""
        inputs = {
            "image": _as_uri(image),
            "enhance_model": enhance_model,
            "upscale_factor": upscale_factor,
            "output_format": output_format,
        }
        return await self._predict(TOPAZ_IMAGE_UPSCALE, inputs, on_prediction_created)

    async def paid_once(
        self, key: str, model: str, create: Callable[[OnPredictionCreated], Awaitable[ReplicateImage]]
    ) -> ReplicateImage:
        """``create``'s result for ``key``, paid for once: the prediction the run's book
        (:mod:`.replicate_predictions`) recorded for ``key`` is collected, else ``create`` makes one
        (its id recorded the moment it answers) and it is collected."""
        return await this_runs_predictions().collect_or_create(key, model, self.resume, create)

    async def resume(self, model: str, prediction_id: str) -> ReplicateImage:
        """Wait for a prediction created earlier (e.g. before a crash) and download its output."""
        return await self._complete(model, await self._get(prediction_id))

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        for session in self._sessions.values():
            await session.close()
        await self._transport.aclose()

    async def _predict(
        self, model: str, inputs: dict[str, Any], on_created: OnPredictionCreated | None
    ) -> ReplicateImage:
        prediction = await call_for_prediction(
            "create",
            lambda: self._client.models.predictions.async_create(model, input=inputs, wait=self._wait_s or False),
            self._token,
        )
        if on_created is not None:
            hook_result = on_created(prediction["id"])
            if inspect.isawaitable(hook_result):
                await hook_result
        return await self._complete(model, prediction)

    async def _complete(self, model: str, prediction: dict[str, Any]) -> ReplicateImage:
        """Poll ``prediction`` to a terminal status (on the engine's :mod:`~imggen.engine.polling`
        schedule), then download its output or raise by status."""
        prediction_id = prediction["id"]
        began = self._began.setdefault(prediction_id, asyncio.get_running_loop().time())  # kept when a poll fails
        try:
            prediction = await poll_until(lambda: self._get(prediction_id), lambda p: p["status"] in _TERMINAL,
                                          prediction, began=began, schedule=self._polls,
                                          expected=self._durations.expected(model))
        except PollDeadline:
            del self._began[prediction_id]
            await self._cancel_quietly(prediction_id)
            raise TaskError(
                ErrorKind.TRANSIENT, f"prediction {prediction_id} did not finish within {self._polls.deadline_s:g}s"
            ) from None
        self._began.pop(prediction_id, None)
        if prediction["status"] != "succeeded":
            raise failed_prediction(prediction)
        self._durations.add(model, run_time(prediction) or asyncio.get_running_loop().time() - began)
        url = _output_url(prediction)
        try:
            data = await self._download(url)
        except ImageGone as gone:  # billed, but its file expired before it was fetched
            raise PredictionEnded(ErrorKind.TRANSIENT, f"prediction {prediction_id}: {gone.message}", billed=True) from None
        except TaskError as refused:
            if refused.kind is not ErrorKind.PERMANENT:
                raise  # the download may work when tried again
            raise PredictionEnded(ErrorKind.PERMANENT, f"prediction {prediction_id}: {refused.message}", billed=True) from None
        price = replicate_models()[model].price_usd_per_prediction
        return ReplicateImage(data, url, prediction_id, price, prediction.get("metrics") or {})

    async def _get(self, prediction_id: str) -> dict[str, Any]:
        return await call_for_prediction("get", lambda: self._client.predictions.async_get(prediction_id), self._token)

    async def _cancel_quietly(self, prediction_id: str) -> None:
        """Stop a prediction we gave up on, so it is not billed; failures here change nothing."""
        cancel = self._client.predictions.async_cancel
        try:
            await call_for_prediction("cancel", lambda: cancel(prediction_id), self._token)
        except TaskError:
            pass

    async def _download(self, url: str) -> bytes:
        """The output file's bytes, size-capped and verified to be an image.

        The token goes only to Replicate's own hosts (the API and replicate.delivery), as its docs ask.
        """
        if url.startswith("data:"):
            return check_image(base64.b64decode(url.partition(",")[2]), "the output")
        host = urlsplit(url).hostname or ""
        ours = host in (urlsplit(self._base_url).hostname, _DELIVERY_HOST) or host.endswith("." + _DELIVERY_HOST)
        if ours not in self._sessions:
            headers = {"Authorization": f"Bearer {self._token}"} if ours else None
            self._sessions[ours] = aiohttp.ClientSession(headers=headers, timeout=_DOWNLOAD_TIMEOUT)
        return await download_image(self._sessions[ours], url, attempts=1, max_bytes=self._max_download_bytes)


def _without_hidden_retries(client: replicate.Client) -> None:
    """Turn off the SDK's own retries: it wraps every transport in a RetryTransport that sends a GET
    answered 429/503/504 again up to 10 times, unseen by the engine, whose retry policy and pacing
    decide every attempt (as the OpenAI client's ``max_retries=0`` does there)."""
    retrying = client._async_client._transport  # noqa: SLF001 - the SDK offers no switch for it
    if isinstance(retrying, RetryTransport):
        retrying.max_attempts = 1


def _as_uri(image: bytes | str) -> str:
    """An input file as the API takes it: URLs and data URIs unchanged, bytes as a data URI."""
    if isinstance(image, str):
        if not image.startswith(("http://", "https://", "data:")):
            raise ValueError("an input image string must be an http(s) URL or a data URI")
        return image
    try:
        with Image.open(io.BytesIO(image)) as decoded:
            mime = Image.MIME.get(decoded.format or "", "application/octet-stream")
    except (UnidentifiedImageError, OSError):
        raise TaskError(ErrorKind.PERMANENT, "the input image is not a decodable image") from None
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def _output_url(prediction: dict[str, Any]) -> str:
    """The output file's URL; the models return one URI, a list or ``FileOutput`` is accepted too."""
    output = prediction.get("output")
    if isinstance(output, list):
        output = output[0] if output else None
    output = getattr(output, "url", output)
    if not isinstance(output, str):
        removed = " (its data was removed)" if prediction.get("data_removed") else ""
        message = f"prediction {prediction['id']} has no output file{removed}"
        raise PredictionEnded(ErrorKind.TRANSIENT, message, billed=True)
    return output
