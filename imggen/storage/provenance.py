"""PNG provenance: what made an image, in text chunks that image browsers and imggen both read.

Every PNG imggen writes carries, right after its header:

- ``parameters``: A1111-style text, the prompt and then one line such as
  ``Steps: 4, Seed: 12, Size: 1024x1024, Model: flux2-klein-4B`` (what Stable Diffusion web UI,
  ComfyUI, Civitai and most image browsers show as an image's generation data);
- ``imggen``: the full provenance as JSON (:func:`read_provenance` reads it back);
- ``Software: imggen``, and any plain fields a pipeline adds (the style matrix's ``cost_usd``).

An image is a file people share, so provenance written into it carries no absolute local path:
each one is cut to its file name (the ledger keeps the full record). PNG bytes a provider
returned are kept byte for byte; the chunks are inserted after ``IHDR``.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import Any, Mapping

from PIL import Image

PROVENANCE_KEY = "imggen"
PARAMETERS_KEY = "parameters"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def as_png(data: bytes | Image.Image) -> bytes:
    """PNG bytes of an image: PNG input is kept byte for byte, anything else is converted."""
    if isinstance(data, bytes) and data.startswith(PNG_SIGNATURE):
        return data
    image = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def parameters_text(prompt: str, *, model: str, size: tuple[int, int], seed: int | None = None,
                    steps: int | None = None) -> str:
    """The A1111 ``parameters`` text: the prompt, then ``Steps: …, Seed: …, Size: WxH, Model: …``."""
    settings = [("Steps", steps), ("Seed", seed), ("Size", f"{size[0]}x{size[1]}"), ("Model", model)]
    return prompt + "\n" + ", ".join(f"{name}: {value}" for name, value in settings if value is not None)


def png_with_provenance(
    image: bytes | Image.Image, provenance: Mapping[str, Any], *, prompt: str, model: str,
    seed: int | None = None, steps: int | None = None, plain: Mapping[str, str] | None = None,
) -> bytes:
    """``image`` as PNG bytes with its ``parameters`` text, its provenance JSON and ``plain`` fields."""
    png = as_png(image)
    fields = {
        PARAMETERS_KEY: parameters_text(prompt, model=model, size=png_size(png), seed=seed, steps=steps),
        PROVENANCE_KEY: json.dumps(without_local_paths(provenance), ensure_ascii=False, sort_keys=True, default=str),
        "Software": "imggen",
        **(plain or {}),
    }
    return _with_text_chunks(png, fields)


def read_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance JSON of an image imggen wrote ({} for an image without one, or no image)."""
    try:
        return json.loads(read_text_field(path, PROVENANCE_KEY) or "{}")
    except ValueError:
        return {}


def read_text_field(path: str | os.PathLike, key: str) -> str | None:
    """One text chunk of a PNG, or None where the image (or the chunk) is missing."""
    try:
        with Image.open(path) as image:
            return getattr(image, "text", {}).get(key)
    except (OSError, ValueError):
        return None


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", png[16:24])


def without_local_paths(value: Any) -> Any:
    """``value`` with every absolute path (in strings, lists and dicts) cut to its file name."""
    if isinstance(value, Mapping):
        return {key: without_local_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_local_paths(item) for item in value]
    if isinstance(value, str) and _is_absolute(value):
        return _path_type(value)(value).name
    return value


def _is_absolute(text: str) -> bool:
    return "\n" not in text and (PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute())


def _path_type(text: str) -> type[PurePath]:
    return PurePosixPath if PurePosixPath(text).is_absolute() else PureWindowsPath


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _itxt(keyword: str, text: str) -> bytes:
    # keyword NUL, compression flag 0, method 0, empty language tag NUL, empty translated keyword NUL, UTF-8 text
    return _chunk(b"iTXt", keyword.encode("latin-1") + b"\x00\x00\x00\x00\x00" + text.encode("utf-8"))


def _with_text_chunks(png: bytes, fields: Mapping[str, str]) -> bytes:
    header_end = 8 + 12 + struct.unpack(">I", png[8:12])[0]  # signature, then IHDR's length, type, data and CRC
    chunks = b"".join(_itxt(name, value) for name, value in fields.items())
    return png[:header_end] + chunks + png[header_end:]
