"""The contract, provenance: every image every kind of run writes carries what made it, the one same
way: a PNG in its ``parameters`` and ``imggen`` text chunks, a JPEG in EXIF ``UserComment`` and
``MakerNote``. The readers people use find it: Pillow as imggen reads it back, exifr and ExifReader
with A1111's rule for the settings line (the right prompt, model and size), and for an image a local
model drew, sd-parsers and sd-prompt-reader too (they need its sampler and steps, which an API image
does not have and is not given)."""

from __future__ import annotations

import subprocess

import pytest
from PIL import Image
from run_kinds import KINDS

from image_readers import js_readers, needs_js_readers, sd_parsers_read, sd_prompt_reader_read, settings_of
from imggen.storage.provenance import read_provenance

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def parameters(path) -> str:
    """The A1111 ``parameters`` text as a reader finds it in the file."""
    with Image.open(path) as image:
        if image.format == "PNG":
            return image.text.get("parameters", "")
        comment = image.getexif().get_ifd(0x8769).get(0x9286, b"")
    assert comment.startswith(b"UNICODE\x00"), comment[:16]
    return comment[8:].decode("utf-16-be")


LOCAL_MODELS = {"styles-flux2", "instructions-local", "instructions-ray", "trainset-local"}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_image_carries_its_provenance(kind, tmp_path, klein):
    needs_js_readers()
    with KINDS[kind](tmp_path, klein) as run:
        result = subprocess.run(run.command, env=run.env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr
        images = run.image_files()
    assert images
    for path in images:
        made = read_provenance(path)
        assert made.get("prompt") and made.get("model"), (path, made)
        text = parameters(path)
        with Image.open(path) as image:
            size = f"{image.width}x{image.height}"
        expected = (made["prompt"], made["model"], size)
        assert settings_of(text)[0] == made["prompt"], (path, text)
        seed = settings_of(text)[1].get("Seed")
        assert seed is None or int(seed) < 2**53, (path, seed)  # exact in a JavaScript number
        for reader, found in {"pillow": text, **js_readers(path)}.items():
            prompt, settings = settings_of(found or "")
            assert (prompt, settings.get("Model"), settings.get("Size")) == expected, (reader, path, found)
        if kind in LOCAL_MODELS:
            for reader in (sd_prompt_reader_read, sd_parsers_read):
                read = reader(path)
                assert (read["prompt"], read["model"], read["size"]) == expected, (reader.__name__, path, read)
