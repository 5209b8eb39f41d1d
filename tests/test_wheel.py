"""An installed wheel (``pip install .``, no repository beside it) carries what ``imggen demo`` needs."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def build_wheel(target: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", str(REPO),
         "-w", str(target)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = target.glob("imggen-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_bundles_the_notebooks_and_samples(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for notebook in sorted(path.name for path in (REPO / "notebooks").glob("*.ipynb")):
        assert f"imggen/_bundled/notebooks/{notebook}" in names
    for sample in ("prompts/sample_prompts.json", "trainset/sample_source.png", "styles/styles.json",
                   "instructions/predicted_instructions/DemoPlanner/results.jsonl"):
        assert f"imggen/_bundled/data/{sample}" in names


@pytest.mark.slow
def test_demo_runs_from_an_installed_wheel_outside_the_repository(wheel, tmp_path):
    """A fresh environment with only the wheel installed (its dependencies borrowed from this one)."""
    environment = tmp_path / "env"
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    # This environment's packages, after the wheel's own files; the editable imggen is not seen (no .pth here).
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    where = subprocess.check_output([python, "-c", "import imggen; print(imggen.__file__)"], text=True, cwd=tmp_path)
    assert where.startswith(str(site))
    result = subprocess.run([python, "-m", "imggen.cli", "demo", "--output", "demo-output"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "demo-output" / "report.html").is_file()
    assert len(list((tmp_path / "demo-output" / "styles" / "images" / "by_style").rglob("*.png"))) == 40
