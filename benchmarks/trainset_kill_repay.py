"""Predictions paid again per SIGKILL of ``imggen trainset``, for each create wait (``--replicate-wait``).

A create call that holds for a finished result (``Prefer: wait=N``) returns the prediction's id
only when it answers, so a kill inside the hold loses that prediction and the rerun pays for it
again; with no hold the id is recorded milliseconds after the server created the prediction. Each
round starts the real command against the local emulators (latencies of the seed divided by
``--k``), kills it at a random moment after its first create, and finally reruns it to the end;
the predictions billed beyond what the finished set needs are the repaid ones. The same run also
times a clean build for each wait, so the cost of polling instead of holding shows.

Prints ``RESULT wait=<s> repaid_per_kill=<r> clean_s=<t>`` for each wait.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainset_wall import SOURCE, services  # the same emulators and S3 server as the wall-time benchmark


def command(output: Path, wait: int) -> list[str]:
    return [sys.executable, "-m", "imggen.pipelines.trainset.cli", "--source", str(SOURCE), "--user-id", "bench",
            "--actor-id", f"wait{wait}", "--output", str(output), "--judge", "gpt", "--storage", "s3",
            "--replicate-wait", str(wait)]


def billed(replicate) -> int:
    return sum(replicate.counts.paid.values())


def measure(wait: int, kills: int, environment: dict, replicate, moments: random.Random) -> tuple[float, float]:
    """Repaid predictions per kill, and the seconds of one clean build, with this create wait."""
    env = {**os.environ, **environment}
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder)
        began, kills_made = billed(replicate), 0
        for _ in range(kills):
            before = len(replicate.predictions)
            process = subprocess.Popen(command(output / "killed", wait), env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            while len(replicate.predictions) == before and process.poll() is None:
                time.sleep(0.005)  # a run that has nothing left to create finishes instead
            time.sleep(moments.uniform(0.0, 1.5))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills_made += 1
            process.wait()
        subprocess.run(command(output / "killed", wait), env=env, check=True, capture_output=True)
        needed = len(list((output / "killed").rglob("grids/grid*.jpg"))) + 20
        repaid = billed(replicate) - began - needed
        started = time.perf_counter()
        subprocess.run(command(output / "clean", wait), env=env, check=True, capture_output=True)
        clean_s = time.perf_counter() - started
    return repaid / max(kills_made, 1), clean_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=float, default=30.0, help="divide the seed's latencies by this (default: 30)")
    parser.add_argument("--kills", type=int, default=3, help="kills per wait (default: 3)")
    parser.add_argument("--waits", type=int, nargs="+", default=[2, 0], help="create waits to compare (default: 2 0)")
    args = parser.parse_args()
    moments = random.Random(1)
    with services(args.k) as (replicate, environment):
        for wait in args.waits:
            repaid, clean_s = measure(wait, args.kills, environment, replicate, moments)
            print(f"RESULT wait={wait} repaid_per_kill={repaid:.2f} clean_s={clean_s:.2f}", flush=True)


if __name__ == "__main__":
    main()
