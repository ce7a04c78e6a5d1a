"""The shared fixture tests/fixtures/qupath_geojson/cellbridge_written.geojson is exactly what CellBridge's writer
(`cellbridge.io.qupath_geojson.write_objects`, used by the server's result chunks and every command's output) makes
of a known set of objects: a cell with its nucleus and a derived, coloured class; detections with a hole, with two
parts, as a centre point; a class without a colour; NaN and infinite measurements. The Java side reads the same file
with the bridge's reader (`GeoJsonObjectsTest`) and, inside QuPath, with QuPath's own reader (`ResultObjectsTest`),
so a change of the written format fails here first.

Regenerate after a deliberate change of the format:
    PYTHONPATH=python python tests/python/test_cellbridge_written_fixture.py
"""

from __future__ import annotations

import math
from pathlib import Path

from shapely.geometry import MultiPolygon, Point, Polygon, box

from cellbridge.io.qupath_geojson import read_objects, write_objects
from cellbridge.objects import PathClass, PathObject

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "qupath_geojson" / "cellbridge_written.geojson"


def fixture_objects() -> list[PathObject]:
    """The objects in the fixture (fixed ids, so the file is the same at every run)."""
    return [
        PathObject(box(10, 10, 30, 20), "cell", PathClass(("Tumor", "Positive"), (200, 0, 10)),
                   {"Nucleus: Area µm^2": 6.0, "Nucleus: DAB OD mean": math.nan, "Cell: Max": math.inf},
                   nucleus_geometry=box(12, 12, 18, 16), id="4f0b4bb4-60f6-4c36-9ad6-3b1a4a4e4b1e"),
        PathObject(Polygon([(40, 40), (60, 40), (60, 60), (40, 60)], [[(45, 45), (50, 45), (50, 50), (45, 50)]]),
                   "detection", PathClass.of("Stroma"), {"Area": 375.0, "Min": -math.inf},
                   id="0d9c7a52-3f7e-4a38-b2a5-6f1d0c2e8b11"),
        PathObject(MultiPolygon([box(100, 100, 104, 104), box(110, 100, 112.5, 101)]), "detection",
                   id="7a3e2f90-1c55-4b6e-9d2a-08e4f1b3c6d7"),
        PathObject(Point(7.25, 3.5), "detection", PathClass.of("Lymphocyte", (0, 0, 255)), {"Score": 0.875},
                   id="c2b8e6a4-95d1-4f0e-a7c3-5e9b2d4f6a80"),
    ]


def test_the_fixture_is_what_the_writer_writes(tmp_path):
    written = tmp_path / "written.geojson"
    write_objects(fixture_objects(), written)
    assert written.read_text(encoding="utf-8") == FIXTURE.read_text(encoding="utf-8"), (
        f"CellBridge's GeoJSON changed: check the Java readers, then regenerate {FIXTURE.name} (see the docstring)")


def test_the_fixture_reads_back_as_written():
    read = read_objects(FIXTURE)
    expected = fixture_objects()
    assert [o.id for o in read] == [o.id for o in expected]
    assert [o.class_name for o in read] == ["Tumor: Positive", "Stroma", None, "Lymphocyte"]
    assert read[0].nucleus_geometry.equals(expected[0].nucleus_geometry)
    assert math.isnan(read[0].measurements["Nucleus: DAB OD mean"])
    assert read[1].geometry.area == 375.0


if __name__ == "__main__":
    write_objects(fixture_objects(), FIXTURE)
    print(FIXTURE)
