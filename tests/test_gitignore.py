"""What the README's commands write inside a clone is ignored by git, so a tour leaves ``git status`` clean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Output folders and files named by the README: --output X, -p output X, tiny-checkpoint X, --to hf X,
# debug_dir="X", ...
_WRITTEN = re.compile(
    r"(?:--output(?:_root)?|-p output(?:_root)?|tiny-checkpoint|--to \w+) +(?P<flag>[A-Za-z0-9_.-][A-Za-z0-9_./-]*)"
    r"|debug_dir=\"(?P<debug>[^\"]+)\"|Path\(\"(?P<path>[^\"]+)\"\)|\b(?P<notebook>out\.ipynb)\b"
)


def readme_outputs() -> set[str]:
    found = set()
    for match in _WRITTEN.finditer((REPO / "README.md").read_text(encoding="utf-8")):
        path = next(value for value in match.groupdict().values() if value)
        if not path.startswith("/"):
            found.add(path.split("/")[0] + ("/" if "/" in path or not path.endswith(".ipynb") else ""))
    return found


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="needs git and a git checkout of the repository")
def test_every_output_the_readme_writes_is_ignored():
    outputs = readme_outputs()
    assert {"style-out/", "ckpt/", "out.ipynb", "demo-output/", "local-hf/"} <= outputs  # the pattern still reads the README
    tracked = [path for path in outputs if not subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", path], cwd=REPO).returncode == 0]
    assert tracked == []
