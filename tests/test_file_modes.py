"""Files a run writes are readable by whoever the user's umask lets read them, like any file they create."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from imggen.storage.atomic import atomic_write_bytes, atomic_write_json


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    image = atomic_write_bytes(tmp_path / "a.png", b"x")
    state = atomic_write_json(tmp_path / "state.json", {"a": 1})
    assert (mode(image), mode(state)) == (expected, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "state.json"]  # no temporary left behind


def test_every_file_of_a_run_is_readable_by_the_group_and_others(tmp_path):
    """The engine demo writes images, the ledger, the state and stats views and run.log under a 022 umask."""
    output = tmp_path / "engine-demo"
    command = [sys.executable, "-m", "imggen.cli", "demo", "engine", "--output", str(output), "--count", "6",
               "--latency", "0.01", "--rpm", "6000"]
    subprocess.run(command, check=True, capture_output=True, timeout=120, preexec_fn=lambda: os.umask(0o022))
    files = [path for path in output.rglob("*") if path.is_file()]
    assert len([path for path in files if path.suffix == ".png"]) == 6
    private = [str(path.relative_to(output)) for path in files if mode(path) & 0o044 != 0o044]
    assert private == []
