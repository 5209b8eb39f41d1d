"""Deterministic pictures drawn from a prompt, standing in for a model's output in the emulators.

The same prompt always gives the same picture and different prompts give visibly different ones
(colours, gradient and shapes all come from the prompt's SHA-256), so tests can tell images apart
and dedupe them by content. ``render_dimensions`` lets an emulator draw smaller than requested to
keep tests fast.
"""

from __future__ import annotations

import hashlib
import io
import random

from PIL import Image, ImageDraw, ImageOps

_SHAPES = 7


def render_dimensions(width: int, height: int, *, scale: float = 1.0, max_side: int | None = None) -> tuple[int, int]:
    """The size actually drawn for a requested ``width`` x ``height``: scaled by ``scale``, then
    shrunk (keeping the aspect ratio) so the longer side is at most ``max_side``; never below 8."""
    factor = scale
    if max_side is not None:
        factor = min(factor, max_side / max(width, height))
    return max(8, round(width * factor)), max(8, round(height * factor))


def draw_prompt_picture(
    prompt: str, width: int, height: int, *, transparent: bool = False, image_format: str = "png",
    compression: int | None = None,
) -> bytes:
    """Encoded image bytes (``png``, ``jpeg`` or ``webp``) of the picture for ``prompt``."""
    rng = random.Random(hashlib.sha256(prompt.encode("utf-8")).digest())

    def colour() -> tuple[int, int, int]:
        return rng.randrange(256), rng.randrange(256), rng.randrange(256)

    gradient = Image.linear_gradient("L").resize((width, height))
    if rng.random() < 0.5:
        gradient = gradient.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    picture = ImageOps.colorize(gradient, colour(), colour()).convert("RGBA")
    if transparent:
        picture.putalpha(0)
    draw = ImageDraw.Draw(picture)
    for _ in range(_SHAPES):
        x0, x1 = sorted(rng.randrange(width) for _ in range(2))
        y0, y1 = sorted(rng.randrange(height) for _ in range(2))
        box = (x0, y0, max(x1, x0 + width // 8), max(y1, y0 + height // 8))
        fill = (*colour(), 255)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=fill)
        else:
            draw.rectangle(box, fill=fill)
    return encode_picture(picture, image_format, compression)


def encode_picture(picture: Image.Image, image_format: str = "png", compression: int | None = None) -> bytes:
    """``picture`` encoded as ``png``, ``jpeg`` (no alpha) or ``webp``; ``compression`` is the API's
    ``output_compression`` (0-100, default 100 = best), used as the encoder's quality."""
    buffer = io.BytesIO()
    if image_format == "png":
        picture.save(buffer, format="PNG")
    else:
        image = picture.convert("RGB") if image_format == "jpeg" else picture
        quality = compression if compression is not None else 100
        image.save(buffer, format=image_format.upper(), quality=max(quality, 1))
    return buffer.getvalue()
