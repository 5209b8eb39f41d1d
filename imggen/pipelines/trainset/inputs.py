"""Reading the user's source image, the one a training set is built from: an http(s) URL, a local path or a data URI.

The user's other file, a pool of tile subjects, is read by :meth:`~.descriptions.DescriptionPool.load`,
beside the rotation that hands its subjects out, since both share the pool's shape and its checks.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import aiohttp

from imggen.backends.image_download import check_image, download_image
from imggen.engine.errors import ErrorKind, TaskError


async def load_source(source: str | Path) -> bytes:
    """The source image's bytes; a FATAL :class:`TaskError` when it cannot be read (nothing can run)."""
    text = str(source)
    try:
        if text.startswith("data:"):
            header, _, payload = text.partition(",")
            if ";base64" not in header:
                raise TaskError(ErrorKind.FATAL, "the source data URI is not base64-encoded")
            data = base64.b64decode(payload, validate=True)
        elif text.startswith(("http://", "https://")):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
                data = await download_image(session, text)
        else:
            data = Path(text).expanduser().read_bytes()
        return check_image(data, "the source image")
    except TaskError as error:
        raise TaskError(ErrorKind.FATAL, f"cannot use the source image: {error.message}") from None
    except (OSError, binascii.Error, ValueError) as error:
        raise TaskError(ErrorKind.FATAL, f"cannot read the source image {text[:80]!r}: {error}") from None
