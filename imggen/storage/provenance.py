"""Provenance: what made an image, inside the file, where image browsers and imggen both read it.

Every image imggen writes is stamped here (:func:`stamped`), the same way for every pipeline. A PNG
carries, right after its header:

- ``parameters``: A1111-style text, the prompt and then one line of what made it, such as
  ``Steps: 4, Sampler: Euler, CFG scale: 1.0, Seed: 12, Size: 1024x1024, Model: flux2-klein-4B, Version:
  imggen 0.1.0`` (what Stable Diffusion web UI, ComfyUI, Civitai and most image browsers show as an image's
  generation data). Only what is known is said: an API model's image has no steps or sampler, but its
  size, model, quality and version, so the line has three fields or more and A1111's rule reads it as
  settings, not as part of the prompt;
- ``imggen``: the full provenance as JSON (:func:`read_provenance` reads it back);
- ``Software: imggen``, and any plain fields a pipeline adds (the style matrix's ``cost_usd``).

Each is a ``tEXt`` chunk when its text is Latin-1, as A1111 writes it (exifr and other readers read
only ``tEXt``), else ``iTXt`` (UTF-8). A JPEG carries the same ``parameters`` text as EXIF
``UserComment`` (UNICODE, as A1111 writes it), ``Software: imggen``, and the provenance JSON as EXIF
``MakerNote`` (a JPEG comment would make readers such as sd-prompt-reader take the file for Fooocus's;
an earlier version's comment is still read); its compressed data is kept byte for byte.

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

import piexif
from PIL import Image

PROVENANCE_KEY = "imggen"
PARAMETERS_KEY = "parameters"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"
EXIF_IFD, EXIF_MAKER_NOTE = 0x8769, 0x927C
UNICODE_COMMENT = b"UNICODE\x00"  # a UserComment's character code


def as_png(data: bytes | Image.Image) -> bytes:
    """PNG bytes of an image: PNG input is kept byte for byte, anything else is converted."""
    if isinstance(data, bytes) and data.startswith(PNG_SIGNATURE):
        return data
    image = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# What A1111 calls the sampler of a diffusers scheduler (FLUX.2's flow-matching Euler is its "Euler").
A1111_SAMPLERS = {"FlowMatchEulerDiscreteScheduler": "Euler"}


def parameters_text(prompt: str, *, model: str, size: tuple[int, int], settings: Mapping[str, Any] | None = None) -> str:
    """The A1111 ``parameters`` text: the prompt, then the line of what made the image. ``settings`` is
    what the backend reported (``steps``, ``scheduler``, ``guidance``, ``seed``, ``quality``, ``style``);
    what it did not report is left out, never made up."""
    settings = settings or {}
    scheduler = settings.get("scheduler")
    fields = [("Steps", settings.get("steps")), ("Sampler", A1111_SAMPLERS.get(scheduler, scheduler)),
              ("CFG scale", settings.get("guidance")), ("Seed", settings.get("seed")),
              ("Size", f"{size[0]}x{size[1]}"), ("Model", model), ("Quality", settings.get("quality")),
              ("Style", settings.get("style")), ("Version", f"imggen {_version()}")]
    return prompt + "\n" + ", ".join(f"{name}: {_quoted(value)}" for name, value in fields if value is not None)


def _quoted(value: Any) -> str:
    """A value as A1111 writes one into its settings line: quoted (JSON) when it holds a comma, colon or newline."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(mark in text for mark in ",:\n") else text


def _version() -> str:
    from imggen import __version__  # here: this module is imported while the package is

    return __version__


def png_with_provenance(
    image: bytes | Image.Image, provenance: Mapping[str, Any], *, prompt: str, model: str,
    settings: Mapping[str, Any] | None = None, plain: Mapping[str, str] | None = None,
) -> bytes:
    """``image`` as PNG bytes with its ``parameters`` text (see :func:`parameters_text` for ``settings``),
    its provenance JSON and ``plain`` fields."""
    png = as_png(image)
    fields = {
        PARAMETERS_KEY: parameters_text(prompt, model=model, size=png_size(png), settings=settings),
        PROVENANCE_KEY: json.dumps(without_local_paths(provenance), ensure_ascii=False, sort_keys=True, default=str),
        "Software": "imggen",
        **(plain or {}),
    }
    return _with_text_chunks(png, fields)


def stamped(image: bytes, provenance: Mapping[str, Any], *, prompt: str, model: str,
            settings: Mapping[str, Any] | None = None) -> bytes:
    """``image`` (PNG or JPEG bytes; anything else becomes PNG) with its provenance in the file."""
    if image.startswith(JPEG_SIGNATURE):
        return jpeg_with_provenance(image, provenance, prompt=prompt, model=model, settings=settings)
    return png_with_provenance(image, provenance, prompt=prompt, model=model, settings=settings)


def jpeg_with_provenance(jpeg: bytes, provenance: Mapping[str, Any], *, prompt: str, model: str,
                         settings: Mapping[str, Any] | None = None) -> bytes:
    """``jpeg`` with EXIF (``UserComment``: the ``parameters`` text; ``Software``; ``MakerNote``: the
    provenance JSON), inserted after its header segments; the image data is not re-encoded."""
    with Image.open(io.BytesIO(jpeg)) as image:
        size = image.size
    text = parameters_text(prompt, model=model, size=size, settings=settings)
    record = json.dumps(without_local_paths(provenance), ensure_ascii=True, sort_keys=True, default=str).encode()
    exif = piexif.dump({  # big-endian: a UNICODE user comment is UTF-16 in the EXIF data's byte order
        "0th": {piexif.ImageIFD.Software: b"imggen"},
        "Exif": {piexif.ExifIFD.UserComment: UNICODE_COMMENT + text.encode("utf-16-be"),
                 piexif.ExifIFD.MakerNote: record},
    })
    at = _after_jfif_header(jpeg)
    return jpeg[:at] + _segment(b"\xff\xe1", exif) + jpeg[at:]


def read_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance JSON of an image imggen wrote, PNG or JPEG ({} for an image without one, or no image)."""
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                text = image.getexif().get_ifd(EXIF_IFD).get(EXIF_MAKER_NOTE) or image.info.get("comment")
            else:
                text = getattr(image, "text", {}).get(PROVENANCE_KEY)
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


def _text_chunk(keyword: str, text: str) -> bytes:
    """``tEXt`` when ``text`` is Latin-1 (what A1111 writes, and all some readers read), else ``iTXt``."""
    try:
        return _chunk(b"tEXt", keyword.encode("latin-1") + b"\x00" + text.encode("latin-1"))
    except UnicodeEncodeError:
        # keyword NUL, compression flag 0, method 0, empty language tag NUL, empty translated keyword NUL, UTF-8
        return _chunk(b"iTXt", keyword.encode("latin-1") + b"\x00\x00\x00\x00\x00" + text.encode("utf-8"))


def _with_text_chunks(png: bytes, fields: Mapping[str, str]) -> bytes:
    header_end = 8 + 12 + struct.unpack(">I", png[8:12])[0]  # signature, then IHDR's length, type, data and CRC
    chunks = b"".join(_text_chunk(name, value) for name, value in fields.items())
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
