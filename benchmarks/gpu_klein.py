"""FLUX.2 klein at GPU speed: images/s of ``imggen instructions`` against a bare diffusers loop.

On a CUDA device: a checkpoint with klein 4B's real layout and size and random weights (speed does
not depend on the weights), built on the GPU in bfloat16 by the project's checkpoint builder, so
nothing is downloaded; 1024x1024, 4 steps, one reference image per question. For each batch size
(1, 2, 4) and compile off/on, on the same inputs and seeds:

* bare: ``Flux2KleinPipeline`` called directly in this process on the same batches (the
  instructions of one question share its conditioning image), each PNG saved after its call;
* ours: ``run_instructions`` (what ``imggen instructions`` runs): the engine and its ledger, one
  worker process on the GPU, the FLUX.2 backend with its prompt-embedding cache.

Throughput is the steady state of each: the images after the first two batches over the time from
the second batch's end to the last's (loading, compiling and the first calls, which settle a compiled
model's shapes, are one-time costs, printed apart). ``overhead_share`` is ours' time outside pipeline calls over that window (at least 0: the
worker starts its next call while the parent is still marking the last batch done, which can make
the calls' sum a little longer than the window). Peak memory is
the GPU's used memory, sampled every 10 ms, above what was in use before the run.

Without a CUDA device it says so first, then runs the tiny checkpoint at 64x64, 6 images in batches
of 2, compile off (a CPU compile takes about 25 s; ``--compile off,on`` adds it): a check of the
code in well under a minute, whose figures say nothing about a GPU. A full GPU run is estimated at about 10 minutes (most of it loading and compiling);
``--batch_sizes 4 --compile on`` is the quick check.

The last line is ``RESULT device=<name> ours_img_s=<x> bare_img_s=<y> ratio=<x/y>
overhead_share=<z> peak_mem_gb=<m>`` for the fastest configuration of each; the target is
ratio >= 1.0 and overhead_share <= 0.03.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import diffusers
import numpy as np
import torch
import transformers
from PIL import Image

from imggen.backends.tiny_flux2 import build_tiny_checkpoint
from imggen.engine.ledger import Ledger
from imggen.pipelines.instructions import InstructionsOptions, run_instructions
from imggen.pipelines.instructions.plan import build_plan

PLANNER, PER_QUESTION = "BenchPlanner", 4
STARTUP_BATCHES = 2  # not timed: the first call compiles, the second may settle dynamic shapes
# klein 4B: the transformer's published config, Qwen3-4B as the text encoder, the FLUX.2 VAE.
KLEIN_4B = {
    "transformer": dict(patch_size=1, in_channels=128, num_layers=5, num_single_layers=20, attention_head_dim=128,
                        num_attention_heads=24, joint_attention_dim=7680, timestep_guidance_channels=256,
                        mlp_ratio=3.0, axes_dims_rope=(32, 32, 32, 32), rope_theta=2000, guidance_embeds=False),
    "text_encoder": dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                         rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
    "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=32,
                norm_num_groups=32, sample_size=1024),
}


@dataclass
class Figures:
    name: str
    img_s: float
    overhead_share: float
    first_s: float  # the one-time cost: start (and compile) up to the end of the untimed batches
    peak_mem_gb: float


class MemorySampler:
    """The GPU's used memory, sampled on a thread, above what was used when it started."""

    def __init__(self) -> None:
        self.cuda = torch.cuda.is_available()
        self.peak = self.base = self._used()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _used(self) -> int:
        if not self.cuda:
            return 0
        free, total = torch.cuda.mem_get_info(0)
        return total - free

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._used())

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gb(self) -> float:
        return (self.peak - self.base) / 2**30


def write_inputs(root: Path, images: int, reference_size: int) -> None:
    """Questions of PER_QUESTION distinct instructions, each with its own conditioning image."""
    results = root / "predicted_instructions" / PLANNER / "results.jsonl"
    results.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(results, "w") as lines:
        for question in range(-(-images // PER_QUESTION)):
            reference = root / "datasets" / "bench" / f"q{question}.png"
            reference.parent.mkdir(parents=True, exist_ok=True)
            noise = rng.integers(0, 256, (reference_size, reference_size, 3), dtype=np.uint8)
            Image.fromarray(noise).save(reference)
            count = min(PER_QUESTION, images - question * PER_QUESTION)
            lines.write(json.dumps({
                "id": question, "dataset": "bench", "image_paths": [f"datasets/bench/q{question}.png"],
                "instructions": [f"move item {k} of scene {question} to the left" for k in range(count)],
            }) + "\n")


def batches(root: Path, model: str, size: int, batch_size: int) -> list[list[dict]]:
    """The plan's tasks in the pool's batches: consecutive tasks sharing references, up to batch_size."""
    tasks = build_plan(predicted_root=root / "predicted_instructions", planning_models=[PLANNER],
                       output_root=root / "bare", image_root=root, generation_model=model,
                       height=size, width=size).tasks()
    grouped = itertools.groupby((task.payload for task in tasks), key=lambda payload: payload["references"])
    chunks = []
    for _, group in grouped:
        group = list(group)
        chunks += [group[start:start + batch_size] for start in range(0, len(group), batch_size)]
    return chunks


def bare_loop(pipeline, root: Path, model: str, size: int, steps: int, batch_size: int, compile: bool) -> Figures:
    """The diffusers loop a user would write: open the references, call the pipeline, save the PNGs."""
    ends, pipeline_s = [], []
    with MemorySampler() as memory:
        started = time.perf_counter()
        for batch in batches(root, model, size, batch_size):
            references = [Image.open(path).convert("RGB") for path in batch[0]["references"]]
            call_started = time.perf_counter()
            with torch.inference_mode():
                images = pipeline(image=references, prompt=[p["prompt"] for p in batch], height=size, width=size,
                                  num_inference_steps=steps, guidance_scale=1.0,
                                  generator=[torch.Generator("cpu").manual_seed(p["seed"]) for p in batch]).images
            pipeline_s.append(time.perf_counter() - call_started)
            for payload, image in zip(batch, images):
                Path(payload["path"]).parent.mkdir(parents=True, exist_ok=True)
                image.save(payload["path"])
            ends.append(time.perf_counter())
    skip = STARTUP_BATCHES
    window = ends[-1] - ends[skip - 1]
    return Figures(f"bare batch {batch_size}, compile {'on' if compile else 'off'}",
                   (len(ends) - skip) * batch_size / window, max(0.0, 1 - sum(pipeline_s[skip:]) / window),
                   ends[skip - 1] - started, memory.peak_gb)


def ours(root: Path, checkpoint: Path, size: int, steps: int, batch_size: int, compile: bool) -> Figures:
    """``imggen instructions`` on the same inputs: one worker on this machine's first device."""
    output = root / f"ours-b{batch_size}-{'compiled' if compile else 'eager'}"
    options = InstructionsOptions(
        planning_model=PLANNER, flux_ckpt=checkpoint, predicted_instructions_root=root / "predicted_instructions",
        output_root=output, image_root=root, height=size, width=size, num_inference_steps=steps,
        device="cuda" if torch.cuda.is_available() else "cpu", num_gpus=1, batch_size=batch_size, compile=compile,
    )
    with MemorySampler() as memory:
        started_at = time.time()
        result = asyncio.run(run_instructions(options))
    assert result.summary.ok, result.summary
    with Ledger(output) as ledger:
        records = sorted((ledger.task(key) for key in ledger.keys("done")), key=lambda record: record["finished_at"])
    untimed = STARTUP_BATCHES * batch_size  # batches finish in order, all images of one together
    steady, last_untimed = records[untimed:], records[untimed - 1]
    window = records[-1]["finished_at"] - last_untimed["finished_at"]
    compile_s = records[0]["provenance"].get("compile_s")
    name = f"ours batch {batch_size}, compile " + (f"on (worker warm-up {compile_s:.1f} s)" if compile else "off")
    busy = sum(record["provenance"]["pipeline_s"] for record in steady)
    return Figures(name, len(steady) / window, max(0.0, 1 - busy / window),
                   last_untimed["finished_at"] - started_at, memory.peak_gb)


def load_pipeline(checkpoint: Path, device: str, dtype, compile: bool):
    from diffusers import Flux2KleinPipeline

    pipeline = Flux2KleinPipeline.from_pretrained(str(checkpoint), torch_dtype=dtype, local_files_only=True).to(device)
    pipeline.set_progress_bar_config(disable=True)
    if compile:
        pipeline.transformer.compile_repeated_blocks()  # regional compilation, as diffusers recommends
    return pipeline


def same_pixels(root: Path, batch_size: int, compile: bool) -> int:
    """The largest pixel difference between the bare loop's images and ours (the same inputs)."""
    ours_root = root / f"ours-b{batch_size}-{'compiled' if compile else 'eager'}"
    worst = 0
    for bare in sorted((root / "bare").rglob("*.png"))[:4]:
        mine = ours_root / bare.relative_to(root / "bare")
        worst = max(worst, int(np.abs(np.asarray(Image.open(bare), np.int16) - np.asarray(Image.open(mine), np.int16)).max()))
    return worst


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24 if cuda else 6, help="images per run (default: %(default)s)")
    parser.add_argument("--batch_sizes", default="1,2,4" if cuda else "2", help="comma-separated (default: %(default)s)")
    parser.add_argument("--compile", default="off,on" if cuda else "off", help="off, on or off,on (default: %(default)s)")
    parser.add_argument("--size", type=int, default=1024 if cuda else 64, help="height and width (default: %(default)s)")
    parser.add_argument("--reference_size", type=int, default=512 if cuda else 64, help="conditioning image side")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    compile_modes = [mode == "on" for mode in args.compile.split(",")]
    if any(args.images % b or args.images < (STARTUP_BATCHES + 1) * b or PER_QUESTION % b for b in batch_sizes):
        parser.error(f"each batch size must divide {PER_QUESTION} and --images, and --images give at least "
                     f"{STARTUP_BATCHES + 1} batches of each")
    device = torch.cuda.get_device_name(0).replace(" ", "_") if cuda else "cpu"
    if not cuda:  # said first: what follows is a short check of the code, not a measurement
        print("cpu: no CUDA device, so this runs the TINY checkpoint (float32) at a small size, one batch size; "
              "its figures say nothing about GPU speed", flush=True)
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    with tempfile.TemporaryDirectory(prefix="gpu-klein-") as temp:
        root = Path(temp)
        started = time.perf_counter()
        if cuda:
            checkpoint = build_tiny_checkpoint(root / "flux2-klein-4B-random", overrides=KLEIN_4B,
                                               device="cuda", dtype=torch.bfloat16)
            print(f"{device}: klein 4B layout and size, random weights, bfloat16, built in "
                  f"{time.perf_counter() - started:.0f} s")
        else:
            checkpoint = build_tiny_checkpoint(root / "flux2-klein-tiny")
        print(f"{args.images} images per run, {args.size}x{args.size}, {args.steps} steps, "
              f"one {args.reference_size}px reference per {PER_QUESTION} instructions")
        write_inputs(root, args.images, args.reference_size)
        results: list[tuple[Figures, Figures]] = []
        for compile in compile_modes:
            pipeline = load_pipeline(checkpoint, "cuda" if cuda else "cpu", torch.bfloat16 if cuda else torch.float32,
                                     compile)
            bare = [bare_loop(pipeline, root, checkpoint.name, args.size, args.steps, b, compile) for b in batch_sizes]
            del pipeline
            torch._dynamo.reset()  # compiled graphs hold the pipeline's weights
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
            for b, bare_figures in zip(batch_sizes, bare):
                results.append((ours(root, checkpoint, args.size, args.steps, b, compile), bare_figures))
                print(" | ".join(
                    f"{f.name}: {f.img_s:.3f} img/s, overhead {f.overhead_share:.4f}, untimed batches done after "
                    f"{f.first_s:.1f} s, peak {f.peak_mem_gb:.2f} GB" for f in results[-1]))
            print(f"compile {'on ' if compile else 'off'}: largest pixel difference bare vs ours "
                  f"{same_pixels(root, batch_sizes[-1], compile)}")
    best_ours = max((mine for mine, _ in results), key=lambda f: f.img_s)
    best_bare = max((bare for _, bare in results), key=lambda f: f.img_s)
    print(f"fastest: {best_ours.name} against {best_bare.name}; total {time.perf_counter() - started:.0f} s")
    print(f"RESULT device={device} ours_img_s={best_ours.img_s:.3f} bare_img_s={best_bare.img_s:.3f} "
          f"ratio={best_ours.img_s / best_bare.img_s:.3f} overhead_share={best_ours.overhead_share:.4f} "
          f"peak_mem_gb={best_ours.peak_mem_gb:.2f}")


if __name__ == "__main__":
    main()
