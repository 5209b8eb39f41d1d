"""A tiny random FLUX.2 [klein] checkpoint, built offline, for tests and rehearsals.

The folder has the real checkpoint's layout and ``model_index.json`` classes (scheduler, vae,
text_encoder, tokenizer, transformer, is_distilled), written with ``save_pretrained`` and loaded
with ``Flux2KleinPipeline.from_pretrained`` like the real thing. The weights are random and tiny
(about 700 KB), so it runs on a CPU in milliseconds per image; the images are noise.

Shapes follow the real model where the pipeline depends on them: the VAE has four blocks
(scale factor 8, so sizes are multiples of 16 and the default is 1024x1024), the text encoder has
28 layers (the pipeline stacks hidden states 9, 18 and 27), the transformer's joint attention
width is three times the text hidden size. The tokenizer is a byte-level BPE Qwen2 tokenizer made
here from the 256 byte symbols and the chat-control specials, so nothing comes from a model hub.

``overrides`` replace parts of each model's config, so the same builder makes a checkpoint of the
real model's size (random weights, for speed measurements: ``benchmarks/gpu_klein.py``), built in
the given dtype on the given device.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Qwen2's pre-tokenizer split pattern.
_QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PAD_TOKEN = "<|endoftext|>"
_SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]
_MERGES = [("Ġ", "a"), ("Ġ", "t")]  # two merges, so the BPE merge path is exercised too
# Qwen3's chat template cut down to what the pipeline renders: user turns, then the assistant
# prompt with an empty thinking block when enable_thinking is false.
_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)
_TEXT_HIDDEN_SIZE = 16
_TEXT_VOCAB_SIZE = 320  # covers the tokenizer's 263 ids
_LATENT_CHANNELS = 4


def _byte_symbols() -> list[str]:
    """The 256 printable symbols GPT-2 style byte-level BPE uses for the bytes 0..255."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    symbols = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def _build_tokenizer(workdir: Path):
    """A Qwen2 tokenizer with a chat template and pad token, loaded the ordinary way."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    vocab = {_PAD_TOKEN: 0}
    for symbol in _byte_symbols() + [a + b for a, b in _MERGES]:
        vocab[symbol] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=list(_MERGES)))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([_PAD_TOKEN, *_SPECIAL_TOKENS])

    source = workdir / "tokenizer-source"
    source.mkdir()
    backend.save(str(source / "tokenizer.json"))
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": _PAD_TOKEN,
        "pad_token": _PAD_TOKEN,
        "eos_token": "<|im_end|>",
        "bos_token": None,
        "model_max_length": 1024,
        "chat_template": _CHAT_TEMPLATE,
    }
    (source / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    tokenizer = Qwen2TokenizerFast.from_pretrained(str(source), local_files_only=True)
    # Offline loading records these in init_kwargs; they must not end up in the saved config.
    for key in ("is_local", "local_files_only"):
        tokenizer.init_kwargs.pop(key, None)
    return tokenizer


def _build_text_encoder(tokenizer, overrides: Mapping[str, Any]):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tiny = dict(
        vocab_size=_TEXT_VOCAB_SIZE,
        hidden_size=_TEXT_HIDDEN_SIZE,
        intermediate_size=32,
        num_hidden_layers=28,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        bos_token_id=None,
    )
    return Qwen3ForCausalLM(Qwen3Config(**{**tiny, **overrides})).eval()


def _build_transformer(overrides: Mapping[str, Any]):
    from diffusers import Flux2Transformer2DModel

    tiny = dict(
        patch_size=1,
        in_channels=4 * _LATENT_CHANNELS,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=3 * _TEXT_HIDDEN_SIZE,
        timestep_guidance_channels=32,
        mlp_ratio=3.0,
        axes_dims_rope=(4, 4, 4, 4),
        rope_theta=2000,
        guidance_embeds=False,
    )
    return Flux2Transformer2DModel(**{**tiny, **overrides}).eval()


def _build_vae(overrides: Mapping[str, Any]):
    from diffusers import AutoencoderKLFlux2

    blocks = 4  # scale factor 2**(4-1) = 8, like the real VAE
    tiny = dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=(4,) * blocks,
        layers_per_block=1,
        latent_channels=_LATENT_CHANNELS,
        norm_num_groups=2,
        sample_size=64,
    )
    return AutoencoderKLFlux2(**{**tiny, **overrides}).eval()


def _build_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )


def _seeded(seed: int, build, device: str | None = None, dtype: Any = None):
    """Run ``build`` on ``device`` with the torch RNG seeded (the caller's CPU RNG state untouched),
    then cast the model to ``dtype``."""
    import torch

    with torch.random.fork_rng(devices=[]), torch.device(device or "cpu"):
        torch.manual_seed(seed)
        model = build()
    return model if dtype is None else model.to(dtype)


def _make_readable(root: Path) -> None:
    """safetensors writes 0600 files; a checkpoint should be readable by other users."""
    os.chmod(root, 0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(Path(dirpath, name), 0o755)
        for name in filenames:
            os.chmod(Path(dirpath, name), 0o644)


def _replace_folder(built: Path, target: Path) -> None:
    """Move ``built`` to ``target``; an existing checkpoint there is replaced, anything else kept."""
    if target.exists():
        if not (target / "model_index.json").is_file() and any(target.iterdir()):
            raise FileExistsError(
                f"{target} exists and is not a checkpoint folder; refusing to overwrite it"
            )
        shutil.rmtree(target)
    built.rename(target)


def build_tiny_checkpoint(
    path: str | Path,
    *,
    distilled: bool = True,
    seed: int = 0,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    device: str | None = None,
    dtype: Any = None,
) -> Path:
    """Write a tiny random FLUX.2 [klein] checkpoint folder at ``path`` and return its path.

    ``distilled`` selects klein (4-step, no guidance) or klein-base (``is_distilled`` false).
    The same seed gives byte-identical weight files. The folder is built next to ``path`` and
    renamed into place, so a crash never leaves half a checkpoint; an earlier checkpoint at
    ``path`` is replaced. ``overrides`` maps "transformer", "text_encoder" and "vae" to config
    values replacing the tiny ones; ``device`` and ``dtype`` are where and in what the models are
    built and saved (default: the CPU, float32).
    """
    from diffusers import Flux2KleinPipeline

    from .flux2 import quiet_libraries

    quiet_libraries()  # no "Writing model shards" bar, unless IMGGEN_VERBOSE is set
    changes = overrides or {}
    unknown = set(changes) - {"transformer", "text_encoder", "vae"}
    if unknown:
        raise ValueError(f"overrides for unknown components: {', '.join(sorted(unknown))}")
    target = Path(path).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as work:
        workdir = Path(work)
        tokenizer = _build_tokenizer(workdir)
        pipeline = Flux2KleinPipeline(
            scheduler=_build_scheduler(),
            vae=_seeded(seed, lambda: _build_vae(changes.get("vae", {})), device, dtype),
            text_encoder=_seeded(
                seed, lambda: _build_text_encoder(tokenizer, changes.get("text_encoder", {})), device, dtype
            ),
            tokenizer=tokenizer,
            transformer=_seeded(seed, lambda: _build_transformer(changes.get("transformer", {})), device, dtype),
            is_distilled=distilled,
        )
        built = workdir / "checkpoint"
        pipeline.save_pretrained(str(built))
        _name_tokenizer_like_the_real_checkpoint(built / "model_index.json")
        _make_readable(built)
        _replace_folder(built, target)
    return target


def _name_tokenizer_like_the_real_checkpoint(model_index: Path) -> None:
    """transformers 5 records ``Qwen2Tokenizer``; the real checkpoint says ``Qwen2TokenizerFast``."""
    index = json.loads(model_index.read_text())
    index["tokenizer"] = ["transformers", "Qwen2TokenizerFast"]
    model_index.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``imggen tiny-checkpoint PATH [--base] [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="imggen tiny-checkpoint",
        description="Build a tiny random FLUX.2 [klein] checkpoint for offline tests and rehearsals.",
    )
    parser.add_argument("path", type=Path, help="folder to write (an earlier checkpoint there is replaced)")
    parser.add_argument(
        "--base", action="store_true", help="write a klein-base checkpoint (is_distilled false)"
    )
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    args = parser.parse_args(argv)
    built = build_tiny_checkpoint(args.path, distilled=not args.base, seed=args.seed)
    print(built)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
