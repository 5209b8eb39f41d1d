"""PNG provenance as image browsers and imggen read it: the A1111 ``parameters`` text, the JSON, no local paths."""

from __future__ import annotations

import io
import json

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from imggen.engine.tasks import Task
from imggen.pipelines.instructions.plan import made_for
from imggen.storage.provenance import png_with_provenance, read_provenance


def _png(size=(24, 16), colour=(200, 30, 60), info: PngInfo | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _text(png: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        return dict(image.text)


def test_parameters_text_reads_as_a1111_and_the_json_holds_everything(tmp_path):
    original = _png()
    png = png_with_provenance(original, {"prompt": "a red kite\nover the sea", "model": "flux2-klein-4B", "seed": 7,
                                         "steps": 4, "style": "watercolor"},
                              prompt="a red kite\nover the sea", model="flux2-klein-4B", seed=7, steps=4,
                              plain={"cost_usd": "0.040000"})
    text = _text(png)
    assert text["parameters"] == "a red kite\nover the sea\nSteps: 4, Seed: 7, Size: 24x16, Model: flux2-klein-4B"
    assert text["cost_usd"] == "0.040000" and text["Software"] == "imggen"
    path = tmp_path / "made.png"
    path.write_bytes(png)
    assert read_provenance(path) == {"prompt": "a red kite\nover the sea", "model": "flux2-klein-4B", "seed": 7,
                                     "steps": 4, "style": "watercolor"}
    with Image.open(io.BytesIO(original)) as before, Image.open(path) as after:
        assert before.tobytes() == after.tobytes()
    assert png.startswith(original[:33]) and png.endswith(original[33:]), "the provider's bytes are kept as they were"


def test_settings_a_model_does_not_have_are_left_out_of_the_line():
    png = png_with_provenance(_png((32, 32)), {}, prompt="a cat", model="gpt-image-2")
    assert _text(png)["parameters"] == "a cat\nSize: 32x32, Model: gpt-image-2"


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
