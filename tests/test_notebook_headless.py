"""Kernels the project starts (papermill runs, ``imggen demo``, the widget tests) say nothing about
plain-TCP channels: they are encrypted with CurveZMQ keys, or local IPC sockets."""

from __future__ import annotations

import nbformat
import pytest
from kernel_helpers import started_kernel

from imggen.notebook.headless import execute_notebook

WARNING = "running over TCP without encryption"


@pytest.mark.slow
def test_a_papermill_run_prints_no_transport_warning(tmp_path, capfd):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(notebook, tmp_path / "tiny.ipynb")
    execute_notebook(tmp_path / "tiny.ipynb", tmp_path / "ran.ipynb", kernel_name="python3", progress_bar=False)
    ran = nbformat.read(tmp_path / "ran.ipynb", as_version=4)
    assert ran.cells[0].outputs[0]["text"] == "42\n"
    assert WARNING not in capfd.readouterr().err


@pytest.mark.slow
def test_a_kernel_started_for_the_widgets_prints_no_transport_warning(capfd):
    with started_kernel() as kernel:
        assert kernel.run("print(6 * 7)") == "42\n"
    assert WARNING not in capfd.readouterr().err
