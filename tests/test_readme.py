"""The README's engine example runs as pasted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path):
    (example,) = [block for block in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
                  if "run_job" in block]
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "finished 10 $0.40\n"
    assert len(list((tmp_path / "my-run" / "out").iterdir())) == 10
