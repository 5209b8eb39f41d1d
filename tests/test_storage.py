"""Atomic writes, image validation, and paths from untrusted names that never leave the output root."""

from __future__ import annotations

import io
import os
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from imggen.storage.atomic import InvalidImage, atomic_write_bytes, atomic_writer, check_image_bytes, is_valid_image
from imggen.storage.lock import FolderBusy, folder_lock
from imggen.storage.paths import MAX_NAME_LENGTH, safe_name, safe_path

from conftest import png_bytes

names = st.text(min_size=0, max_size=300)


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(names, min_size=1, max_size=4))
def test_safe_path_never_leaves_the_root(tmp_path_factory, parts):
    root = tmp_path_factory.getbasetemp() / "root"
    path = safe_path(root, *parts)
    assert root.resolve() in path.parents
    for component in path.relative_to(root.resolve()).parts:
        assert 0 < len(component) <= MAX_NAME_LENGTH and component not in (".", "..")
        assert "\x00" not in component and "/" not in component and not component.startswith(".")


@settings(max_examples=400, deadline=None)
@given(first=names, second=names)
def test_different_names_stay_different(first, second):
    if first != second:
        assert safe_name(first) != safe_name(second)


@given(st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=MAX_NAME_LENGTH))
def test_plain_names_are_kept_as_they_are(name):
    assert safe_name(name) == name


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/etc/passwd", "a\x00b", "..", ".", "", "x" * 5000, "../"])
def test_hostile_names_become_one_harmless_component(tmp_path, hostile):
    path = safe_path(tmp_path, "images", hostile, "file.png")
    assert path.parent.parent == (tmp_path / "images").resolve()


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as handle:
            handle.write(b"half of the new")
            raise RuntimeError("disk gone")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_image_validation(tmp_path):
    good, truncated = tmp_path / "good.png", tmp_path / "truncated.png"
    good.write_bytes(png_bytes())
    truncated.write_bytes(png_bytes(size=64)[:-30])
    assert is_valid_image(good)
    assert not is_valid_image(truncated)
    assert not is_valid_image(tmp_path / "missing.png")
    with pytest.raises(InvalidImage):
        check_image_bytes(b"<html>not an image</html>")


def test_decompression_bomb_is_refused():
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")  # tiny file, 400 megapixels
    with pytest.raises(InvalidImage, match="larger than allowed|decompression bomb"):
        check_image_bytes(buffer.getvalue())


def test_a_second_run_on_the_same_folder_is_refused_with_a_clear_message(tmp_path):
    partial = tmp_path / "images" / ".img.png.abc.part"
    partial.parent.mkdir()
    partial.write_bytes(b"half")
    with folder_lock(tmp_path):
        assert not partial.exists()  # left by a killed run, removed when the next run starts
        with pytest.raises(FolderBusy, match="in use by a running job"):
            with folder_lock(tmp_path):
                pass
    with folder_lock(tmp_path):
        pass  # free again once the first run ended
