"""The notebooks use only the names the packages export, and take each run's result from the job."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
PUBLIC_MODULES = {"imggen.notebook", "imggen.pipelines.styles", "imggen.pipelines.instructions",
                  "imggen.pipelines.trainset"}


def code_of(notebook: Path) -> str:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_a_notebook_imports_only_exported_names(notebook):
    tree = ast.parse(code_of(notebook).replace("await ", ""))
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module.startswith("imggen")]
    assert imports
    for node in imports:
        assert node.module in PUBLIC_MODULES, f"{notebook.name} imports from {node.module}"
        exported = importlib.import_module(node.module).__all__
        assert {alias.name for alias in node.names} <= set(exported), f"{notebook.name}: {node.module}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_a_notebook_reads_the_result_from_the_job_not_from_a_side_channel(notebook):
    code = code_of(notebook)
    assert ".append(" not in code and "finished[" not in code
