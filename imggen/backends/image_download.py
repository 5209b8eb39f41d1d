"""Fetching a generated image from the URL a provider returned, safely.

The image is already paid for, so the download alone is retried a few times (connection errors,
timeouts, 5xx) before giving up; it is refused when it is larger than a cap or not an image.
No credentials are sent to the URL's host. Failures are :class:`TaskError`: TRANSIENT when the
fetch kept failing (a rerun regenerates), PERMANENT when the server sent something unusable.
"""

from __future__ import annotations

import asyncio
import io

import aiohttp
from PIL import Image, UnidentifiedImageError

from imggen.engine.errors import ErrorKind, TaskError

MAX_IMAGE_BYTES = 50 * 1024 * 1024


def check_image(data: bytes, source: str) -> bytes:
    """``data`` if it decodes as an image, else a PERMANENT :class:`TaskError` naming ``source``."""
    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise TaskError(ErrorKind.PERMANENT, f"{source} is not a readable image") from exc
    return data


async def _fetch_once(session: aiohttp.ClientSession, url: str, max_bytes: int) -> bytes:
    async with session.get(url) as response:
        if response.status >= 500:
            raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
        if response.status >= 400:
            raise TaskError(ErrorKind.TRANSIENT, f"the image URL answered HTTP {response.status} (expired?)")
        content_type = response.headers.get("Content-Type", "")
        if not content_type.startswith("image/"):
            sent = content_type or "no content type"
            raise TaskError(ErrorKind.PERMANENT, f"the image URL sent {sent}, not an image")
        if (response.content_length or 0) > max_bytes:
            raise TaskError(ErrorKind.PERMANENT, f"the image is larger than {max_bytes} bytes")
        data = await response.content.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise TaskError(ErrorKind.PERMANENT, f"the image is larger than {max_bytes} bytes")
        return data


async def download_image(
    session: aiohttp.ClientSession, url: str, *, attempts: int = 3, backoff_s: float = 0.5,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> bytes:
    """The image bytes at ``url``, retrying only the download, at most ``attempts`` times."""
    attempt = 1
    while True:
        try:
            return check_image(await _fetch_once(session, url, max_bytes), "the downloaded file")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if attempt >= attempts:
                raise TaskError(
                    ErrorKind.TRANSIENT, f"downloading the image failed {attempt} times ({type(exc).__name__})",
                    connection_error=not isinstance(exc, aiohttp.ClientResponseError),
                ) from None
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
            attempt += 1
