"""Wall time for a 20-image training set: the pipeline against the seed's sequential flow, same emulators, same run.

The seed's latencies (grid 30 s, judge 5 s, upscale 30 s per call) are divided by ``--k``
(default 30: grid 1 s, judge 0.17 s, upscale 1 s), and Replicate's create limit (600 a minute) is
multiplied by it, in the emulator and in the pipeline's pace (``rpm``), so that the limit weighs
on the scaled run as on a real one. Both flows use the real replicate, openai and
boto3 clients against the local Replicate and OpenAI emulators and a moto S3 server, all three served
by a child process (the providers are remote: their work does not compete with the client's event
loop for the interpreter). The seed's
flow: grid, judge, split, upscale in batches of 3 (one call after another, as the seed's ~90 s per
batch says), upload, repeated until the target. The critical path is one grid + one judge + one
upscale. Needs ``moto[server]``. Faults are on by default (``--poll-faults``: polls answering 5xx
or dropping the connection; ``--throttle``: creates throttled with 429 and a wait of 5 s / k);
``--poll-faults 0 --throttle 0`` measures a well-behaved server; ``--jitter 0.25`` varies each
prediction's latency by up to 25% either way (the critical path stays the mean latencies').

Ours runs ``--repeats`` times (each a new set; the faults differ from run to run) and its median is
reported. Prints ``RESULT ours_s=<a> seed_s=<b> critical_path_s=<c> speedup=<b/a>``; target ours_s <=
1.5 x critical_path_s (1.6 x with ``--jitter 0.25``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from imggen.backends.openai_images import OpenAIImageBackend
from imggen.backends.replicate_backend import ReplicateBackend
from imggen.backends.replicate_catalog import replicate_create_limit_per_min
from imggen.emulators.fault_plan import FaultRates
from imggen.engine.errors import TaskError
from imggen.emulators.openai_server import OpenAIEmulatorConfig, openai_emulator_in_thread
from imggen.emulators.replicate_faults import ReplicateFaults
from imggen.emulators.replicate_server import running_replicate_emulator
from imggen.emulators.replicate_state import ReplicateEmulatorConfig
from imggen.backends.replicate_predictions import ReplicatePredictions
from imggen.backends.tile_judges import GptTileJudge, judge_grid
from imggen.images.tiles import tile_png
from imggen.pipelines.trainset import DescriptionPool, TrainingDataGenerator, grid_subjects
from imggen.pipelines.trainset.prompts import build_grid_prompt
from imggen.storage.s3 import S3Store
from imggen.storage.stores import owner_prefix

SEED_GRID_S, SEED_JUDGE_S, SEED_UPSCALE_S = 30.0, 5.0, 30.0
SOURCE = Path(__file__).resolve().parents[1] / "data" / "trainset" / "sample_source.png"
BUCKET = "trainset-benchmark"
TOKEN, KEY = "r8_benchmark_token_0123456789", "sk-benchmark-key-0123456789"


def scaled_create_limit(k: float) -> float:
    """Replicate's creates per minute in a world whose times are divided by ``k``."""
    return replicate_create_limit_per_min() * k


@contextlib.contextmanager
def services(k: float, faults: ReplicateFaults | None = None, jitter: float = 0.0):
    """Emulators at the scaled latencies (each prediction's varied by +- ``jitter`` of it, with
    ``faults``) and a moto S3 server.

    Yields the environment that points at them and the Replicate emulator."""
    replicate_config = ReplicateEmulatorConfig(api_token=TOKEN, grid_latency_s=SEED_GRID_S / k,
                                               upscale_latency_s=SEED_UPSCALE_S / k, latency_jitter=jitter,
                                               grid_megapixels=0.25,
                                               create_limit_per_min=round(scaled_create_limit(k)),
                                               faults=faults or ReplicateFaults())
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with running_replicate_emulator(replicate_config) as replicate, openai_emulator_in_thread(
        OpenAIEmulatorConfig(api_key=KEY, latency_s=SEED_JUDGE_S / k)
    ) as openai_server:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                     aws_secret_access_key="y").create_bucket(Bucket=BUCKET)
        try:
            yield replicate, {
                "REPLICATE_API_TOKEN": TOKEN, "REPLICATE_BASE_URL": replicate.base_url,
                "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": openai_server.base_url,
                "AWS_ACCESS_KEY": "AKIABENCHMARK", "AWS_ACCESS_SECRET": "benchmark-secret",
                "AWS_REGION": "us-east-1", "AWS_USER_FILES_BUCKET": BUCKET, "AWS_ENDPOINT_URL": endpoint,
            }
        finally:
            moto.stop()


@contextlib.contextmanager
def provider_process(k: float, poll_faults: float, throttle: float, jitter: float = 0.0):
    """Serve the three services from a child process; point this process's environment at them.

    Yields a function that reads the Replicate emulator's counts (as a line of text) from the child."""
    child = subprocess.Popen([sys.executable, __file__, "--serve", "--k", str(k), "--poll-faults", str(poll_faults),
                              "--throttle", str(throttle), "--jitter", str(jitter)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def counts() -> str:
        child.stdin.write("counts\n")
        child.stdin.flush()
        return child.stdout.readline().strip()

    try:
        os.environ.update(json.loads(child.stdout.readline()))
        yield counts
    finally:
        child.stdin.close()  # the child serves until its stdin closes
        child.wait(timeout=30)


def bench_faults(k: float, poll_faults: float, throttle: float) -> ReplicateFaults:
    """Polls failing at ``poll_faults`` (two thirds 500/503, one third dropped connections), and creates
    throttled at ``throttle`` asking for the newer body's documented wait (``retry_after: 5``) divided by
    ``k`` like every other provider time; an HTTP date cannot say less than a second, so that form is left out."""
    rates = FaultRates(server_error=poll_faults * 2 / 3, drop=poll_faults / 3)
    return ReplicateFaults(rates, throttle_rate=throttle, throttle_s=round(5.0 / k, 3),
                           throttle_forms=("header", "body", "detail"), seed=1)


def serve(k: float, poll_faults: float, throttle: float, jitter: float) -> None:
    with services(k, bench_faults(k, poll_faults, throttle), jitter) as (replicate, environment):
        print(json.dumps(environment), flush=True)
        for _ in sys.stdin:  # each line asks for the counts so far
            counts = replicate.counts
            print(f"throttled={counts.throttled} poll_faults={sum(replicate.faults.poll_faults.values())} "
                  f"polls={counts.polls} billed={sum(counts.paid.values())}", flush=True)


async def ours(target: int, work_dir: Path, k: float) -> float:
    generator = TrainingDataGenerator(work_dir=work_dir / "ours", judge="gpt", storage="s3", rpm=scaled_create_limit(k))
    generator.target_training_images = target
    began = time.perf_counter()
    result = await generator.arun(str(SOURCE), "bench", "ours")
    elapsed = time.perf_counter() - began
    assert len(result.images) == target, result.summary
    return elapsed


async def again_on_failure(call):
    """The seed had no retries; under faults its flow repeats a failed call (a new prediction) after the server's wait."""
    while True:
        try:
            return await call()
        except TaskError as error:
            await asyncio.sleep(error.retry_after or 0.0)


async def seed_flow(target: int, work_dir: Path, batch_size: int = 3) -> float:
    """The seed's loop: one grid at a time, judged, split, upscaled in batches of 3 one by one, uploaded."""
    replicate, openai_backend = ReplicateBackend(), OpenAIImageBackend()
    judge = GptTileJudge(openai_backend)
    store = S3Store.from_settings(prefix=owner_prefix("bench", "seed"))
    pool = DescriptionPool.builtin()
    source = SOURCE.read_bytes()
    urls: list[str] = []
    grids = 0
    book = ReplicatePredictions(work_dir / "seed")  # where the judge's paid answers are booked
    began = time.perf_counter()
    try:
        while len(urls) < target:
            grids += 1
            prompt = build_grid_prompt(grid_subjects(pool, grids, 9), 3)
            grid = await again_on_failure(lambda: replicate.generate_grid(prompt, source))
            verdict = await judge_grid(judge, grid.data, 3, key="seed-grid", calls=book.answers)
            tiles = [tile_png(grid.data, 3, index) for index in verdict.tiles][: target - len(urls)]
            for start in range(0, len(tiles), batch_size):
                for tile in tiles[start:start + batch_size]:
                    upscaled = await again_on_failure(lambda: replicate.upscale(tile))
                    stored = await store.put(f"training-image{len(urls) + 1}.jpg", upscaled.data, "image/jpeg")
                    urls.append(stored.url)
    finally:
        await replicate.aclose()
        await openai_backend.aclose()
        book.close()
    return time.perf_counter() - began


async def measure(target: int, k: float, repeats: int) -> tuple[list[float], float]:
    """Our wall times (``repeats`` runs, each a new actor) and the seed flow's."""
    with tempfile.TemporaryDirectory() as folder:
        await ours(1, Path(folder) / "warm-up", k)  # one image first: both flows then run on warm imports and clients
        ours_s = [await ours(target, Path(folder) / f"run-{n}", k) for n in range(repeats)]
        seed_s = await seed_flow(target, Path(folder))
    return ours_s, seed_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=float, default=30.0, help="divide the seed's latencies by this (default: 30)")
    parser.add_argument("--target", type=int, default=20, help="training images (default: 20)")
    parser.add_argument("--poll-faults", type=float, default=0.2,
                        help="share of polls answering 5xx or dropping the connection (default: %(default)s)")
    parser.add_argument("--throttle", type=float, default=0.1,
                        help="share of creates throttled with 429, asking for 5 s / k (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="our runs, each a new set; their median is reported (default: %(default)s)")
    parser.add_argument("--jitter", type=float, default=0.0,
                        help="each prediction's latency varies by +- this share of it (default: %(default)s)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.serve:
        return serve(args.k, args.poll_faults, args.throttle, args.jitter)
    with provider_process(args.k, args.poll_faults, args.throttle, args.jitter) as counts:
        runs, seed_s = asyncio.run(measure(args.target, args.k, args.repeats))
        print(f"faults met: {counts()}")
    critical = (SEED_GRID_S + SEED_JUDGE_S + SEED_UPSCALE_S) / args.k
    ours_s = statistics.median(runs)
    print(f"ours: {ours_s:.2f} s, the median of {', '.join(f'{run:.2f}' for run in runs)} "
          f"({ours_s / critical:.2f} x the critical path); seed's flow: {seed_s:.2f} s")
    print(f"RESULT ours_s={ours_s:.2f} seed_s={seed_s:.2f} critical_path_s={critical:.2f} speedup={seed_s / ours_s:.1f}")


if __name__ == "__main__":
    main()
