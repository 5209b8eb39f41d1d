"""The readers people point at an image's generation data, run on the images imggen writes.

- exifr and ExifReader, the JavaScript readers image sites use (``tests/readers``, installed by
  ``make setup`` with npm; run here with Node.js): the A1111 ``parameters`` text each finds, from a
  PNG text chunk or a JPEG's EXIF ``UserComment`` (whose raw bytes each hands back, decoded here as
  A1111 decodes its own: ``UNICODE`` and UTF-16 in the EXIF data's byte order);
- A1111's rule for that text: the last line holds the settings only when it has three ``key: value``
  fields or more, else it is part of the prompt (``settings_of``; the field pattern is the one
  A1111's infotext parser uses);
- sd-parsers and sd-prompt-reader, Python libraries that recognise an A1111 image only by its
  sampler, steps, CFG scale and seed, which only a local model's image has.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

READERS = Path(__file__).with_name("readers")
UNICODE = b"UNICODE\x00"
A1111_FIELD = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def needs_js_readers() -> None:
    """Skip where Node.js or the readers are missing (``make setup`` installs them when npm is there)."""
    if shutil.which("node") is None:
        pytest.skip("needs Node.js for the JavaScript readers exifr and ExifReader")
    if not (READERS / "node_modules" / "exifr").is_dir():
        pytest.skip("the JavaScript readers are not installed: npm ci --prefix tests/readers (make setup does it)")


def js_readers(path: Path) -> dict[str, str | None]:
    """The ``parameters`` text exifr and ExifReader find in the image at ``path`` (None: found none)."""
    ran = subprocess.run(["node", str(READERS / "read_metadata.mjs"), str(path)], capture_output=True, text=True,
                         timeout=60, check=True)
    found = json.loads(ran.stdout)
    return {reader: fields["parameters"] if fields["parameters"] is not None else _user_comment(fields["userComment"])
            for reader, fields in found.items()}


def _user_comment(raw: list[int] | None) -> str | None:
    if raw is None or not bytes(raw).startswith(UNICODE):
        return None
    return bytes(raw)[len(UNICODE):].decode("utf-16-be")


def settings_of(parameters: str) -> tuple[str, dict[str, str]]:
    """A1111's reading of ``parameters``: the prompt, and the settings of its last line (none when that
    line has fewer than three fields: then it is read as prompt too)."""
    *lines, last = parameters.strip().split("\n")
    fields = A1111_FIELD.findall(last)
    if len(fields) < 3:
        return parameters.strip(), {}
    return "\n".join(lines), {key: json.loads(value) if value.startswith('"') else value for key, value in fields}


def sd_parsers_read(path: Path) -> dict[str, str] | None:
    """What sd-parsers reads: prompt, model and size, or None where it recognises no generator."""
    from sd_parsers import ParserManager
    from sd_parsers.extractors import _jpeg_usercomment, _png_stenographic_alpha

    # sd-parsers 0.6 keeps the last image's metadata under id(image); once that image is freed, the
    # next one opened may get the same id and be read as the last one. Each read starts afresh.
    _jpeg_usercomment._image_id = _png_stenographic_alpha._image_id = None
    info = ParserManager().parse(path)
    if info is None or not info.samplers:
        return None
    sampler = info.samplers[0]
    return {"prompt": sampler.prompts[0].value if sampler.prompts else "", "model": sampler.model.name,
            "size": info.metadata.get("Size"), "sampler": sampler.name}


def sd_prompt_reader_read(path: Path) -> dict[str, str | None]:
    """What sd-prompt-reader reads: prompt, model and size (its fields are None where it found no settings)."""
    from sd_prompt_reader.image_data_reader import ImageDataReader

    data = ImageDataReader(str(path))
    return {"prompt": data.positive, "model": data.parameter.get("model"), "size": data.parameter.get("size"),
            "sampler": data.parameter.get("sampler")}
