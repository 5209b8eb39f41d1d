"""The seed's ``ReplicateService``: its two Replicate calls, synchronous, each returning the output's URL.

A thin synchronous face on :class:`~imggen.backends.replicate_backend.ReplicateBackend` for code
written against the seed; pipelines use the backend itself.
"""

from __future__ import annotations

import base64

from imggen.engine.sync_call import run_sync


class ReplicateService:
    """The seed's Replicate calls, synchronous, returning the output URL (valid for an hour)."""

    def __init__(self, api_token: str | None = None, base_url: str | None = None) -> None:
        self._api_token = api_token
        self._base_url = base_url

    def generate_grid_with_flux_kontext(
        self, prompt: str, input_image_base64: str, aspect_ratio: str = "1:1", output_format: str = "jpg"
    ) -> str:
        image = _image_input(input_image_base64)
        return self._call(lambda backend: backend.generate_grid(
            prompt, image, aspect_ratio=aspect_ratio, output_format=output_format))

    def upscale_with_topaz(
        self, image_base64: str, enhance_model: str = "Standard V2", upscale_factor: str = "2x",
        output_format: str = "jpg",
    ) -> str:
        image = _image_input(image_base64)
        return self._call(lambda backend: backend.upscale(
            image, enhance_model=enhance_model, upscale_factor=upscale_factor, output_format=output_format))

    def _call(self, request) -> str:
        async def call() -> str:
            from .replicate_backend import ReplicateBackend  # the SDK loads on first use

            backend = ReplicateBackend(api_token=self._api_token, base_url=self._base_url)
            try:
                return (await request(backend)).url
            finally:
                await backend.aclose()

        return run_sync(call)


def _image_input(image: str) -> bytes | str:
    """Plain base64 as bytes; data URIs and URLs as they are."""
    if image.startswith(("data:", "http://", "https://")):
        return image
    return base64.b64decode(image, validate=True)
