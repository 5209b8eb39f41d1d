"""The contract, provenance: every image every kind of run writes carries what made it, the one same
way: a PNG in its ``parameters`` and ``imggen`` text chunks, a JPEG in EXIF ``UserComment`` and its
comment (read back by Pillow, as image browsers read them)."""

from __future__ import annotations

import subprocess

import pytest
from PIL import Image
from run_kinds import KINDS

from imggen.storage.provenance import read_provenance
from instructions_fixtures import klein

__all__ = ["klein"]  # a fixture
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def parameters(path) -> str:
    """The A1111 ``parameters`` text as a reader finds it in the file."""
    with Image.open(path) as image:
        if image.format == "PNG":
            return image.text.get("parameters", "")
        comment = image.getexif().get_ifd(0x8769).get(0x9286, b"")
    assert comment.startswith(b"UNICODE\x00"), comment[:16]
    return comment[8:].decode("utf-16-be")


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_image_carries_its_provenance(kind, tmp_path, klein):
    with KINDS[kind](tmp_path, klein) as run:
        result = subprocess.run(run.command, env=run.env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr
        images = run.image_files()
    assert images
    for path in images:
        made = read_provenance(path)
        assert made.get("prompt") and made.get("model"), (path, made)
        text = parameters(path)
        assert text.startswith(made["prompt"]) and f"Model: {made['model']}" in text, (path, text)
