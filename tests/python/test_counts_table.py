"""The counts table (docs/protocol.md, "The counts table") against the fixture shared with the Java tests:
tests/fixtures/counts-table/counts.csv and the rows it holds, rows.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cellbridge.batch.counts import CountsRow, CountsTable, CountsTableError
from cellbridge.server.service import CellBridgeService

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "counts-table"


def fixture_rows() -> list[dict]:
    return json.loads((FIXTURE / "rows.json").read_text(encoding="utf-8"))


def test_the_fixture_reads_as_its_rows() -> None:
    table = CountsTable.read(FIXTURE / "counts.csv")
    assert [row.to_json() for row in table.rows] == fixture_rows()
    assert table.classes == ["Immune cells", "Nucleus", "Nucleus: 1+", "Nucleus: Negative", "Tumor"]


def test_writing_the_rows_gives_the_fixture_byte_for_byte(tmp_path: Path) -> None:
    CountsTable(CountsRow.from_json(row) for row in fixture_rows()).write(tmp_path / "counts.csv")
    assert (tmp_path / "counts.csv").read_bytes() == (FIXTURE / "counts.csv").read_bytes()


def test_a_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + (FIXTURE / "counts.csv").read_bytes())
    assert [row.to_json() for row in CountsTable.read(tmp_path / "excel.csv").rows] == fixture_rows()


def test_the_server_puts_rows_into_the_table_under_its_lock(tmp_path: Path) -> None:
    service = CellBridgeService(device="cpu")
    csv = tmp_path / "new folder" / "counts.csv"
    for row in fixture_rows():
        assert json.loads(service.putCountsRow(str(csv), json.dumps(row))) == {"ok": True, "value": True}
    assert csv.read_bytes() == (FIXTURE / "counts.csv").read_bytes()
    # the same image again replaces its row
    again = {**fixture_rows()[0], "status": "skipped"}
    service.putCountsRow(str(csv), json.dumps(again))
    assert CountsTable.read(csv).rows[0].status == "skipped" and len(CountsTable.read(csv).rows) == 6


@pytest.mark.parametrize("change, message", [
    ({"status": "finished"}, "status must be one of done, skipped, failed"),
    ({"counts": {"Tumor": -1}}, "whole numbers ≥ 0"),
    ({"counts": {"objects": 3}}, "not a fixed column's name"),
    ({"seconds": "fast"}, "'seconds' must be a number"),
    ({"image": 7}, "'image' must be text"),
    ({"colour": "red"}, "unknown counts row field(s): colour"),
])
def test_a_bad_row_is_one_clear_error_and_the_table_is_untouched(tmp_path: Path, change: dict,
                                                                  message: str) -> None:
    service = CellBridgeService(device="cpu")
    csv = tmp_path / "counts.csv"
    csv.write_bytes((FIXTURE / "counts.csv").read_bytes())
    reply = json.loads(service.putCountsRow(str(csv), json.dumps({**fixture_rows()[0], **change})))
    assert not reply["ok"] and message in reply["error"]
    assert csv.read_bytes() == (FIXTURE / "counts.csv").read_bytes()


def test_a_file_that_is_not_a_counts_table_is_refused_not_overwritten(tmp_path: Path) -> None:
    other = tmp_path / "results.csv"
    other.write_text("sample,score\na,1\n", encoding="utf-8")
    reply = json.loads(CellBridgeService(device="cpu").putCountsRow(str(other), json.dumps(fixture_rows()[0])))
    assert not reply["ok"] and "not a counts table (no column project" in reply["error"]
    assert other.read_text(encoding="utf-8") == "sample,score\na,1\n"
    with pytest.raises(CountsTableError, match="must be a JSON object"):
        CountsRow.from_json([1, 2])
