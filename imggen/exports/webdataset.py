"""WebDataset shards, as img2dataset writes them: ``DIR/{n:05d}.tar``, each sample three files under
one key, the image (``.png`` / ``.jpg``), its caption (``.txt``) and its columns (``.json``), for sets
that outgrow a folder (``webdataset.WebDataset("DIR/{00000..N}.tar")``)."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

from .imagefolder import BundledFiles, REFERENCES, columns_of
from .rows import Reading
from .target import unique

SAMPLES_PER_SHARD = 1000


def webdataset_writer(*, copy: bool, per_shard: int = SAMPLES_PER_SHARD):
    """What writes ``reading`` as tar shards into a new folder (see :func:`~.target.write_export`)."""
    def write(reading: Reading, folder: Path) -> None:
        bundled, taken = BundledFiles(folder / REFERENCES, copy=copy), set()
        for start in range(0, len(reading.rows), per_shard):
            with tarfile.open(folder / f"{start // per_shard:05d}.tar", "w") as shard:
                for row in reading.rows[start:start + per_shard]:
                    # webdataset splits a file name at its first dot: the key has none
                    key = unique(re.sub(r"[^\w-]+", "_", Path(row.file_name).stem), taken)
                    extension = Path(row.file_name).suffix.lower().lstrip(".")
                    _add(shard, f"{key}.{'jpg' if extension == 'jpeg' else extension}", reading.path(row).read_bytes())
                    _add(shard, f"{key}.txt", (row.caption or "").encode("utf-8"))
                    _add(shard, f"{key}.json", json.dumps(columns_of(row, bundled), ensure_ascii=False).encode("utf-8"))
    return write


def _add(shard: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size, member.mode = len(data), 0o644
    shard.addfile(member, io.BytesIO(data))
