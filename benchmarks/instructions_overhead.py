"""How much of an instruction-image run is spent outside the model: loading workers, queueing,
saving PNGs, the ledger. Tiny FLUX.2 klein checkpoint on the CPU, 256x256, 4 steps.

Two measurements in the same run, on the same inputs and seeds:

* ours: ``run_instructions`` end to end (spawning the workers and loading the pipeline included);
  each worker records how long its pipeline calls took (``pipeline_s`` in the ledger's provenance),
  so ``overhead_share = 1 - pipeline time per worker / wall time``;
* bare: one ``Flux2Backend`` in this process, a loop calling ``generate`` on the same prompts,
  references and seeds (its one-time load not counted), the fastest this machine can go.

Starting a worker is a one-time cost (on this CPU about 5 s, most of it importing torch and
diffusers), so the share falls as a run grows; the default of 2,000 images is a short real run
(a few minutes). The line before the result gives that start and the steady-state share after it.

The last line is ``RESULT overhead_share=<x> workers=<n> ours_img_s=<a> bare_img_s=<b>``; the
target is overhead_share <= 0.05.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import diffusers
import numpy as np
import transformers
from PIL import Image

from imggen.backends.flux2 import Flux2Backend
from imggen.backends.tiny_flux2 import build_tiny_checkpoint
from imggen.engine.ledger import Ledger
from imggen.pipelines.instructions import InstructionsOptions, run_instructions
from imggen.pipelines.instructions.plan import build_plan
from imggen.pipelines.instructions.render import load_reference

SIZE, STEPS = 256, 4


def write_inputs(root: Path, images: int, per_question: int = 4) -> None:
    reference = root / "datasets" / "bench" / "ref.png"
    reference.parent.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(reference)
    results = root / "predicted_instructions" / "BenchPlanner" / "results.jsonl"
    results.parent.mkdir(parents=True)
    with open(results, "w") as lines:
        for question in range(-(-images // per_question)):
            count = min(per_question, images - question * per_question)
            lines.write(json.dumps({"id": question, "dataset": "bench", "image_paths": ["dataset/bench/ref.png"],
                                    "instructions": [f"move item {k} of scene {question} left" for k in range(count)]}) + "\n")


def bare_loop(root: Path, checkpoint: Path) -> float:
    """Seconds for the pipeline calls alone: the same prompts, references and seeds, no engine."""
    tasks = list(build_plan(predicted_root=root / "predicted_instructions", planning_models=["BenchPlanner"],
                            output_root=root / "bare", image_root=root, generation_model="bare",
                            height=SIZE, width=SIZE).tasks())
    backend = Flux2Backend(checkpoint, device="cpu", num_inference_steps=STEPS)
    references = [load_reference(path, "bench") for path in tasks[0].payload["references"]]
    backend.generate(["warm up"], references=references, seeds=[0], height=SIZE, width=SIZE)
    started = time.perf_counter()
    for task in tasks:
        backend.generate([task.payload["prompt"]], references=references, seeds=[task.payload["seed"]],
                         height=SIZE, width=SIZE)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images to generate (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="CPU worker processes (default: %(default)s)")
    args = parser.parse_args()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        checkpoint = build_tiny_checkpoint(root / "ckpt" / "flux2-klein-tiny")
        write_inputs(root, args.images)
        options = InstructionsOptions(
            planning_model="BenchPlanner", flux_ckpt=checkpoint, predicted_instructions_root=root / "predicted_instructions",
            output_root=root / "out", image_root=root, height=SIZE, width=SIZE, num_inference_steps=STEPS,
            device="cpu", num_gpus=args.workers,
        )
        bare_wall = bare_loop(root, checkpoint)  # first, so both runs see the same machine state
        started, started_at = time.perf_counter(), time.time()
        result = asyncio.run(run_instructions(options))
        ours_wall = time.perf_counter() - started
        assert result.summary.ok and result.summary.progress.done == args.images, result.summary
        with Ledger(root / "out") as ledger:
            records = [ledger.task(key) for key in ledger.keys("done")]
        pipeline_s = sum(record["provenance"]["pipeline_s"] for record in records)
        overhead_share = 1 - pipeline_s / args.workers / ours_wall
        # The one-time start: until the first image's pipeline call began. Steady state: from the
        # first finished image to the last.
        by_finish = sorted(records, key=lambda record: record["finished_at"])
        first, last = by_finish[0], by_finish[-1]
        start_s = first["finished_at"] - first["provenance"]["pipeline_s"] - started_at
        steady_pipeline_s = sum(record["provenance"]["pipeline_s"] for record in by_finish[args.workers:])
        steady_share = 1 - steady_pipeline_s / args.workers / (last["finished_at"] - first["finished_at"])

    print(f"ours: {args.images} images in {ours_wall:.2f} s ({pipeline_s:.2f} s in pipeline calls, "
          f"{args.workers} worker(s)), the workers' start {start_s:.2f} s, then a steady-state overhead "
          f"share of {steady_share:.4f}; bare loop: {bare_wall:.2f} s")
    print(f"RESULT overhead_share={overhead_share:.4f} workers={args.workers} "
          f"ours_img_s={args.images / ours_wall:.3f} bare_img_s={args.images / bare_wall:.3f}")


if __name__ == "__main__":
    main()
