"""On a CUDA device, in bfloat16: the tiny checkpoint gives finite output, and a batch gives each
image what a call of its own gives (within bfloat16's rounding). Skipped where there is no GPU."""

from __future__ import annotations

import numpy as np
import pytest

from imggen.backends.flux2 import Flux2Backend

from test_flux2_backend import STEPS, pixels, reference

pytestmark = pytest.mark.gpu
SIZE = 64


@pytest.fixture(scope="module")
def gpu_backend(klein):
    import torch  # here, not at collection (see test_flux2_backend)

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (none is visible)")
    backend = Flux2Backend(klein, device="cuda", num_inference_steps=STEPS)
    assert backend.dtype is torch.bfloat16
    return backend


def test_bfloat16_output_is_finite(gpu_backend):
    import torch

    pipeline = gpu_backend.pipeline
    with torch.inference_mode():
        latents = pipeline(prompt_embeds=gpu_backend.prompt_embeddings(["a lighthouse", "a cat"]),
                           image=[reference(1)], height=SIZE, width=SIZE, num_inference_steps=STEPS,
                           guidance_scale=1.0, output_type="latent",
                           generator=[torch.Generator("cpu").manual_seed(seed) for seed in (1, 2)]).images
    assert latents.dtype is torch.bfloat16 and torch.isfinite(latents).all()
    images = gpu_backend.generate(["a lighthouse"], seeds=[1], height=SIZE, width=SIZE)
    assert pixels(images[0]).std() > 1  # an image, not a constant from NaNs cast to uint8


def test_a_batch_gives_the_images_of_single_calls(gpu_backend):
    prompts, seeds = ["a cat", "a dog on a skateboard", "a cat", "a bird"], [11, 12, 13, 14]
    references = [reference(2)]
    batch = gpu_backend.generate(prompts, references=references, seeds=seeds, height=SIZE, width=SIZE)
    for prompt, seed, batched in zip(prompts, seeds, batch):
        (single,) = gpu_backend.generate([prompt], references=references, seeds=[seed], height=SIZE, width=SIZE)
        difference = np.abs(pixels(batched) - pixels(single))
        assert difference.mean() < 2.0, difference.mean()  # another seed moves pixels by ~30 levels
    assert np.abs(pixels(batch[0]) - pixels(batch[2])).mean() > 5  # the same prompt, its own seed
