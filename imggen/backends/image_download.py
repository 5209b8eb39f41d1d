"""Fetching a generated image from the URL a provider returned, safely; and reading the image a user
names (:func:`read_image_source`: an http(s) URL, a local path or a data URI).

The image is already paid for, so the download alone is retried in place a few times (connection
errors, timeouts, 5xx: the engine's :func:`~imggen.engine.retry.retried`) before giving up; it is refused when it is larger than a cap or not an image.
No credentials are sent to the URL's host. Failures are :class:`TaskError`: TRANSIENT when the
fetch kept failing (a rerun regenerates), PERMANENT when the server sent something unusable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from pathlib import Path

import aiohttp

from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.retry import RetryPolicy, retried
from imggen.storage.atomic import InvalidImage, check_image_bytes

MAX_IMAGE_BYTES = 50 * 1024 * 1024


class DownloadFailed(TaskError):
    """One try at fetching the file failed (connection, timeout, 5xx); another may work."""


class ImageGone(TaskError):
    """The image URL answered 4xx: the file expired or was removed, and fetching it again will not help."""


def check_image(data: bytes, source: str) -> bytes:
    """``data`` if it decodes fully as an image of an acceptable size (no decompression bomb), else a
    PERMANENT :class:`TaskError` naming ``source`` and the problem."""
    try:
        check_image_bytes(data)
    except InvalidImage as exc:
        raise TaskError(ErrorKind.PERMANENT, f"{source} was refused: {exc}") from None
    return data


async def read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The whole body of ``response``, read in chunks; PERMANENT :class:`TaskError` past ``max_bytes``."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        body += chunk
        if len(body) > max_bytes:
            raise TaskError(ErrorKind.PERMANENT, f"the image is larger than {max_bytes} bytes")
    return bytes(body)


async def _fetch_once(session: aiohttp.ClientSession, url: str, max_bytes: int) -> bytes:
    try:
        async with session.get(url) as response:
            if response.status >= 500:
                raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
            if response.status >= 400:
                raise ImageGone(ErrorKind.TRANSIENT, f"the image URL answered HTTP {response.status} (expired?)")
            content_type = response.headers.get("Content-Type", "")
            if not content_type.startswith("image/"):
                sent = content_type or "no content type"
                raise TaskError(ErrorKind.PERMANENT, f"the image URL sent {sent}, not an image")
            if (response.content_length or 0) > max_bytes:
                raise TaskError(ErrorKind.PERMANENT, f"the image is larger than {max_bytes} bytes")
            return check_image(await read_capped(response, max_bytes), "the downloaded file")
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise DownloadFailed(ErrorKind.TRANSIENT, type(exc).__name__,
                             connection_error=not isinstance(exc, aiohttp.ClientResponseError)) from None


async def download_image(
    session: aiohttp.ClientSession, url: str, *, attempts: int = 3, backoff_s: float = 0.5,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> bytes:
    """The image bytes at ``url``, retrying only the download, at most ``attempts`` times."""
    policy = RetryPolicy(max_attempts=attempts, backoff_base_s=backoff_s)
    try:
        return await retried(lambda: _fetch_once(session, url, max_bytes), policy, final=(ImageGone,))
    except DownloadFailed as failed:
        raise TaskError(ErrorKind.TRANSIENT, f"downloading the image failed {attempts} times ({failed.message})",
                        connection_error=failed.connection_error) from None


async def read_image_source(source: str | Path, what: str = "the source image") -> bytes:
    """The bytes of the image ``source`` names (http(s) URL, path or data URI); a FATAL
    :class:`TaskError` when it cannot be read (nothing can run without it)."""
    text = str(source)
    try:
        if text.startswith("data:"):
            header, _, payload = text.partition(",")
            if ";base64" not in header:
                raise TaskError(ErrorKind.FATAL, f"{what}'s data URI is not base64-encoded")
            data = base64.b64decode(payload, validate=True)
        elif text.startswith(("http://", "https://")):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
                data = await download_image(session, text)
        else:
            data = Path(text).expanduser().read_bytes()
        return check_image(data, what)
    except TaskError as error:
        raise TaskError(ErrorKind.FATAL, f"cannot use {what}: {error.message}") from None
    except (OSError, binascii.Error, ValueError) as error:
        raise TaskError(ErrorKind.FATAL, f"cannot read {what} {text[:80]!r}: {error}") from None
