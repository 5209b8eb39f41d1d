"""What makes the FLUX.2 [klein] backend fast on a GPU, kept apart from what it generates.

* :class:`PromptEmbeddings`: the text encoder's output for each distinct prompt, computed once and
  reused (the distinct prompts a call has not seen yet go through the encoder as one batch). The
  embeddings are the pipeline's own ``encode_prompt`` output, so an image is the same as without
  the cache (up to one level in a rare pixel where a reused embedding was encoded in a batch of
  another size, as for any batch-size change).
* :func:`compile_transformer`: ``torch.compile`` of the transformer's repeated blocks (regional
  compilation: the same speed-up as compiling the whole model, in a fraction of the compile time).
* :func:`place_pipeline`: the pipeline on its device, or with ``enable_model_cpu_offload`` (each
  model moved to the GPU only while it runs) for GPUs with less memory than the model needs.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

PROMPT_CACHE_SIZE = 32  # about 8 MB each for klein 4B (512 tokens x 7,680 bf16 values)


class PromptEmbeddings:
    """The last ``size`` prompts' embeddings, on the pipeline's execution device."""

    def __init__(self, pipeline, size: int = PROMPT_CACHE_SIZE) -> None:
        self.pipeline = pipeline
        self.size = size
        self._cache: OrderedDict[str, Any] = OrderedDict()

    def __call__(self, prompts: list[str]):
        """The embeddings of ``prompts`` as one batch (one row per prompt, in order)."""
        import torch

        missing = [prompt for prompt in dict.fromkeys(prompts) if prompt not in self._cache]
        if missing:
            embeddings, _ = self.pipeline.encode_prompt(prompt=missing)
            for prompt, row in zip(missing, embeddings):
                self._cache[prompt] = row.unsqueeze(0).clone()  # its own storage, not a view of the batch
        rows = []
        for prompt in prompts:
            self._cache.move_to_end(prompt)
            rows.append(self._cache[prompt])
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return torch.cat(rows)


def compile_transformer(pipeline) -> None:
    """Compile the transformer's repeated blocks; the compile itself happens on the first call."""
    pipeline.transformer.compile_repeated_blocks()


def place_pipeline(pipeline, device, *, offload: bool):
    """Move ``pipeline`` to ``device``, or offload its models to the CPU between uses."""
    if not offload:
        return pipeline.to(device)
    if device.type != "cuda":
        raise ValueError(f"offload moves each model to a GPU while it runs; the device is {device}")
    pipeline.enable_model_cpu_offload(device=str(device))
    return pipeline

