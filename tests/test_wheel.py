"""An installed wheel (``pip install .``, no repository beside it) carries what ``imggen demo`` needs, and
``imggen demo`` run from it makes all three pipelines offline, with a report, and no key in any file."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import sysconfig
import tempfile
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def build_wheel(target: Path) -> Path:
    # pip builds inside the repository's build/ folder: one build at a time among parallel test processes
    with open(Path(tempfile.gettempdir()) / "imggen-test-wheel-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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


FAKE_KEYS = {
    "OPENAI_API_KEY": "sk-demo-should-never-appear-0001",
    "REPLICATE_API_TOKEN": "r8_demo_should_never_appear_0002",
    "AWS_ACCESS_SECRET": "aws-demo-should-never-appear-0003",
}


def installed_alone(wheel: Path, folder: Path) -> Path:
    """The python of a fresh environment in ``folder`` with only the wheel installed (its dependencies
    borrowed from this one, the editable imggen not seen: no .pth of it there)."""
    environment = folder / "env"
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    where = subprocess.check_output([python, "-c", "import imggen; print(imggen.__file__)"], text=True, cwd=folder)
    assert where.startswith(str(site))
    return python


@pytest.mark.slow
def test_the_demo_from_an_installed_wheel_runs_three_pipelines_offline_and_keys_change_nothing(wheel, tmp_path):
    python = installed_alone(wheel, tmp_path)
    out = tmp_path / "demo-output"
    environment = {**os.environ, **FAKE_KEYS, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    result = subprocess.run([python, "-m", "imggen.cli", "demo", "--output", str(out)], cwd=tmp_path,
                            env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "running over TCP without encryption" not in result.stderr
    report = (out / "report.html").read_text()
    for title in ("Style matrix", "Instruction images", "Training set"):
        assert f"<h2>{title}</h2>" in report
    assert "draws noise" in report and "OPENAI_API_KEY" in report
    assert len(list((out / "styles" / "images" / "by_style").rglob("*.png"))) == 40
    assert len(list((out / "instructions").rglob("img_*.png"))) == 3
    assert report.count("<img ") >= 24 + 3 + 20  # thumbnails: 24 at most per pipeline
    assert "40 images in" in report and "(the first 24 shown)" in report  # the count says what is left out
    for dataset in ("asset", "onestop", "simpa", "wikipedia"):
        assert f"href='styles/images/sheets/{dataset}.html'" in report
        assert (out / "styles" / "images" / "sheets" / f"{dataset}.png").is_file()
    for path in out.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            data = path.read_bytes()
            for key in FAKE_KEYS.values():
                assert key.encode() not in data, f"{key} found in {path}"
