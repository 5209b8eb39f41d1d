"""A Ray cluster's head node, started as the README's cluster section starts one (``ray start --head``),
for the tests whose jobs join a running cluster through ``RAY_ADDRESS``, as a job on a cluster does.

The head asks for a token, as the README's cluster does: ``RAY_AUTH_MODE=token`` and the token on
every node and job. The token here is this test process's own (``RAY_AUTH_TOKEN``), so the tests
neither need nor write ``~/.ray/auth_token``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from browser_helpers import free_port, wait_for

RAY = str(Path(sys.executable).with_name("ray"))
TOKEN_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # what a job needs to join
STARTED = "Ray runtime started."
PR_SET_PDEATHSIG = 1


def _ended_with_its_parent() -> None:
    """The head gets SIGTERM when the test process that started it dies, killed or not (Linux)."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def ray_head(log: Path, *, cpus: int = 4) -> Iterator[str]:
    """A head node with ``cpus`` CPUs (enough for a killed job's actors and its rerun's at once),
    its output in ``log``; yields its address, and stops it after.

    Its files are kept in a folder of its own, not Ray's default ``/tmp/ray``, where ``ray.init()``
    without an address would find it and join it: a command or test that starts a Ray of its own
    still does. The folder is short, as the sockets in it must be."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"} | TOKEN_AUTH
    files = tempfile.mkdtemp(prefix="ray-head-", dir="/tmp")
    with log.open("w") as out:
        head = subprocess.Popen(
            [RAY, "start", "--head", "--block", f"--port={port}", f"--num-cpus={cpus}", "--num-gpus=0",
             "--include-dashboard=false", "--disable-usage-stats", f"--object-store-memory={200 * 2**20}",
             f"--temp-dir={files}"],
            env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_ended_with_its_parent)
    try:
        def started() -> bool:
            assert head.poll() is None, f"ray start ended: {log.read_text()[-2000:]}"
            return STARTED in log.read_text()

        wait_for(started, 120, f"the Ray head to start (its output: {log})")
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()  # --block stops the node's processes when it ends
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        shutil.rmtree(files, ignore_errors=True)
