"""Exports of the pipelines' output folders as datasets other tools load.

``hf`` writes a Hugging Face ``imagefolder`` that ``datasets.load_dataset("imagefolder",
data_dir=DIR)`` loads: the finished images (hard-linked, or copied) and ``metadata.jsonl`` with
every column the ledger knows. :mod:`.detect` tells which pipeline wrote a folder, one small
reader per pipeline (:mod:`.styles`, :mod:`.instructions`, :mod:`.trainset`) turns its ledger into
rows (:mod:`.rows`), and :mod:`.imagefolder` writes them. This package reads pipeline outputs;
nothing in the engine, backends or storage imports it.
"""

from .detect import detect_pipeline, read_output
from .imagefolder import write_imagefolder
from .rows import CannotExport, ExportRow, Reading

__all__ = ["CannotExport", "ExportRow", "Reading", "detect_pipeline", "read_output", "write_imagefolder"]
