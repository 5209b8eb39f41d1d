"""notebooks/01_style_matrix.ipynb against the local OpenAI emulator: headless under papermill, and
interactive in a real kernel with Pause / Resume clicked through the widget comm protocol."""

from __future__ import annotations

import json
import re
import time

import nbformat
import papermill
import pytest

from imggen.notebook.headless import execute_notebook
from kernel_helpers import started_kernel, wait_until
from styles_fixtures import API_KEY, REPO, SAMPLE_PROMPTS, by_style_images, emulator, generations

NOTEBOOK = REPO / "notebooks" / "01_style_matrix.ipynb"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_the_parameters_cell_parses_cleanly():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    for line in cell.source.splitlines():
        assert line.count("=") == 1, f"papermill cannot infer {line!r}"
    assert "key" not in cell.source.lower()


def test_papermill_runs_it_headless_to_the_end_and_keeps_the_key_out(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with emulator(monkeypatch, latency_s=0.02) as server:
        execute_notebook(
            str(NOTEBOOK), str(tmp_path / "ran.ipynb"), cwd=str(tmp_path), kernel_name="python3", progress_bar=False,
            parameters={"prompts": str(SAMPLE_PROMPTS), "output": str(out), "max_samples": 1,
                        "styles": ["cartoon", "anime"], "size": "1024x1024", "quality": "low"},
        )
        assert len(generations(server)) == 8
    assert len(by_style_images(out)) == 8
    saved = (tmp_path / "ran.ipynb").read_text()
    assert API_KEY not in saved
    ran = nbformat.reads(saved, as_version=4)
    outputs = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") + o.get("data", {}).get("text/html", "")
                      for cell in ran.cells for o in cell.get("outputs", []))
    assert "8 images: 4 samples" in outputs
    assert "[styles] finished: 8/8 done, 0 failed" in outputs
    assert re.search(r"successful downloads +8\b", outputs), "the stats table"
    assert outputs.count("<img ") == 8, "the gallery of the latest images"
    datasets = {path.name.split("_")[0] for path in by_style_images(out)}
    for dataset in datasets:
        for suffix in (".html", ".png"):
            sheet = out / "images" / "sheets" / f"{dataset}{suffix}"
            assert sheet.is_file() and f"sheet: {sheet}" in outputs


def test_papermill_runs_it_in_batch_mode(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with emulator(monkeypatch) as server:
        execute_notebook(
            str(NOTEBOOK), str(tmp_path / "ran.ipynb"), cwd=str(tmp_path), kernel_name="python3", progress_bar=False,
            parameters={"prompts": str(SAMPLE_PROMPTS), "output": str(out), "max_samples": 1, "mode": "batch",
                        "poll_seconds": 0.1, "styles": ["cartoon", "anime"], "size": "1024x1024", "quality": "low"},
        )
        assert not generations(server) and len(server.batches.batches) == 1
        assert sum(server.batches.billed.values()) == 8
    assert len(by_style_images(out)) == 8
    outputs = "".join(o.get("text", "") for cell in nbformat.read(tmp_path / "ran.ipynb", as_version=4).cells
                      for o in cell.get("outputs", []))
    assert "batch price: at most $" in outputs and "[styles] finished: 8/8 done, 0 failed" in outputs


def notebook_code(**parameters) -> list[str]:
    """The notebook's code cells with ``parameters`` set after the parameters cell, as papermill does."""
    cells = []
    for cell in nbformat.read(NOTEBOOK, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        cells.append(cell.source)
        if "parameters" in cell.metadata.get("tags", []):
            cells.append("\n".join(f"{name} = {value!r}" for name, value in parameters.items()))
    return cells


@pytest.mark.parametrize("route", ["main", "subshell"])
def test_pause_stops_requests_and_resume_completes_the_run(tmp_path, monkeypatch, route):
    out = tmp_path / "out"
    with emulator(monkeypatch, latency_s=0.15) as server, started_kernel(cwd=str(tmp_path)) as kernel:
        cells = notebook_code(prompts=str(SAMPLE_PROMPTS), output=str(out), max_samples=1, concurrency=2,
                              size="1024x1024", quality="low", interactive=True)
        *setup, run_cell, stats_cell = cells
        for code in setup:
            kernel.run(code)
        kernel.run(run_cell)
        # 40 requests of 0.15 s, two at a time, take three seconds: a cell that waited for the run
        # (however fast or slow the machine) would leave nothing still running
        printed = kernel.run(stats_cell)  # Run All reaches the last cell at once: it shows the results later
        assert kernel.value("job.summary is None"), "the interactive cell must return while the run goes on"
        assert "finished" not in printed and "still running" not in printed
        if route == "subshell":
            kernel.open_subshell()
        wait_until(kernel, "job.progress is not None and job.progress.done >= 4")

        kernel.click("pause")
        wait_until(kernel, "job.state == 'paused' and job.progress.running == 0")
        paused_at = len(server.requests)
        time.sleep(1.0)
        assert len(server.requests) == paused_at, "a request was sent while paused"
        assert kernel.value("job.status.value") == "paused"
        assert paused_at < 40

        kernel.click("resume")
        wait_until(kernel, "job.state == 'finished' and bool(job.results_output.outputs)", timeout=30)
        assert kernel.value("job.summary.progress.done") == 40
        assert len(generations(server)) == 40
        shown = kernel.value("[o.get('text') or o['data'].get('text/plain', '') for o in job.results_output.outputs]")
        assert shown[0].startswith("finished") and re.search(r"successful downloads +40\b", "\n".join(shown))
        assert re.search(r"successful downloads +40\b", kernel.run(stats_cell))  # run again: shown in the cell
    assert len(by_style_images(out)) == 40
    assert json.loads((out / "code/generation_state.json").read_text())["failed_samples"] == []


@pytest.mark.parametrize("folder", ["repository root", "notebooks"])
def test_the_readme_papermill_line_runs_from_the_root_and_from_notebooks(tmp_path, monkeypatch, capfd, folder):
    """The default prompt set resolves from both folders, and a comma-separated -p styles is two styles."""
    out = tmp_path / "out"
    cwd = REPO if folder == "repository root" else REPO / "notebooks"
    with emulator(monkeypatch, latency_s=0.01) as server:
        execute_notebook(
            str(NOTEBOOK), str(tmp_path / "ran.ipynb"), cwd=str(cwd), kernel_name="python3", progress_bar=False,
            parameters={"output": str(out), "max_samples": 1, "styles": "cartoon,anime", "size": "1024x1024",
                        "quality": "low"},
        )
        assert len(generations(server)) == 8
    assert {path.parent.name for path in by_style_images(out)} == {"cartoon", "anime"}
    assert "[styles] finished: 8/8 done" in capfd.readouterr().err, "progress reaches the terminal papermill runs in"


def test_a_budget_stop_fails_the_papermill_run_with_the_reason(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with emulator(monkeypatch, latency_s=0.01) as server:
        with pytest.raises(papermill.PapermillExecutionError) as failure:
            execute_notebook(
                str(NOTEBOOK), str(tmp_path / "ran.ipynb"), cwd=str(tmp_path), kernel_name="python3",
                progress_bar=False,
                parameters={"prompts": str(SAMPLE_PROMPTS), "output": str(out), "max_samples": 1,
                            "styles": ["cartoon", "anime"], "size": "1024x1024", "quality": "low", "budget": 0.03},
            )
        drawn = len(generations(server))
    assert failure.value.ename == "RunEndedEarly"
    assert "budget" in failure.value.evalue
    assert 0 < drawn < 8 and len(by_style_images(out)) == drawn
