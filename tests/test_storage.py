"""Atomic writes, image validation, and paths from untrusted names that never leave the output root
and never share a place."""

from __future__ import annotations

import io
import os
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from imggen.pipelines.instructions.layout import Group
from imggen.pipelines.styles.layout import image_place
from imggen.pipelines.trainset.layout import job_root
from imggen.storage.stores import LocalFolderStore, owner_prefix
from imggen.storage.atomic import InvalidImage, atomic_write_bytes, atomic_writer, check_image_bytes, is_valid_image
from imggen.storage.lock import FolderBusy, folder_lock
from imggen.storage.paths import MAX_NAME_LENGTH, safe_name, safe_path
from imggen.storage.s3 import S3Store

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


def test_a_clean_name_cannot_take_the_place_of_the_name_it_imitates():
    # user "/x" is stored as a hashed name; a user who calls himself by that name gets another place
    hashed = safe_name("/x")
    assert hashed != "/x" and safe_name(hashed) != hashed


@settings(max_examples=300, deadline=None)
@given(name=names)
def test_a_hashed_name_is_never_kept_as_it_is(name):
    if safe_name(name) != name:
        assert safe_name(safe_name(name)) != safe_name(name)


def _same_or_imitated(draw, name: str) -> str:
    """The name itself, its hashed form (what an imitator would pick), or any other name."""
    return draw(st.sampled_from([name, safe_name(name), draw(names)]))


@st.composite
def two_owners(draw):
    first = (draw(names), draw(names))
    return first, (_same_or_imitated(draw, first[0]), _same_or_imitated(draw, first[1]))


@settings(max_examples=300, deadline=None)
@given(owners=two_owners())
def test_distinct_owners_never_share_a_prefix_folder_or_s3_key(tmp_path_factory, owners):
    (first, second), root = owners, tmp_path_factory.getbasetemp() / "owners"
    if first == second:
        return
    stores = [S3Store("bucket", prefix=owner_prefix(*owner), client=object()) for owner in (first, second)]
    keys = [store.key_for("training-image1.jpg") for store in stores]
    assert not keys[0].startswith(stores[1].prefix) and not keys[1].startswith(stores[0].prefix)
    folders = [LocalFolderStore(root, *owner).folder for owner in (first, second)]
    runs = [job_root(root, *owner) for owner in (first, second)]
    for a, b in (folders, runs):
        assert a != b and a not in b.parents and b not in a.parents


@st.composite
def two_questions(draw):
    first = (draw(names), draw(names), draw(names))
    return first, tuple(_same_or_imitated(draw, name) for name in first)


@settings(max_examples=300, deadline=None)
@given(questions=two_questions())
def test_distinct_questions_never_share_an_image(questions):
    first, second = questions
    if first != second:
        paths = [Group(dataset, planner, "flux2-klein-4B").image_path(question, 0)
                 for dataset, planner, question in (first, second)]
        assert paths[0] != paths[1]


clean = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}", fullmatch=True)


@settings(deadline=None)
@given(dataset=clean, sample_id=clean, style=clean)
def test_clean_seed_file_names_stay_unchanged(dataset, sample_id, style):
    place = image_place(dataset, sample_id, style)
    assert place.by_style == f"images/by_style/{style}/{dataset}_{sample_id}_{style}.png"
    assert place.by_dataset == f"images/by_dataset/{dataset}/{dataset}_{sample_id}_{style}.png"


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
