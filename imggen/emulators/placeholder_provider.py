"""An in-process stand-in for a remote image provider, for ``imggen demo engine``: each call answers
after a simulated latency with a labelled placeholder PNG, and the first call for every fifth image
times out, so the demo shows the engine's retries without a key, a GPU or a network."""

from __future__ import annotations

import asyncio
import colorsys
import io
import random

from PIL import Image, ImageDraw

from ..engine.errors import ErrorKind, TaskError


def draw_placeholder(index: int, subject: str, size: int = 128) -> bytes:
    """A PNG with a colour derived from the index and the subject written on it."""
    red, green, blue = colorsys.hsv_to_rgb((index * 0.137) % 1.0, 0.55, 0.9)
    image = Image.new("RGB", (size, size), (int(red * 255), int(green * 255), int(blue * 255)))
    ImageDraw.Draw(image).text((8, size // 2 - 6), f"{index}: {subject}", fill=(20, 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class PlaceholderProvider:
    """Answers ``draw`` like a remote call that takes about ``latency_s`` seconds."""

    def __init__(self, latency_s: float = 0.2) -> None:
        self.latency_s = latency_s
        self._timed_out: set[str] = set()

    async def draw(self, key: str, index: int, subject: str) -> bytes:
        """Image ``key``'s PNG; the first call for every fifth image (index 4, 9, 14, ...) times out."""
        await asyncio.sleep(self.latency_s * random.uniform(0.5, 1.5))  # the request in flight
        if index % 5 == 4 and key not in self._timed_out:
            self._timed_out.add(key)
            raise TaskError(ErrorKind.TRANSIENT, "simulated timeout (the demo fails every fifth image once)")
        return draw_placeholder(index, subject)
