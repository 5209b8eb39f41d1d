"""The local FLUX.2 [klein] backend on a tiny random checkpoint built by the project.

Everything runs the real ``Flux2KleinPipeline`` on the CPU; images are 64x64 or smaller with 2
steps unless a test is about the step presets.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imggen.backends.flux2 import Flux2Backend
from imggen.backends.tiny_flux2 import build_tiny_checkpoint, main
from imggen.engine.errors import ErrorKind, TaskError

pytestmark = pytest.mark.timeout(120)
# torch is imported by the tests that use it, not at collection: every test process collects this
# module (and those that take its helpers), and most never need torch in the process itself.

SIZE = 32
STEPS = 2


@pytest.fixture(scope="session")
def klein_base(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "flux2-klein-base-tiny"
    assert main([str(path), "--base"]) == 0
    return path


@pytest.fixture(scope="session")
def backend(klein) -> Flux2Backend:
    return Flux2Backend(klein, num_inference_steps=STEPS)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def assert_nearly_identical(first: Image.Image, second: Image.Image) -> None:
    """Same seed, different batch size: batched matrix kernels may round the last float bit
    differently, so a rare uint8 value lands one level away; a seeding mistake moves them all."""
    difference = np.abs(pixels(first) - pixels(second))
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.01


def reference(seed: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    noise = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(noise)


class StepCountingPipeline:
    """Wraps the real pipeline: records each call and counts the denoising steps it runs."""

    def __init__(self, pipeline, fail_above: int | None = None, error: Exception | None = None):
        self.pipeline = pipeline
        self.calls: list[dict] = []
        self.fail_above = fail_above  # simulate an out-of-memory device for bigger batches
        self.error = error

    def __call__(self, **kwargs):
        record = {
            "batch": len(kwargs["generator"]),
            "steps_run": 0,
            "noise_states": [generator.get_state() for generator in kwargs["generator"]],
            **kwargs,
        }
        self.calls.append(record)
        if self.fail_above is not None and record["batch"] > self.fail_above:
            raise self.error

        def count_step(pipe, step, timestep, callback_kwargs):
            record["steps_run"] += 1
            record["cfg"] = pipe.do_classifier_free_guidance
            return callback_kwargs

        return self.pipeline(**kwargs, callback_on_step_end=count_step)


def test_checkpoint_has_the_real_layout_and_class_names(klein, klein_base):
    index = json.loads((klein / "model_index.json").read_text())
    assert index["_class_name"] == "Flux2KleinPipeline"
    assert index["is_distilled"] is True
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert index["vae"] == ["diffusers", "AutoencoderKLFlux2"]
    assert index["text_encoder"] == ["transformers", "Qwen3ForCausalLM"]
    assert index["tokenizer"] == ["transformers", "Qwen2TokenizerFast"]
    assert index["transformer"] == ["diffusers", "Flux2Transformer2DModel"]
    assert json.loads((klein_base / "model_index.json").read_text())["is_distilled"] is False
    for weights in (
        "text_encoder/model.safetensors",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "tokenizer/tokenizer.json",
    ):
        assert (klein / weights).is_file(), weights
        assert (klein / weights).stat().st_mode & 0o044 == 0o044, f"{weights} not world-readable"
    tokenizer_config = json.loads((klein / "tokenizer/tokenizer_config.json").read_text())
    assert tokenizer_config["pad_token"] == "<|endoftext|>"
    assert "local_files_only" not in tokenizer_config


def test_the_same_seed_builds_identical_weights(klein, tmp_path):
    def weights(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.safetensors")}

    again = build_tiny_checkpoint(tmp_path / "again")
    other_seed = build_tiny_checkpoint(tmp_path / "other", seed=1)
    assert weights(again) == weights(klein)
    assert weights(other_seed).keys() == weights(klein).keys()
    assert all(weights(other_seed)[k] != weights(klein)[k] for k in weights(klein))


def test_rebuilding_replaces_a_checkpoint_but_never_other_folders(tmp_path):
    target = build_tiny_checkpoint(tmp_path / "ckpt")
    (target / "stale.txt").write_text("from an earlier build")
    build_tiny_checkpoint(target, distilled=False)
    assert not (target / "stale.txt").exists()
    assert json.loads((target / "model_index.json").read_text())["is_distilled"] is False

    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_tiny_checkpoint(precious)
    assert (precious / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "notes"]  # no temp leftovers


def test_tokenizer_renders_the_qwen3_chat_prompt(backend):
    tokenizer = backend.pipeline.tokenizer
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a red fox"}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert text == (
        "<|im_start|>user\na red fox<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")


def test_loading_opens_no_socket(klein, monkeypatch):
    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)  # recorded too, in case a library swallows the error
        raise OSError("network access while loading a local checkpoint")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    loaded = Flux2Backend(klein, num_inference_steps=STEPS)
    assert loaded.generate(["offline"], seeds=[0], height=16, width=16)[0].size == (16, 16)
    assert attempts == []


def test_device_and_dtype_defaults_and_choices(klein, backend):
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert backend.device.type == expected
    assert backend.dtype == (torch.bfloat16 if expected == "cuda" else torch.float32)
    assert backend.pipeline.transformer.dtype == backend.dtype

    bf16 = Flux2Backend(klein, device="cpu", dtype="bfloat16", num_inference_steps=STEPS)
    assert bf16.pipeline.transformer.dtype == torch.bfloat16
    image = bf16.generate(["bf16"], seeds=[3], height=16, width=16)[0]
    assert image.info["provenance"]["dtype"] == "bfloat16"
    with pytest.raises(ValueError, match="unknown dtype"):
        Flux2Backend(klein, dtype="float99")


@pytest.mark.parametrize(
    "checkpoint, steps, guidance, cfg",
    [("klein", 4, 1.0, False), ("klein_base", 50, 4.0, True)],
)
def test_presets_come_from_the_checkpoint(request, checkpoint, steps, guidance, cfg):
    loaded = Flux2Backend(request.getfixturevalue(checkpoint))
    assert (loaded.is_distilled, loaded.num_inference_steps, loaded.guidance_scale) == (
        not cfg,
        steps,
        guidance,
    )
    loaded.pipeline = recorder = StepCountingPipeline(loaded.pipeline)
    image = loaded.generate(["preset"], seeds=[0], height=16, width=16)[0]
    (call,) = recorder.calls
    assert (call["num_inference_steps"], call["guidance_scale"]) == (steps, guidance)
    assert (call["steps_run"], call["cfg"]) == (steps, cfg)
    assert (image.info["provenance"]["steps"], image.info["provenance"]["guidance"]) == (
        steps,
        guidance,
    )


def test_caller_settings_override_the_preset(klein_base):
    loaded = Flux2Backend(klein_base, num_inference_steps=3, guidance_scale=1.0)
    loaded.pipeline = recorder = StepCountingPipeline(loaded.pipeline)
    loaded.generate(["override"], seeds=[0], height=16, width=16)
    (call,) = recorder.calls
    assert (call["steps_run"], call["guidance_scale"], call["cfg"]) == (3, 1.0, False)


def test_same_seed_same_pixels_other_seed_other_pixels(backend):
    first = backend.generate(["a lighthouse"], seeds=[7], height=SIZE, width=SIZE)[0]
    again = backend.generate(["a lighthouse"], seeds=[7], height=SIZE, width=SIZE)[0]
    other = backend.generate(["a lighthouse"], seeds=[8], height=SIZE, width=SIZE)[0]
    assert np.array_equal(pixels(first), pixels(again))
    assert np.abs(pixels(first) - pixels(other)).mean() > 5


def test_a_batch_gives_each_seed_the_noise_and_pixels_it_gets_alone(backend, monkeypatch):
    import torch

    monkeypatch.setattr(backend, "pipeline", StepCountingPipeline(backend.pipeline))
    prompts = ["a cat", "a dog on a skateboard", "a cat"]
    seeds = [11, 12, 13]
    batch = backend.generate(prompts, seeds=seeds, height=SIZE, width=SIZE)
    singles = [
        backend.generate([prompt], seeds=[seed], height=SIZE, width=SIZE)[0]
        for prompt, seed in zip(prompts, seeds)
    ]
    batch_call, *single_calls = backend.pipeline.calls
    assert batch_call["batch"] == 3
    for state, single_call in zip(batch_call["noise_states"], single_calls):
        assert torch.equal(state, single_call["noise_states"][0])
    for batched, single in zip(batch, singles):
        assert_nearly_identical(batched, single)
    assert np.abs(pixels(batch[0]) - pixels(batch[2])).mean() > 5  # same prompt, own seed


def test_text_to_image_gives_the_requested_size_and_provenance(backend, klein):
    (image,) = backend.generate(["a wide field"], seeds=[5], height=32, width=64)
    assert isinstance(image, Image.Image)
    assert (image.mode, image.size) == ("RGB", (64, 32))
    assert image.info["provenance"] == {
        "model": klein.name,
        "seed": 5,
        "steps": STEPS,
        "guidance": 1.0,
        "scheduler": "FlowMatchEulerDiscreteScheduler",  # the pipeline's sampler (A1111's "Euler")
        "height": 32,
        "width": 64,
        "dtype": "float32" if backend.device.type == "cpu" else "bfloat16",
        "device": str(backend.device),
    }


def test_editing_shares_the_references_across_prompts(backend, monkeypatch):
    monkeypatch.setattr(backend, "pipeline", StepCountingPipeline(backend.pipeline))
    references = [reference(1), reference(2, (96, 64))]
    edits = backend.generate(
        ["make it blue", "make it red"], references=references, seeds=[4, 4], height=48, width=32
    )
    assert [image.size for image in edits] == [(32, 48), (32, 48)]
    assert backend.pipeline.calls[0]["image"] == references

    edited = backend.generate(["make it blue"], references=references, seeds=[4], height=48, width=32)
    plain = backend.generate(["make it blue"], seeds=[4], height=48, width=32)
    assert_nearly_identical(edited[0], edits[0])
    assert not np.array_equal(pixels(edited[0]), pixels(plain[0]))
    # Without a size, the output takes the first reference's size.
    (sized,) = backend.generate(["same size"], references=[reference(3, (80, 64))], seeds=[0])
    assert sized.size == (80, 64)


@pytest.mark.parametrize(
    "bad, message",
    [
        (reference(0, (32, 64)), "at least 64 px"),
        (reference(0, (600, 64)), "aspect ratio"),
        (np.zeros((64, 64, 3), dtype=np.uint8), "not a PIL image"),
    ],
)
def test_bad_references_are_permanent_errors(backend, bad, message):
    with pytest.raises(TaskError, match=message) as caught:
        backend.generate(["x"], references=[bad], seeds=[0], height=16, width=16)
    assert caught.value.kind is ErrorKind.PERMANENT


def test_sizes_must_be_multiples_of_16(backend):
    for height, width in [(40, 32), (32, 8)]:
        with pytest.raises(TaskError, match="multiple of 16") as caught:
            backend.generate(["x"], seeds=[0], height=height, width=width)
        assert caught.value.kind is ErrorKind.FATAL
    with pytest.raises(ValueError, match="one seed per prompt"):
        backend.generate(["x", "y"], seeds=[0], height=16, width=16)


def test_out_of_memory_retries_at_half_the_batch(klein, backend):
    import torch

    oom = Flux2Backend(klein, num_inference_steps=STEPS)
    oom.pipeline = recorder = StepCountingPipeline(
        oom.pipeline, fail_above=2, error=torch.cuda.OutOfMemoryError("CUDA out of memory.")
    )
    prompts, seeds = ["a", "b", "c", "d"], [1, 2, 3, 4]
    images = oom.generate(prompts, seeds=seeds, height=16, width=16)
    assert [call["batch"] for call in recorder.calls] == [4, 2, 2]
    expected = backend.generate(prompts, seeds=seeds, height=16, width=16)
    for got, want in zip(images, expected):
        assert_nearly_identical(got, want)
    # The smaller batch size is kept for the next call.
    oom.generate(prompts[:3], seeds=seeds[:3], height=16, width=16)
    assert [call["batch"] for call in recorder.calls[3:]] == [2, 1]


def test_out_of_memory_at_batch_size_one_is_transient(klein):
    oom = Flux2Backend(klein, num_inference_steps=STEPS)
    oom.pipeline = recorder = StepCountingPipeline(
        oom.pipeline, fail_above=0, error=RuntimeError("CUDA error: out of memory")
    )
    with pytest.raises(TaskError, match="out of memory") as caught:
        oom.generate(["a", "b", "c"], seeds=[1, 2, 3], height=16, width=16)
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert [call["batch"] for call in recorder.calls] == [3, 1]


def test_other_pipeline_errors_are_not_retried(klein):
    broken = Flux2Backend(klein, num_inference_steps=STEPS)
    broken.pipeline = recorder = StepCountingPipeline(
        broken.pipeline, fail_above=0, error=RuntimeError("shape mismatch")
    )
    with pytest.raises(RuntimeError, match="shape mismatch"):
        broken.generate(["a", "b"], seeds=[1, 2], height=16, width=16)
    assert len(recorder.calls) == 1


def test_importing_the_backend_modules_does_not_import_torch():
    code = (
        "import sys, imggen, imggen.backends.flux2, imggen.backends.tiny_flux2; "
        "sys.exit('torch' in sys.modules or 'diffusers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
