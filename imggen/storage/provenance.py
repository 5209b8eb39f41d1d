"""Provenance: what made an image, inside the file, where image browsers and imggen both read it.

Every image imggen writes is stamped here (:func:`stamped`), the same way for every pipeline. A PNG
carries, right after its header:

- ``parameters``: A1111-style text, the prompt and then one line such as
  ``Steps: 4, Seed: 12, Size: 1024x1024, Model: flux2-klein-4B`` (what Stable Diffusion web UI,
  ComfyUI, Civitai and most image browsers show as an image's generation data);
- ``imggen``: the full provenance as JSON (:func:`read_provenance` reads it back);
- ``Software: imggen``, and any plain fields a pipeline adds (the style matrix's ``cost_usd``).

A JPEG carries the same ``parameters`` text as EXIF ``UserComment`` (UNICODE, as A1111 writes it),
``Software: imggen``, and the provenance JSON as its comment; its compressed data is kept byte for byte.

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
JPEG_SIGNATURE = b"\xff\xd8"
EXIF_SOFTWARE, EXIF_IFD, EXIF_USER_COMMENT = 0x0131, 0x8769, 0x9286
UNICODE_COMMENT = b"UNICODE\x00"  # a UserComment's character code


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


def stamped(image: bytes, provenance: Mapping[str, Any], *, prompt: str, model: str, seed: int | None = None,
            steps: int | None = None) -> bytes:
    """``image`` (PNG or JPEG bytes; anything else becomes PNG) with its provenance in the file."""
    if image.startswith(JPEG_SIGNATURE):
        return jpeg_with_provenance(image, provenance, prompt=prompt, model=model, seed=seed, steps=steps)
    return png_with_provenance(image, provenance, prompt=prompt, model=model, seed=seed, steps=steps)


def jpeg_with_provenance(jpeg: bytes, provenance: Mapping[str, Any], *, prompt: str, model: str,
                         seed: int | None = None, steps: int | None = None) -> bytes:
    """``jpeg`` with EXIF (``UserComment``: the ``parameters`` text; ``Software``) and the provenance JSON
    as a comment segment, inserted after its header segments; the image data is not re-encoded."""
    with Image.open(io.BytesIO(jpeg)) as image:
        size = image.size
    exif = Image.Exif()
    exif.endian = ">"  # UNICODE user comments are UTF-16 in the byte order of the EXIF data
    exif[EXIF_SOFTWARE] = "imggen"
    text = parameters_text(prompt, model=model, size=size, seed=seed, steps=steps)
    exif.get_ifd(EXIF_IFD)[EXIF_USER_COMMENT] = UNICODE_COMMENT + text.encode("utf-16-be")
    record = json.dumps(without_local_paths(provenance), ensure_ascii=True, sort_keys=True, default=str).encode()
    segments = _segment(b"\xff\xe1", exif.tobytes()) + _segment(b"\xff\xfe", record)
    at = _after_jfif_header(jpeg)
    return jpeg[:at] + segments + jpeg[at:]


def read_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance JSON of an image imggen wrote, PNG or JPEG ({} for an image without one, or no image)."""
    try:
        with Image.open(path) as image:
            text = image.info.get("comment") if image.format == "JPEG" else getattr(image, "text", {}).get(PROVENANCE_KEY)
        found = json.loads(text or "{}")
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


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


def _segment(marker: bytes, payload: bytes) -> bytes:
    if len(payload) > 65533:
        raise ValueError("provenance too long for one JPEG segment")
    return marker + struct.pack(">H", len(payload) + 2) + payload


def _after_jfif_header(jpeg: bytes) -> int:
    """Where new segments go: after SOI and a JFIF APP0 segment, which must come first."""
    at = 2
    if jpeg[at:at + 2] == b"\xff\xe0":
        at += 2 + struct.unpack(">H", jpeg[at + 2:at + 4])[0]
    return at
