"""The rest of Replicate's API that the SDK reaches for, beside the predictions of official models.

``GET /v1/models/{owner}/{name}`` and ``.../versions/{id}`` (``models.get``; ``replicate.run`` with
``owner/name:version`` fetches the version), ``POST /v1/predictions`` with a ``version`` (an id or
``owner/name:id``), ``GET /v1/predictions`` (``predictions.list``, newest first) and the files API
(``POST /v1/files``, multipart, which the SDK uses for a ``Path`` or file input; ``GET /v1/files/{id}``).
An uploaded file's ``urls.get`` is a valid input to a model. Every emulated model has one version,
whose id is derived from its name.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from imggen.backends.replicate_catalog import replicate_models
from imggen.emulators.replicate_faults import problem
from imggen.emulators.replicate_state import iso_time

if TYPE_CHECKING:
    from imggen.emulators.replicate_server import ReplicateEmulator

UPLOADS = "/v1/files/"


def version_id(ref: str) -> str:
    """The one version of model ``ref`` in the emulator."""
    return hashlib.sha256(ref.encode()).hexdigest()


@dataclass(frozen=True)
class Upload:
    id: str
    name: str
    content_type: str
    data: bytes
    created_at: float


class MoreRoutes:
    """Models, versions, the predictions list and uploaded files of one emulator."""

    def __init__(self, server: "ReplicateEmulator") -> None:
        self.server = server
        self.uploads: dict[str, Upload] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/models/{owner}/{name}", self._model),
            web.get("/v1/models/{owner}/{name}/versions/{id}", self._version),
            web.post("/v1/predictions", self._create_version),
            web.get("/v1/predictions", self._list),
            web.post("/v1/files", self._upload),
            web.get("/v1/files/{id}", self._file),
        ]

    def uploaded(self, uri: str) -> bytes | None:
        """The bytes of a file uploaded here, when ``uri`` is its ``urls.get``."""
        _, found, file_id = uri.partition(UPLOADS)
        upload = self.uploads.get(file_id) if found and uri.startswith(self.server.base_url) else None
        return upload.data if upload is not None else None

    def _ref(self, request: web.Request) -> str | None:
        ref = f"{request.match_info['owner']}/{request.match_info['name']}"
        return ref if ref in self.server.models else None

    async def _model(self, request: web.Request) -> web.Response:
        ref = self._ref(request)
        if ref is None:
            return problem(404, "Not found", "The requested resource could not be found.")
        owner, name = ref.split("/")
        return web.json_response({
            "url": f"https://replicate.com/{ref}", "owner": owner, "name": name, "description": None,
            "visibility": "public", "run_count": 0, "is_official": True,
            "latest_version": self._version_body(ref),
        })

    async def _version(self, request: web.Request) -> web.Response:
        ref = self._ref(request)
        if ref is None or request.match_info["id"] != version_id(ref):
            return problem(404, "Not found", "The requested resource could not be found.")
        return web.json_response(self._version_body(ref))

    def _version_body(self, ref: str) -> dict:
        inputs = replicate_models()[ref].inputs
        return {"id": version_id(ref), "created_at": iso_time(0), "cog_version": "0.9.0",
                "openapi_schema": {"components": {"schemas": {"Input": {"type": "object", "properties": inputs}}}}}

    async def _create_version(self, request: web.Request) -> web.Response:
        body = self.server.json_body(request)
        version = body.get("version") if isinstance(body, dict) else None
        wanted = str(version).rpartition(":")[2]
        ref = next((ref for ref in self.server.models if version_id(ref) == wanted), None)
        if ref is None:
            return problem(422, "Invalid version or not permitted",
                           "The specified version does not exist (or perhaps you don't have permission to use it?)")
        return await self.server.create(request, ref, {key: value for key, value in body.items() if key != "version"})

    async def _list(self, request: web.Request) -> web.Response:
        newest = sorted(self.server.predictions.values(), key=lambda p: p.created_at, reverse=True)
        now = time.time()
        results = [p.to_json(self.server.base_url, now, self.server.config.data_retention_s) for p in newest[:100]]
        return web.json_response({"next": None, "previous": None, "results": results})

    async def _upload(self, request: web.Request) -> web.Response:
        # the request log has read the body already: the form is parsed from its bytes
        raw = f"Content-Type: {request.headers.get('Content-Type', '')}\r\n\r\n".encode() + await request.read()
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        content = next((part for part in form.iter_parts() if part.get_param("name", header="content-disposition")
                        == "content"), None) if form.is_multipart() else None
        if content is None:
            return problem(422, "Input validation failed", "- content: content is required\n")
        upload = Upload(secrets.token_hex(12), content.get_filename() or "upload", content.get_content_type(),
                        content.get_payload(decode=True), time.time())
        self.uploads[upload.id] = upload
        return web.json_response(self._file_body(upload), status=201)

    async def _file(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["id"])
        if upload is None:
            return problem(404, "Not found", "The requested resource could not be found.")
        return web.json_response(self._file_body(upload))

    def _file_body(self, upload: Upload) -> dict:
        return {"id": upload.id, "name": upload.name, "content_type": upload.content_type, "size": len(upload.data),
                "etag": hashlib.md5(upload.data).hexdigest(), "checksums": {"sha256": hashlib.sha256(upload.data).hexdigest()},
                "metadata": {}, "created_at": iso_time(upload.created_at), "expires_at": iso_time(upload.created_at + 86400),
                "urls": {"get": f"{self.server.base_url}{UPLOADS}{upload.id}"}}
