"""Style-matrix throughput with the CLI's defaults against the local OpenAI emulator, beside a tuned run and the seed's.

Every run has its own emulator (a shared window would let one count against another) holding a
strict sliding window of R images per minute (default 173, not a round number) that it advertises
in its rate-limit headers. Time is scaled down by ``--scale`` (the window is 60/scale seconds,
latencies are divided by it), so the runs stay short; the ratios do not change with the scale.
The runs follow one another (sharing one event loop would make them slow each other down), the
seed's beside the tuned one:

* default: ``run_styles`` with the request's defaults (no ``--rpm``, ``--concurrency auto``) at each
  of ``--latencies`` (default 1, 4 and 20 s, +- 25% jitter);
* tuned: ``--rpm R`` with enough requests in flight for R x (latency + jitter), at the middle latency;
* the seed's: chunks of 5 requests with ``asyncio.gather`` and a 2 s (scaled) sleep after each chunk,
  at the middle latency, over ``--seed-images`` images (its rate is steady, so a short sample measures it);
* each other way a server may count its limit (``--window-kinds``: a strict sliding window whose
  reset says when the next slot frees, fixed windows, a token bucket; the default runs use a strict
  sliding window whose reset is when it is full again): the defaults at each latency;
* token-bound: the defaults at quality high against an emulator that also limits tokens per minute
  (``--tpm``, default 250,000: at 4,160 tokens an image that is about 60 images a minute, far under R),
  at the middle latency; its ratio is to the tokens ceiling, ``tpm / tokens per image``.

A run lasts ``--windows`` windows or ``--latency-multiple`` latencies, whichever is longer. Sustained
images/min is counted from one latency after the first finished image to the last one and given as a
share of R: until the first answer nothing is known, so 4 requests are in flight; the pipe fills in the
latency after it. That ramp is not throughput; each run's line also prints the rate from the first
finished image, ramp included. late_429 counts 429s after each run's first window in
the default, tuned and token-bound runs. Last line: ``RESULT default_ratio_min=<min over the latencies>
tuned_ratio=<x> seed_ratio=<y> kinds_ratio_min=<k> token_ratio=<z> late_429=<n>``. Target:
default_ratio_min >= 0.95, kinds_ratio_min >= 0.95, token_ratio >= 0.95 and late_429 = 0.
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
from imggen.backends.openai_models import get_model
from imggen.emulators.openai_images_route import request_tokens
from imggen.emulators.openai_server import RunningOpenAIEmulator, start_openai_emulator
from imggen.emulators.openai_state import OpenAIEmulatorConfig
from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.events import TaskFinished
from imggen.pipelines.styles import StyleRequest, load_styles, run_styles
from imggen.storage.atomic import atomic_write_bytes

MODEL, SIZE, QUALITY = "gpt-image-2.6-sunburst", "1024x1024", "low"
SEED_CHUNK, SEED_SLEEP_S = 5, 2.0
JITTER_SHARE = 0.25


def sustained_per_min(finish_times: list[float], minute_s: float, ramp_s: float = 0.0) -> float:
    """Finished images per (scaled) minute, from ``ramp_s`` after the first one to the last."""
    times = sorted(finish_times)
    times = [t for t in times if t >= times[0] + ramp_s] if times else times
    if len(times) < 2 or times[-1] == times[0]:
        return 0.0
    return minute_s * (len(times) - 1) / (times[-1] - times[0])


def write_prompts(folder: Path, images: int) -> Path:
    """A prompt set of ceil(images / 10) samples; with the ten styles, ``images`` tasks or a few more."""
    samples = math.ceil(images / len(load_styles()[0]))
    path = folder / "prompts.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"dataset": "wikipedia", "sample_id": f"{i:05d}",
                                        "text": f"benchmark sample {i}"}) + "\n" for i in range(samples)))
    return path


async def styles_run(server: RunningOpenAIEmulator, folder: Path, images: int, window_s: float,
                     **tuning: object) -> list[float]:
    """``run_styles`` over ``images`` images; the times they finished. ``tuning``: rpm, concurrency."""
    finished: list[float] = []

    def record(event: object) -> None:
        if isinstance(event, TaskFinished) and event.status == "done":
            finished.append(time.monotonic())

    request = StyleRequest(**{"prompts": write_prompts(folder, images), "output": folder / "out", "model": MODEL,
                              "size": SIZE, "quality": QUALITY, "limit_window_s": window_s, **tuning})
    os.environ["OPENAI_BASE_URL"] = server.base_url  # read when the run opens its backend, before any await
    summary = (await run_styles(request, reporters=[record], on_problem=print)).summary
    assert summary.state == "finished", summary
    return finished


async def seed_schedule(server: RunningOpenAIEmulator, folder: Path, images: int, sleep_s: float) -> list[float]:
    """The seed's loop: five at a time with gather, a pause after each chunk, up to 3 tries per image."""
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
            atomic_write_bytes(folder / f"image_{index:05d}.png", image.data)
            finished.append(time.monotonic())
            return

    try:
        for start in range(0, images, SEED_CHUNK):
            await asyncio.gather(*(generate_and_save(i) for i in range(start, min(start + SEED_CHUNK, images))))
            await asyncio.sleep(sleep_s)
    finally:
        await backend.aclose()
    return finished


def late_429s(server: RunningOpenAIEmulator, window_s: float) -> int:
    first = min(r.time for r in server.requests)
    return sum(1 for r in server.requests if r.status == 429 and r.time > first + window_s)


async def measure(args: argparse.Namespace) -> None:
    window_s = 60.0 / args.scale
    latencies = [float(text) / args.scale for text in args.latencies.split(",")]
    middle = sorted(latencies)[len(latencies) // 2]
    per_s = args.rpm / window_s

    def emulator(latency: float, **limits: object):
        return start_openai_emulator(OpenAIEmulatorConfig(
            images_per_minute=args.rpm, window_s=window_s, latency_s=latency, jitter_s=JITTER_SHARE * latency,
            render_max_side=16, seed=1, **limits))

    def images_for(latency: float) -> int:
        return math.ceil(per_s * max(args.windows * window_s, args.latency_multiple * latency))

    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-local")
    default_servers = [await emulator(latency) for latency in latencies]
    tuned_server, seed_server = await emulator(middle), await emulator(middle)
    token_server = await emulator(middle, tokens_per_minute=args.tpm)
    kinds = args.window_kinds.split(",") if args.window_kinds else []
    kind_servers = {(kind, latency): await emulator(latency, window_kind=kind) for kind in kinds for latency in latencies}
    # what a benchmark image will count (its prompt's tokens included), to size the token-bound run
    each = request_tokens({"prompt": "x" * 200, "size": SIZE, "quality": "high"}, get_model(MODEL))
    token_ceiling = args.tpm / each
    tuned_concurrency = math.ceil(per_s * middle * (1 + JITTER_SHARE) * 1.5) + 2
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            default_times = [await styles_run(server, root / f"default{i}", images_for(latency), window_s)
                             for i, (server, latency) in enumerate(zip(default_servers, latencies))]
            tuned_times, seed_times = await asyncio.gather(
                styles_run(tuned_server, root / "tuned", images_for(middle), window_s, rpm=args.rpm * args.scale,
                           concurrency=tuned_concurrency),
                seed_schedule(seed_server, root / "seed", args.seed_images, SEED_SLEEP_S / args.scale))
            kind_times = {(kind, latency): await styles_run(server, root / f"kind-{kind}-{latency:g}",
                                                            images_for(latency), window_s)
                          for (kind, latency), server in kind_servers.items()}
            token_times = await styles_run(token_server, root / "tokens", math.ceil(
                token_ceiling / window_s * max(args.windows * window_s, args.latency_multiple * middle)), window_s,
                quality="high")
    finally:
        for server in (*default_servers, tuned_server, seed_server, token_server, *kind_servers.values()):
            await server.stop()
    wall = time.monotonic() - began
    ratio = [sustained_per_min(times, window_s, latency) / args.rpm
             for times, latency in zip(default_times, latencies)]
    late = sum(late_429s(server, window_s)
               for server in (*default_servers, tuned_server, token_server, *kind_servers.values()))
    kind_ratios = []
    for (kind, latency), server in kind_servers.items():
        kind_ratios.append(sustained_per_min(kind_times[kind, latency], window_s, latency) / args.rpm)
        print(f"{kind} window at {latency * args.scale:g} s: ratio {kind_ratios[-1]:.3f}, "
              f"429s {sum(r.status == 429 for r in server.requests)} ({late_429s(server, window_s)} late)")
    counted = [r.usage["total_tokens"] for r in token_server.requests if r.status == 200 and r.usage]
    each = sum(counted) / len(counted)  # what its images counted, as the server billed them
    token_ceiling = args.tpm / each
    token_ratio = sustained_per_min(token_times, window_s, middle) / token_ceiling
    for latency, times, share, server in zip(latencies, default_times, ratio, default_servers):
        with_ramp = sustained_per_min(times, window_s) / args.rpm
        print(f"default at {latency * args.scale:g} s (scaled {latency:.3g} s): {len(times)} images, ratio {share:.3f} "
              f"({with_ramp:.3f} with the ramp), "
              f"429s {sum(r.status == 429 for r in server.requests)} ({late_429s(server, window_s)} late)")
    tuned, seed = (sustained_per_min(times, window_s, middle) / args.rpm for times in (tuned_times, seed_times))
    print(f"tuned (--rpm, --concurrency {tuned_concurrency}): {len(tuned_times)} images; seed: {len(seed_times)} "
          f"images; window {window_s:g} s, {wall:.1f} s in all")
    print(f"token-bound ({args.tpm} tokens/min, {each:.0f} an image: {token_ceiling:.1f} images/min): {len(token_times)} "
          f"images, ratio {token_ratio:.3f}, 429s {sum(r.status == 429 for r in token_server.requests)} "
          f"({late_429s(token_server, window_s)} late)")
    kinds_min = f" kinds_ratio_min={min(kind_ratios):.3f}" if kind_ratios else ""
    print(f"RESULT default_ratio_min={min(ratio):.3f} tuned_ratio={tuned:.3f} seed_ratio={seed:.3f}{kinds_min} "
          f"token_ratio={token_ratio:.3f} late_429={late}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--rpm", type=int, default=173, help="the emulators' images per minute, R (default: %(default)s)")
    add("--latencies", default="1,4,20", help="seconds per image, unscaled, comma-separated (default: %(default)s)")
    add("--scale", type=float, default=10.0, help="time runs this many times faster (default: %(default)s)")
    add("--windows", type=float, default=3.0, help="each run lasts at least this many windows (default: %(default)s)")
    add("--latency-multiple", type=float, default=25.0,
        help="...and at least this many latencies (default: %(default)s)")
    add("--seed-images", type=int, default=40, help="images the seed's schedule draws (default: %(default)s)")
    add("--tpm", type=int, default=250_000, help="the token-bound run's tokens per minute (default: %(default)s)")
    add("--window-kinds", default="sliding_next,fixed,bucket",
        help="other ways the server counts its limit, each run at every latency; empty for none "
        "(default: %(default)s)")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
