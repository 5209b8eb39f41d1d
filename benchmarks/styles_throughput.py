"""Style-matrix throughput against the local OpenAI emulator: the pipeline versus the seed's schedule.

The emulator holds a strict sliding-window limit of R images per minute and answers after L
seconds (with +- jitter). Two schedules run at the same time, each against its own emulator with
the same settings (a shared window would let one count against the other):

* ours: ``run_styles`` with ``--rpm R`` (or, with ``--follow-headers``, no ``--rpm``: the pace
  learned from the emulator's rate-limit headers) and enough requests in flight to cover the
  latency, over ``--images`` images;
* the seed's: chunks of 5 requests with ``asyncio.gather`` and a 2 s sleep after each chunk,
  over ``--seed-images`` images (its rate is steady, so a shorter sample measures it).

Sustained images/min is counted from the first finished image to the last one (the ramp-up of
one latency is not throughput). Prints the 429 responses after the first window, the wall-clock
rate, then ``RESULT ours_per_min=<x> seed_per_min=<y> limit_per_min=<R> ratio_to_limit=<x/R>
speedup=<x/y> late_429=<n>``. Target: ratio_to_limit >= 0.97 and late_429 = 0 (no 429 after the
first window). ``--images`` sets the run's length (R images take a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import tempfile
import time
from pathlib import Path

from imggen.backends.openai_images import OpenAIImageBackend
from imggen.emulators.openai_server import RunningOpenAIEmulator, start_openai_emulator
from imggen.emulators.openai_state import OpenAIEmulatorConfig
from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.events import TaskFinished
from imggen.pipelines.styles import StyleRequest, load_styles, run_styles
from imggen.storage.atomic import atomic_write_bytes

MODEL, SIZE, QUALITY = "gpt-image-2.6-sunburst", "1024x1024", "low"
SEED_CHUNK, SEED_SLEEP_S = 5, 2.0


def sustained_per_min(finish_times: list[float]) -> float:
    times = sorted(finish_times)
    if len(times) < 2 or times[-1] == times[0]:
        return 0.0
    return 60.0 * (len(times) - 1) / (times[-1] - times[0])


def write_prompts(folder: Path, images: int) -> Path:
    """A prompt set of ceil(images / 10) samples; with the ten styles, ``images`` tasks or a few more."""
    samples = math.ceil(images / len(load_styles()[0]))
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps({"dataset": "wikipedia", "sample_id": f"{i:05d}",
                                        "text": f"benchmark sample {i}"}) + "\n" for i in range(samples)))
    return path


async def ours(server: RunningOpenAIEmulator, folder: Path, images: int, rpm: float | None,
               concurrency: int) -> list[float]:
    finished: list[float] = []

    def record(event: object) -> None:
        if isinstance(event, TaskFinished) and event.status == "done":
            finished.append(time.monotonic())

    os.environ["OPENAI_BASE_URL"] = server.base_url
    request = StyleRequest(prompts=write_prompts(folder, images), output=folder / "ours", model=MODEL, size=SIZE,
                           quality=QUALITY, rpm=rpm, concurrency=concurrency)
    summary = await run_styles(request, reporters=[record], on_problem=print)
    assert summary.state == "finished", summary
    return finished


async def seed_schedule(server: RunningOpenAIEmulator, folder: Path, images: int) -> list[float]:
    """The seed's loop: five at a time with gather, a 2 s pause after each chunk, up to 3 tries per image."""
    finished: list[float] = []
    backend = OpenAIImageBackend(base_url=server.base_url)

    async def generate_and_save(index: int) -> None:
        for _ in range(3):
            try:
                image = await backend.generate(f"seed schedule image {index}", model=MODEL, size=SIZE, quality=QUALITY)
            except TaskError as error:
                if error.kind is ErrorKind.RATE_LIMITED:
                    await asyncio.sleep(error.retry_after or 10)
                    continue
                raise
            atomic_write_bytes(folder / "seed" / f"image_{index:05d}.png", image.data)
            finished.append(time.monotonic())
            return

    try:
        for start in range(0, images, SEED_CHUNK):
            await asyncio.gather(*(generate_and_save(i) for i in range(start, min(start + SEED_CHUNK, images))))
            await asyncio.sleep(SEED_SLEEP_S)
    finally:
        await backend.aclose()
    return finished


async def measure(args: argparse.Namespace) -> None:
    config = OpenAIEmulatorConfig(images_per_minute=args.rpm, window_s=60.0, latency_s=args.latency,
                                  jitter_s=args.jitter, render_max_side=16, seed=1)
    concurrency = args.concurrency or math.ceil(args.rpm / 60 * (args.latency + args.jitter) * 1.5) + 2
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-local")
    our_server, seed_server = await start_openai_emulator(config), await start_openai_emulator(config)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            began = time.monotonic()
            our_times, seed_times = await asyncio.gather(
                ours(our_server, Path(tmp), args.images, None if args.follow_headers else args.rpm, concurrency),
                seed_schedule(seed_server, Path(tmp), args.seed_images),
            )
            wall = time.monotonic() - began
    finally:
        await our_server.stop()
        await seed_server.stop()
    first_request = min(r.time for r in our_server.requests)
    late_429 = sum(1 for r in our_server.requests if r.status == 429 and r.time > first_request + config.window_s)
    all_429 = sum(1 for r in our_server.requests if r.status == 429)
    ours_rate, seed_rate = sustained_per_min(our_times), sustained_per_min(seed_times)
    print(f"ours: {len(our_times)} images, concurrency {concurrency}, 429s {all_429} ({late_429} after the first "
          f"window), wall-clock {60 * len(our_times) / (max(our_times) - began):.1f}/min; "
          f"seed: {len(seed_times)} images; {wall:.1f}s in all")
    print(f"RESULT ours_per_min={ours_rate:.1f} seed_per_min={seed_rate:.1f} limit_per_min={args.rpm} "
          f"ratio_to_limit={ours_rate / args.rpm:.3f} speedup={ours_rate / seed_rate if seed_rate else float('inf'):.2f} late_429={late_429}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="images our pipeline draws (default: %(default)s)")
    parser.add_argument("--seed-images", type=int, default=100, help="images the seed's schedule draws (default: %(default)s)")
    parser.add_argument("--rpm", type=int, default=600, help="the emulator's images per minute, R (default: %(default)s)")
    parser.add_argument("--latency", type=float, default=2.0, help="seconds per image, L (default: %(default)s)")
    parser.add_argument("--jitter", type=float, default=0.5, help="latency varies by +- this (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, help="our requests in flight (default: enough for R x (L + jitter))")
    parser.add_argument("--follow-headers", action="store_true", help="run ours without --rpm, paced by the headers")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
