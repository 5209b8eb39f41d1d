"""Atomic writes and image validation: a file is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import warnings
from pathlib import Path
from typing import IO, Any, Iterator

from PIL import Image, UnidentifiedImageError

# Refuse images that decode to more pixels than this (a 12k x 12k image); Pillow's own guard warns
# at a lower bound and errors only at twice it, so the check here is explicit.
MAX_IMAGE_PIXELS = 144_000_000


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    If the block raises, the temporary file is removed and ``path`` is left as it was. The file gets
    the permissions of any file the user creates (0666 less the umask), not ``mkstemp``'s private
    0600: a dataset is read by teammates, web servers and other container users.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented UTF-8 JSON, atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new, uniquely named hidden file next to ``path``, created with mode 0666 less the umask."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class InvalidImage(ValueError):
    """Bytes that are not a decodable image of an acceptable size."""


def check_image_bytes(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """Return ``(width, height)`` of a fully decodable image, or raise :class:`InvalidImage`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                size = probe.size
                if size[0] * size[1] > max_pixels:
                    raise InvalidImage(f"image of {size[0]}x{size[1]} pixels is larger than allowed")
                probe.load()
    except InvalidImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"refused a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise InvalidImage("not a readable image: unknown or corrupt format") from None
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise InvalidImage(f"not a readable image: {exc}") from None
    return size


def is_valid_image(path: str | os.PathLike) -> bool:
    """True when ``path`` exists and decodes completely as an image."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    try:
        check_image_bytes(data)
    except InvalidImage:
        return False
    return True
