"""notebooks/03_training_set.ipynb run headless by papermill against the emulators and a moto S3 server."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import papermill
import pytest

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO
from imggen.notebook.headless import execute_notebook
from imggen.pipelines.trainset import TrainsetChoices, TrainsetOptions
from imggen.pipelines.trainset.layout import WORK_DIR

from trainset_fixtures import BUCKET, OPENAI_KEY, REPLICATE_TOKEN, services, source_file  # noqa: F401 - fixtures

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_training_set.ipynb"


def test_the_parameters_cell_parses_cleanly_and_holds_no_key():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    names = []
    for line in cell.source.splitlines():
        assert line.count("=") == 1, f"papermill cannot infer {line!r}"
        names.append(line.split("=")[0].strip())
    assert not [name for name in names if any(word in name for word in ("key", "token", "secret"))]


def test_the_parameters_cell_starts_from_the_jobs_own_defaults():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body}
    options, choices = TrainsetOptions(), TrainsetChoices()
    assert {name: values[name] for name in ("target", "grid", "dup_threshold", "flux_size", "caption",
                                            "output")} == {
        "target": options.target, "grid": options.grid, "dup_threshold": options.dup_threshold,
        "flux_size": choices.flux_size, "caption": choices.caption, "output": str(WORK_DIR),
    }
    chosen = TrainsetChoices.chosen(local=values["local"], upscaler=values["upscaler"], judge=values["judge"],
                                    storage=values["storage"])
    assert chosen == choices  # the parameters left as they are choose what the command does with no flag


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_papermill_builds_the_set_in_s3_and_shows_grids_and_results(services, source_file, tmp_path):
    execute_notebook(
        str(NOTEBOOK), str(tmp_path / "ran.ipynb"), cwd=str(tmp_path), kernel_name="python3", progress_bar=False,
        parameters={"source": str(source_file), "user_id": "nb-user", "actor_id": "nb-actor", "target": 6,
                    "storage": "s3", "judge": "gpt", "output": str(tmp_path / "runs"), "interactive": False,
                    "trigger_word": "nbx"},
    )
    keys = [o["Key"] for o in services.s3().list_objects_v2(Bucket=BUCKET)["Contents"]]
    images = [f"nb-user/nb-actor/training-image{i}.{kind}" for i in range(1, 7) for kind in ("jpg", "txt")]
    assert sorted(keys) == sorted([*images, "nb-user/nb-actor/metadata.jsonl"])
    caption = services.s3().get_object(Bucket=BUCKET, Key="nb-user/nb-actor/training-image1.txt")["Body"].read()
    assert caption.decode().startswith("nbx, ")  # the notebook's trigger word
    saved = (tmp_path / "ran.ipynb").read_text()
    assert REPLICATE_TOKEN not in saved and OPENAI_KEY not in saved
    ran = nbformat.reads(saved, as_version=4)
    outputs = [o for cell in ran.cells for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert "[training set] finished: 6/6 done, 0 failed" in text
    assert "'total_training_images': 6" in text and "'total_grids_generated': 1" in text
    assert "cost: billed $0.04 (used $0.04, wasted $0.00)" in text  # one grid; Topaz has no confirmed price
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 1  # the grid with its chosen tiles
    gallery = "".join(o["data"].get("text/html", "") for o in outputs if "data" in o)
    assert gallery.count("<figure") == 6 and "training-image1: nbx, " in gallery  # each image and its caption


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_budget_caps_the_notebooks_run_and_fails_papermill_with_the_reason(services, source_file, tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        execute_notebook(
            str(NOTEBOOK), str(tmp_path / "ran.ipynb"), cwd=str(tmp_path), kernel_name="python3", progress_bar=False,
            parameters={"source": str(source_file), "user_id": "nb-user", "actor_id": "nb-actor", "target": 30,
                        "storage": "local", "judge": "hash", "upscaler": "lanczos", "output": str(tmp_path / "runs"),
                        "interactive": False, "budget": 0.05},  # one grid's price, where 30 images want four
        )
    assert failure.value.ename == "RunEndedEarly" and "budget reached" in failure.value.evalue
    counts = services.replicate.counts
    assert counts.paid[FLUX_KONTEXT_PRO] == 1 and counts.billed_usd() <= 0.05
    assert list((tmp_path / "runs" / "nb-user" / "nb-actor").glob("training-image*.jpg"))
