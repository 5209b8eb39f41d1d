"""The FLUX.2 backend's speed-ups keep its images: prompt embeddings are computed once per distinct
prompt (and the images are those of the pipeline's own text path), compiling the transformer warms
it up and changes no more than a rounding level (also through ``imggen instructions --compile``),
offloading needs a GPU, and workers get the CUDA allocator setting unless the user chose one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from imggen.backends.flux2 import Flux2Backend
from imggen.distributed.processes import local_pool
from imggen.pipelines.instructions.cli import main as instructions_main

from instructions_fixtures import PLANNER, EnvironmentHandler, sample_inputs
from test_flux2_backend import STEPS, assert_nearly_identical, klein_base, pixels, reference  # noqa: F401 - klein_base is a fixture

SIZE = 32
PROMPTS, SEEDS = ["a cat", "a dog on a skateboard", "a cat"], [11, 12, 13]


def encoder_rows(backend: Flux2Backend) -> list[int]:
    """Records the batch size of every text-encoder forward call from now on."""
    rows: list[int] = []
    backend.pipeline.text_encoder.register_forward_hook(lambda module, args, kwargs, output: rows.append(
        kwargs["input_ids"].shape[0]), with_kwargs=True)
    return rows


@pytest.mark.parametrize("checkpoint", ["klein", "klein_base"])
def test_cached_embeddings_give_the_pixels_of_the_pipelines_own_text_path(request, checkpoint):
    path = request.getfixturevalue(checkpoint)
    cached = Flux2Backend(path, num_inference_steps=STEPS)
    uncached = Flux2Backend(path, num_inference_steps=STEPS, prompt_cache_size=0)
    references = [reference(1)]
    for prompts, seeds in [(PROMPTS, SEEDS), (PROMPTS[1:2], SEEDS[1:2]), (["a cat", "a new prompt"], [5, 6])]:
        got = cached.generate(prompts, references=references, seeds=seeds, height=SIZE, width=SIZE)
        want = uncached.generate(prompts, references=references, seeds=seeds, height=SIZE, width=SIZE)
        for mine, theirs in zip(got, want):
            assert np.array_equal(pixels(mine), pixels(theirs))
    assert np.abs(pixels(got[0]) - pixels(got[1])).mean() > 5  # the images are not all alike


def test_the_text_encoder_sees_each_distinct_prompt_once(klein):
    backend = Flux2Backend(klein, num_inference_steps=STEPS)
    rows = encoder_rows(backend)
    backend.generate(PROMPTS, seeds=SEEDS, height=SIZE, width=SIZE)
    assert rows == [2]  # "a cat" and the dog, in one batch
    backend.generate(["a dog on a skateboard", "a bird"], seeds=[1, 2], height=SIZE, width=SIZE)
    backend.generate(["a cat"], seeds=[3], height=SIZE, width=SIZE)
    assert rows == [2, 1]  # only the bird was new

    uncached = Flux2Backend(klein, num_inference_steps=STEPS, prompt_cache_size=0)
    uncached_rows = encoder_rows(uncached)
    uncached.generate(PROMPTS, seeds=SEEDS, height=SIZE, width=SIZE)
    assert uncached_rows == [3]  # the pipeline's own path encodes every prompt of every call


def test_the_cache_keeps_only_the_latest_prompts(klein):
    backend = Flux2Backend(klein, num_inference_steps=STEPS, prompt_cache_size=2)
    rows = encoder_rows(backend)
    for prompt in ["one", "two", "three", "one"]:
        backend.generate([prompt], seeds=[0], height=16, width=16)
    assert rows == [1, 1, 1, 1]  # "one" was dropped when "three" came
    backend.generate(["three"], seeds=[0], height=16, width=16)
    assert rows == [1, 1, 1, 1]


@pytest.mark.slow
def test_a_compiled_transformer_warms_up_and_keeps_the_images(klein):
    plain = Flux2Backend(klein, num_inference_steps=STEPS)
    compiled = Flux2Backend(klein, num_inference_steps=STEPS, compile=True)
    assert compiled.warm_up(2, SIZE, SIZE) > 0 and compiled.compile_s > 0
    got = compiled.generate(PROMPTS[:2], seeds=SEEDS[:2], height=SIZE, width=SIZE)
    want = plain.generate(PROMPTS[:2], seeds=SEEDS[:2], height=SIZE, width=SIZE)
    for mine, theirs in zip(got, want):
        assert_nearly_identical(mine, theirs)
    provenance = got[0].info["provenance"]
    assert provenance["compiled"] is True and provenance["compile_s"] == round(compiled.compile_s, 3)
    assert "compiled" not in want[0].info["provenance"]


def test_offloading_without_a_gpu_is_refused_with_the_reason(klein):
    with pytest.raises(ValueError, match="offload moves each model to a GPU"):
        Flux2Backend(klein, device="cpu", offload=True)


@pytest.mark.parametrize("user_setting, seen", [
    (None, "expandable_segments:True"),
    ("max_split_size_mb:128", "max_split_size_mb:128"),
])
async def test_workers_get_the_cuda_allocator_setting_unless_the_user_set_one(monkeypatch, user_setting, seen):
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    if user_setting is None:
        monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    else:
        monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", user_setting)
    async with local_pool(EnvironmentHandler("PYTORCH_CUDA_ALLOC_CONF"), ["cpu"]) as pool:
        assert await pool.submit("which") == seen


def cli_args(root, klein, *flags: str) -> list[str]:
    return ["--planning_model", PLANNER, "--flux_ckpt", str(klein), "--image_root", str(root),
            "--predicted_instructions_root", str(root / "predicted_instructions"),
            "--output_root", str(root / "generated_images"), "--height", "64", "--width", "64",
            "--num_inference_steps", str(STEPS), "--device", "cpu", "--num_gpus", "1", *flags]


@pytest.mark.slow
def test_imggen_instructions_compile_warms_each_worker_up_and_records_it(tmp_path, klein):
    sample_inputs(tmp_path)
    assert instructions_main(cli_args(tmp_path, klein, "--compile", "--batch_size", "2")) == 0
    images = sorted((tmp_path / "generated_images").rglob("img_*.png"))
    assert len(images) == 3
    for path in images:
        with Image.open(path) as image:
            provenance = json.loads(image.text["imggen"])
        assert provenance["compiled"] is True and provenance["compile_s"] > 0


def test_imggen_instructions_offload_without_a_gpu_stops_with_the_reason(tmp_path, klein, capsys):
    sample_inputs(tmp_path)
    assert instructions_main(cli_args(tmp_path, klein, "--offload")) != 0
    assert "offload moves each model to a GPU" in capsys.readouterr().err
    assert not list((tmp_path / "generated_images").rglob("img_*.png"))
