"""The batch summary table: one CSV row per image with its object counts per class, rewritten atomically.

Columns: `project, image, image_id, status, objects, model, signature, seconds, error`, then one column per class
name (sorted; empty where an image has none of that class). `status` is `done` (run now), `skipped` (already done
with the same model and parameters) or `failed` (`error` says why). The QuPath Groovy scripts write the same
columns (`qupath.ext.cellbridge.bridge.CountsTable`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cellbridge.errors import CellBridgeError
from cellbridge.io.atomic import atomic_write

FIXED_COLUMNS = ("project", "image", "image_id", "status", "objects", "model", "signature", "seconds", "error")
STATUSES = ("done", "skipped", "failed")


@dataclass
class CountsRow:
    """One image's outcome."""

    project: str
    image: str
    image_id: str
    status: str
    model: str = ""
    signature: str = ""
    seconds: float | None = None
    error: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        """All objects of the image."""
        return sum(self.counts.values())

    @property
    def key(self) -> tuple[str, str]:
        """(project, image id), or (project, image name) for slide files given directly (they have no id)."""
        return self.project, self.image_id or self.image


class CountsTable:
    """Rows keyed by (project, image id), in first-seen order; `write` replaces the file atomically."""

    def __init__(self, rows: Iterable[CountsRow] = ()) -> None:
        self._rows: dict[tuple[str, str], CountsRow] = {}
        for row in rows:
            self.put(row)

    def put(self, row: CountsRow) -> None:
        """Add or replace the row of `row.key`."""
        self._rows[row.key] = row

    def get(self, project: str, image_id: str) -> CountsRow | None:
        """The row of an image (by its id, or its name when it has none), or None."""
        return self._rows.get((project, image_id))

    def arrange(self, keys: Iterable[tuple[str, str]]) -> None:
        """Put the rows of `keys` in that order, after the rows of other images (kept in their order)."""
        order = {key: i for i, key in enumerate(keys)}
        self._rows = dict(sorted(self._rows.items(), key=lambda item: order.get(item[0], -1)))

    @property
    def rows(self) -> list[CountsRow]:
        """All rows, in first-seen order."""
        return list(self._rows.values())

    @property
    def classes(self) -> list[str]:
        """Every class name of any row, sorted."""
        return sorted({name for row in self._rows.values() for name in row.counts})

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the CSV: to a temporary file, then rename (readers never see half a table)."""
        classes = self.classes
        with atomic_write(path) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow([*FIXED_COLUMNS, *classes])
            for row in self._rows.values():
                writer.writerow([row.project, row.image, row.image_id, row.status,
                                 row.objects if row.status != "failed" else "", row.model, row.signature,
                                 "" if row.seconds is None else f"{row.seconds:.2f}", row.error,
                                 *[row.counts.get(name, "") for name in classes]])

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> CountsTable:
        """Read a table written by `write` (or by the QuPath scripts); a missing file gives an empty table.

        A file that is not such a table (other columns, a count that is not a whole number, binary data) raises
        `CountsTableError` naming the line and column, instead of being overwritten or half understood."""
        path = Path(path)
        if not path.is_file():
            return cls()
        rows = []
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                missing = [c for c in FIXED_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise CountsTableError(f"{path}: not a counts table (no column {', '.join(missing)}); move it "
                                           "away or choose another --csv name")
                for record in reader:
                    rows.append(_row_of(record, f"{path}: line {reader.line_num}"))
        except UnicodeDecodeError:
            raise CountsTableError(f"{path}: not a counts table (binary, not UTF-8 text)") from None
        except csv.Error as error:
            raise CountsTableError(f"{path}: not a readable CSV ({error})") from None
        return cls(rows)


class CountsTableError(CellBridgeError):
    """A counts table that cannot be read as one."""


def _row_of(record: dict, where: str) -> CountsRow:
    if None in record:  # more cells than columns
        raise CountsTableError(f"{where}: more cells than the header has columns")
    classes = {}
    for name, value in record.items():
        if name in FIXED_COLUMNS or value in (None, ""):
            continue
        try:
            count = int(value)
        except ValueError:
            count = -1
        if count < 0:
            raise CountsTableError(f"{where}: column {name!r} must be a whole number of objects, got {value!r} "
                                   "(fix the line, or delete it to run that image again)")
        classes[name] = count
    seconds = record.get("seconds") or ""
    try:
        duration = float(seconds) if seconds else None
    except ValueError:
        raise CountsTableError(f"{where}: column 'seconds' must be a number, got {seconds!r}") from None
    return CountsRow(record.get("project") or "", record.get("image") or "", record.get("image_id") or "",
                     record.get("status") or "", record.get("model") or "", record.get("signature") or "",
                     duration, record.get("error") or "", classes)
