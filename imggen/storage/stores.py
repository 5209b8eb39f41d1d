"""Where finished images go: an S3 bucket (:mod:`.s3`) or a local folder, both under ``{user_id}/{actor_id}/``.

Both take a file name and return an object with the image's ``url`` (``https://...`` for S3,
``file://...`` for a folder), and ``check`` that they can take files before a run pays for any
(:class:`StoreRefused` says why not). The user and actor ids are untrusted and pass through ``safe_name``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .atomic import atomic_write_bytes
from .paths import safe_name, safe_path

CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png"}


class StoreRefused(RuntimeError):
    """A store that cannot take files (missing, not writable); raised by ``check`` before a run pays."""


class Stored(Protocol):
    url: str


class ImageStore(Protocol):
    name: str
    location: str  # where its files go (``s3://bucket/prefix/``, ``file:///folder``)

    async def check(self) -> None:
        """Raise (one line) unless files can be stored here; called before anything is paid for."""

    async def put(self, name: str, data: bytes, content_type: str) -> Stored: ...


def owner_prefix(user_id: str, actor_id: str) -> str:
    """The sanitized ``{user_id}/{actor_id}`` every stored name lives under."""
    return f"{safe_name(user_id)}/{safe_name(actor_id)}"


@dataclass(frozen=True)
class StoredFile:
    url: str
    path: Path


class LocalFolderStore:
    """Files under ``root/{user_id}/{actor_id}/``, written atomically."""

    name = "local"

    def __init__(self, root: str | os.PathLike, user_id: str, actor_id: str) -> None:
        self.folder = safe_path(root, user_id, actor_id)
        self.location = self.folder.resolve().as_uri()

    async def check(self) -> None:
        try:
            await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True)
        except OSError as error:
            raise StoreRefused(f"cannot store images in {self.folder}: {error.strerror}") from None
        if not os.access(self.folder, os.W_OK):
            raise StoreRefused(f"cannot store images in {self.folder}: not writable")

    async def put(self, name: str, data: bytes, content_type: str) -> StoredFile:
        path = await asyncio.to_thread(atomic_write_bytes, safe_path(self.folder, name), data)
        return StoredFile(path.resolve().as_uri(), path)


def make_store(kind: str, *, user_id: str, actor_id: str, local_root: str | os.PathLike) -> ImageStore:
    """``s3`` (configured from the environment) or ``local`` (under ``local_root``)."""
    if kind == "local":
        return LocalFolderStore(local_root, user_id, actor_id)
    if kind == "s3":
        from .s3 import S3Store

        return S3Store.from_settings(prefix=owner_prefix(user_id, actor_id))
    raise ValueError(f"unknown storage {kind!r}: choose s3 or local")
