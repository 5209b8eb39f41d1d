"""Exports of the pipelines' output folders as datasets other tools load.

:mod:`.detect` tells which pipeline wrote a folder, one small reader per pipeline (:mod:`.styles`,
:mod:`.instructions`, :mod:`.trainset`) turns its ledger into rows (:mod:`.rows`), and a writer puts
them in a format: :mod:`.imagefolder` (``hf``: ``datasets.load_dataset("imagefolder", data_dir=DIR)``
with every column the ledger knows), :mod:`.trainers` (``kohya`` and ``dreambooth`` folders) and
:mod:`.webdataset` (tar shards). :mod:`.target` builds each export beside its folder and puts it in
place. No export holds a local path. This package reads pipeline outputs; nothing in the engine,
backends or storage imports it.
"""

from .detect import detect_pipeline, read_output
from .imagefolder import imagefolder_writer
from .rows import CannotExport, ExportRow, Reading
from .target import write_export

__all__ = ["CannotExport", "ExportRow", "Reading", "detect_pipeline", "imagefolder_writer", "read_output",
           "write_export"]
