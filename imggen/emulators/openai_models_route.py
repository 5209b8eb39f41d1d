"""``GET /v1/models`` and ``/v1/models/{id}`` of the OpenAI emulator, and a clear answer for the rest.

The models listed are the registry's image models still served on the emulator's date and its vision
models, in the API's list form. A ``/v1`` path the emulator does not serve (``/v1/images/edits``,
``/v1/responses``, ...) gets the API's error body with code ``not_emulated`` naming what it serves,
instead of a bare 404 that reads like a wrong URL.
"""

from __future__ import annotations

from aiohttp import web

from imggen.backends.openai_models import ModelUnavailableError, get_model, load_registry
from imggen.emulators.openai_replies import error_response
from imggen.emulators.openai_state import STATE

SERVED = ("POST /v1/images/generations, POST /v1/chat/completions, GET /v1/models, the Files API "
          "(/v1/files) and the Batch API (/v1/batches)")


def served_models(request: web.Request) -> list[str]:
    state = request.app[STATE]
    registry = load_registry()
    images = []
    for model in registry["models"]:
        try:
            get_model(model, state.config.today, allow_retired=state.config.allow_retired)
        except ModelUnavailableError:
            continue
        images.append(model)
    return [*images, *registry["vision_models"]]


def _model(model: str) -> dict:
    return {"id": model, "object": "model", "created": 0, "owned_by": "system"}


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [_model(model) for model in served_models(request)]})


async def retrieve_model(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    if model not in served_models(request):
        return error_response(404, f"The model '{model}' does not exist or you do not have access to it.",
                              code="model_not_found", param="model")
    return web.json_response(_model(model))


async def not_emulated(request: web.Request) -> web.Response:
    return error_response(404, f"{request.method} {request.path} is not emulated by imggen's OpenAI emulator; it "
                          f"serves {SERVED}.", code="not_emulated")


def add_model_routes(app: web.Application) -> None:
    """The models routes, and (added last) the answer for every other ``/v1`` path."""
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", retrieve_model)
    app.router.add_route("*", "/v1/{rest:.*}", not_emulated)
