"""The contract, secrets: no key or token of any provider in anything a run leaves behind (images,
ledger, state and stats files, logs, captions, metadata) or prints, on every kind of run that has one."""

from __future__ import annotations

import subprocess

import pytest
from run_kinds import KINDS


pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
SECRET_VARIABLES = ("OPENAI_API_KEY", "REPLICATE_API_TOKEN", "AWS_ACCESS_SECRET", "AWS_SECRET_ACCESS_KEY")
WITH_SECRETS = ["styles-openai", "styles-batch", "trainset-replicate"]


@pytest.mark.parametrize("kind", WITH_SECRETS)
def test_no_secret_in_anything_a_run_leaves_or_prints(kind, tmp_path, klein):
    with KINDS[kind](tmp_path, klein) as run:
        secrets = {name: run.env[name] for name in SECRET_VARIABLES if run.env.get(name)}
        assert secrets, "this kind of run is given no secret"
        result = subprocess.run(run.command, env=run.env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr
        run.settle()
    written = [path for path in tmp_path.rglob("*") if path.is_file() and not path.is_symlink()]
    assert any(path.name.startswith("ledger.sqlite") for path in written)
    for name, secret in secrets.items():
        assert secret not in result.stdout + result.stderr, f"{name} was printed"
        leaked = [str(path.relative_to(tmp_path)) for path in written if secret.encode() in path.read_bytes()]
        assert not leaked, f"{name} is in {leaked}"
