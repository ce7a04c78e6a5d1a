"""The counts table: one CSV row per image with its object counts per class, rewritten atomically. Its format is
defined in docs/protocol.md ("The counts table") and pinned by tests/fixtures/counts-table.csv.

Columns: `project, image, image_id, status, objects, model, signature, seconds, error`, then one column per class
name (sorted; empty where an image has none of that class). `status` is `done` (run now), `skipped` (already done
with the same model and parameters) or `failed` (`error` says why). This module is the only writer: `cellbridge
batch` uses it directly, and the QuPath Groovy scripts send their rows to the server (`putCountsRow`), which puts
them into the file with `SharedCountsTable`.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellbridge.errors import CellBridgeError
from cellbridge.io.atomic import atomic_write

FIXED_COLUMNS = ("project", "image", "image_id", "status", "objects", "model", "signature", "seconds", "error")
STATUSES = ("done", "skipped", "failed")
_JSON_FIELDS = ("project", "image", "image_id", "status", "model", "signature", "seconds", "error", "counts")


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

    @classmethod
    def from_json(cls, data: Any) -> CountsRow:
        """A row from its JSON form (`to_json`; what the QuPath extension sends); a bad field raises
        `CountsTableError` naming it."""
        if not isinstance(data, dict):
            raise CountsTableError("a counts row must be a JSON object")
        unknown = sorted(set(data) - set(_JSON_FIELDS))
        if unknown:
            raise CountsTableError(f"unknown counts row field(s): {', '.join(unknown)}")
        text = {}
        for name in ("project", "image", "image_id", "status", "model", "signature", "error"):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise CountsTableError(f"counts row field {name!r} must be text, got {value!r}")
            text[name] = value or ""
        if text["status"] not in STATUSES:
            raise CountsTableError(f"counts row status must be one of {', '.join(STATUSES)}, "
                                   f"got {text['status']!r}")
        seconds = data.get("seconds")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or not math.isfinite(seconds) or seconds < 0):
            raise CountsTableError(f"counts row field 'seconds' must be a number ≥ 0, got {seconds!r}")
        counts = data.get("counts") or {}
        if not isinstance(counts, dict) or not all(_is_class_count(k, v) for k, v in counts.items()):
            raise CountsTableError("counts row field 'counts' must map class names (not a fixed column's name) "
                                   f"to whole numbers ≥ 0, got {counts!r}")
        return cls(**text, seconds=None if seconds is None else float(seconds), counts=dict(counts))

    def to_json(self) -> dict[str, Any]:
        """The row as JSON (the fields of `from_json`)."""
        return {"project": self.project, "image": self.image, "image_id": self.image_id, "status": self.status,
                "model": self.model, "signature": self.signature, "seconds": self.seconds, "error": self.error,
                "counts": dict(self.counts)}

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
            with path.open(newline="", encoding="utf-8-sig") as handle:  # a byte-order mark (Excel) is skipped
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
    """A counts table that cannot be read as one, or a row that cannot be one."""


class SharedCountsTable:
    """The counts table on disk, shared by everything writing into it (batches into the same folder, the
    QuPath scripts through the server): every change is read, merged and written under a file lock, so
    concurrent writers keep each other's rows."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from filelock import FileLock

        self.path = Path(path)
        self._lock = FileLock(str(self.path.with_name(f".{self.path.name}.lock")))

    def check(self) -> None:
        """Read the table once (raises a clear error when it is not a counts table)."""
        with self._lock:
            CountsTable.read(self.path)

    def put(self, rows: list[CountsRow]) -> None:
        """Add or replace these rows in the file."""
        with self._lock:
            table = CountsTable.read(self.path)
            for row in rows:
                table.put(row)
            table.write(self.path)

    def arrange(self, keys: list[tuple[str, str]]) -> None:
        """Put the rows of `keys` in that order in the file (other batches' rows first, as they were)."""
        with self._lock:
            table = CountsTable.read(self.path)
            table.arrange(keys)
            table.write(self.path)


def _is_class_count(name: object, count: object) -> bool:
    return isinstance(name, str) and bool(name) and name not in FIXED_COLUMNS and isinstance(count, int) \
        and not isinstance(count, bool) and count >= 0


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
