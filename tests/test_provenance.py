"""PNG provenance as image browsers and imggen read it: the A1111 ``parameters`` text, the JSON, no local paths."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import imggen
from image_readers import js_readers, needs_js_readers, sd_parsers_read, sd_prompt_reader_read, settings_of
from imggen.engine.tasks import Task
from imggen.pipelines.instructions.plan import made_for
from imggen.storage.provenance import jpeg_with_provenance, png_with_provenance, read_provenance


def _png(size=(24, 16), colour=(200, 30, 60), info: PngInfo | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _text(png: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        return dict(image.text)


LOCAL_MODEL = {"model": "flux2-klein-4B", "seed": 7, "steps": 4, "guidance": 1.0,
               "scheduler": "FlowMatchEulerDiscreteScheduler"}  # what the FLUX.2 backend reports


def test_parameters_text_reads_as_a1111_and_the_json_holds_everything(tmp_path):
    original = _png()
    png = png_with_provenance(original, {"prompt": "a red kite\nover the sea", **LOCAL_MODEL, "style": "watercolor"},
                              prompt="a red kite\nover the sea", model="flux2-klein-4B", settings=LOCAL_MODEL,
                              plain={"cost_usd": "0.040000"})
    text = _text(png)
    assert text["parameters"] == ("a red kite\nover the sea\nSteps: 4, Sampler: Euler, CFG scale: 1.0, Seed: 7, "
                                  f"Size: 24x16, Model: flux2-klein-4B, Version: imggen {imggen.__version__}")
    assert text["cost_usd"] == "0.040000" and text["Software"] == "imggen"
    path = tmp_path / "made.png"
    path.write_bytes(png)
    assert read_provenance(path) == {"prompt": "a red kite\nover the sea", **LOCAL_MODEL, "style": "watercolor"}
    with Image.open(io.BytesIO(original)) as before, Image.open(path) as after:
        assert before.tobytes() == after.tobytes()
    assert png.startswith(original[:33]) and png.endswith(original[33:]), "the provider's bytes are kept as they were"


def test_settings_a_model_does_not_have_are_left_out_and_the_line_is_still_read_as_settings():
    png = png_with_provenance(_png((32, 32)), {}, prompt="a cat, sitting", model="gpt-image-2",
                              settings={"quality": "low", "size": "1024x1024"})
    text = _text(png)["parameters"]
    assert text == f"a cat, sitting\nSize: 32x32, Model: gpt-image-2, Quality: low, Version: imggen {imggen.__version__}"
    assert settings_of(text) == ("a cat, sitting", {"Size": "32x32", "Model": "gpt-image-2", "Quality": "low",
                                                    "Version": f"imggen {imggen.__version__}"})
    # with two fields A1111 reads the line as part of the prompt: Version is what makes an API image's line three
    assert settings_of("a cat\nSize: 32x32, Model: gpt-image-2") == ("a cat\nSize: 32x32, Model: gpt-image-2", {})


def _chunks(png: bytes) -> dict[str, bytes]:
    """Each text chunk's keyword and its chunk type."""
    found, at = {}, 8
    while at < len(png):
        length, kind = int.from_bytes(png[at:at + 4], "big"), png[at + 4:at + 8]
        if kind in (b"tEXt", b"iTXt"):
            found[png[at + 8:at + 8 + length].split(b"\x00")[0].decode("latin-1")] = kind
        at += 12 + length
    return found


def test_text_is_written_as_a1111_writes_it_tEXt_unless_it_needs_utf8():
    assert _chunks(png_with_provenance(_png(), {"prompt": "a café"}, prompt="a café", model="m"))["parameters"] == b"tEXt"
    tokyo = png_with_provenance(_png(), {"prompt": "東京の夜"}, prompt="東京の夜", model="m")
    assert _chunks(tokyo) == {"parameters": b"iTXt", "imggen": b"iTXt", "Software": b"tEXt"}
    assert _text(tokyo)["parameters"].startswith("東京の夜\n")


@pytest.mark.parametrize("form", ["png", "jpeg"])
def test_the_readers_people_use_find_prompt_model_and_size(tmp_path, form):
    needs_js_readers()
    prompt = "a red kite, over the sea: at dusk"
    picture = Image.new("RGB", (48, 32), (200, 30, 60))
    if form == "png":
        data = png_with_provenance(picture, {}, prompt=prompt, model="flux2-klein-4B", settings=LOCAL_MODEL)
    else:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG")
        data = jpeg_with_provenance(buffer.getvalue(), {}, prompt=prompt, model="flux2-klein-4B", settings=LOCAL_MODEL)
    path = tmp_path / f"made.{form}"
    path.write_bytes(data)
    for reader, text in js_readers(path).items():
        assert text is not None, f"{reader} found no generation data in the {form}"
        read_prompt, settings = settings_of(text)
        assert (read_prompt, settings["Model"], settings["Size"], settings["Seed"]) == (prompt, "flux2-klein-4B",
                                                                                        "48x32", "7"), reader
    expected = {"prompt": prompt, "model": "flux2-klein-4B", "size": "48x32", "sampler": "Euler"}
    assert sd_prompt_reader_read(path) == expected and sd_parsers_read(path) == expected


def test_an_api_image_is_not_given_settings_it_did_not_have(tmp_path):
    path = tmp_path / "api.png"
    path.write_bytes(png_with_provenance(_png((32, 32)), {}, prompt="a cat", model="gpt-image-2",
                                         settings={"quality": "low"}))
    assert sd_parsers_read(path) is None  # it needs a sampler and steps, which the API does not report


def test_no_absolute_local_path_is_written_into_an_image(tmp_path):
    source = f"{tmp_path}/predicted_instructions/DemoPlanner/results.jsonl:3"
    png = png_with_provenance(_png(), {"source": source, "references": [str(tmp_path / "photo.jpg")],
                                       "nested": {"checkpoint": "C:\\models\\klein"}, "key": "demo/img_0.png"},
                              prompt="p", model="m")
    assert str(tmp_path).encode() not in png and b"C:\\\\models" not in png
    (tmp_path / "made.png").write_bytes(png)
    assert read_provenance(tmp_path / "made.png") == {
        "source": "results.jsonl:3", "references": ["photo.jpg"], "nested": {"checkpoint": "klein"},
        "key": "demo/img_0.png",
    }


def test_images_written_before_the_shared_writer_still_count_as_made_for_their_round(tmp_path):
    """Instruction images used to carry only PngInfo JSON under ``imggen``; a regeneration round still knows them."""
    info = PngInfo()
    info.add_text("imggen", json.dumps({"key": "d/p/m/1/img_0.png#round1"}))
    (tmp_path / "d/p/m/1").mkdir(parents=True)
    (tmp_path / "d/p/m/1/img_0.png").write_bytes(_png(info=info))
    task = Task("d/p/m/1/img_0.png#round1", {}, outputs=("d/p/m/1/img_0.png",))
    assert made_for(tmp_path, task)
    assert not made_for(tmp_path, Task("d/p/m/1/img_0.png#round2", {}, outputs=("d/p/m/1/img_0.png",)))
    assert read_provenance(tmp_path / "missing.png") == {}
