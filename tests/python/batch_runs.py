"""Batch runs in tests: options for a quick CPU batch, and the counts CSV read as plain rows."""

from __future__ import annotations

import csv
from pathlib import Path

from cellbridge.batch import BatchOptions
from cellbridge.pipeline.options import RunOptions

RUN_FIELDS = ("tile_size", "tissue")  # keyword arguments that belong to each image's run, not to the batch


def batch_options(model: str, out: Path, **kwargs) -> BatchOptions:
    """A batch of `model` into `out` on the CPU (batches of 2 tiles, no progress bar); `tile_size` and `tissue` go
    to every image's run, the other keywords to the batch."""
    run = RunOptions(device="cpu", batch_size=2, **{k: kwargs.pop(k) for k in RUN_FIELDS if k in kwargs})
    return BatchOptions(model, out, run, progress=False, **kwargs)


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    """The rows of a counts CSV as the csv module reads them (column name → text)."""
    with csv_path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
