"""notebooks/02_instruction_images.ipynb run headless by papermill on the tiny checkpoint and the
sample inputs in data/instructions: the job runs to the end, the gallery shows the images, the
stats are printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imggen.notebook.headless import execute_notebook


REPO = Path(__file__).parents[1]
NOTEBOOK = REPO / "notebooks" / "02_instruction_images.ipynb"


def test_the_parameters_cell_is_tagged_and_has_no_assignment_in_comments():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    (parameters,) = [cell for cell in cells if "parameters" in cell["metadata"].get("tags", [])]
    for line in "".join(parameters["source"]).splitlines():
        assert "=" not in line.partition("#")[2], line


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_notebook_runs_headless_and_shows_the_gallery_and_stats(tmp_path, klein):
    output = tmp_path / "run.ipynb"
    execute_notebook(
        str(NOTEBOOK), str(output), cwd=str(NOTEBOOK.parent), kernel_name="python3", progress_bar=False,
        parameters={
            "flux_ckpt": str(klein),
            "predicted_instructions_root": str(REPO / "data" / "instructions" / "predicted_instructions"),
            "image_root": str(REPO / "data" / "instructions"),
            "output_root": str(tmp_path / "generated_images"),
            "num_inference_steps": 2, "height": 64, "width": 64, "device": "cpu", "num_gpus": 1,
        },
    )
    cells = json.loads(output.read_text())["cells"]
    text = json.dumps([cell.get("outputs", []) for cell in cells])
    assert "[instructions] finished: 3/3 done, 0 failed" in text
    assert "(loading the model on 1 worker process\\u2026)" in text and "(1 worker process ready in " in text
    assert text.count("data:image/jpeg;base64,") == 3, "a thumbnail per image in the gallery"
    assert "number of 0 generation" in text and "number of 2 generation" in text
    stats = tmp_path / "generated_images" / "demo" / "DemoPlanner" / "flux2-klein-tiny" / "stats.json"
    assert json.loads(stats.read_text())["0 generation"] == [2]
