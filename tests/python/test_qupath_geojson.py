"""Tests for `cellbridge.io.qupath_geojson`: QuPath GeoJSON read and written exactly as QuPath v0.6.0 does.

Fixtures in tests/fixtures/qupath_geojson/ (CI has no QuPath, so QuPath's behaviour is frozen in these files):

- qupath_written_annotations.geojson, qupath_written_detections.geojson: written by QuPath itself.
  Small hand-written inputs (annotation polygon with a hole, multipolygon, Point and MultiPoint point
  annotations, a line, a rectangle with measurements; detections with NaN/±Infinity measurements, cells with
  and without nucleusGeometry, derived classes as a names list and as a plain "Stroma: Negative" string,
  a tile, a tmaCore, names, colours, isLocked, metadata) were read and written back with
  `/work/shared/tools/qupath-geojson/check.sh IN OUT`, i.e. qupath-core 0.6.0 `PathIO.readObjects` then
  `PathIO.exportObjectsAsGeoJSON(OUT, objects, FEATURE_COLLECTION)`. Only QuPath's output is kept.
- qupath_written_hierarchy.geojson: a parent annotation with nested `childObjects` (annotation > cell,
  detection) and a sibling. check.sh only writes flat lists, so this was written by QuPath's hierarchy
  writer through a 10-line Java harness compiled against the same qupath-core:
  `GsonTools.getInstance().toJson(FeatureCollection.wrap(PathIO.readObjects(IN), true))`.
- handwritten_legacy.geojson: hand-written variants QuPath accepts (a plain list holding a bare geometry and a
  nested FeatureCollection; `object_type` and `type` aliases, a legacy type name as id, `tma_core`,
  `children`, the pre-v0.4 measurement list and classification forms, packed int colour, string measurement
  values, 3D coordinates, a non-UUID and an upper-case UUID id, unknown objectType, RGBA class colour).
  qupath_written_legacy.geojson is what QuPath made of it, written by the same hierarchy harness.
  check.sh on it: "QuPath read 10 objects {PathAnnotationObject=5, PathCellObject=1, PathDetectionObject=2,
  PathTileObject=1, TMACoreObject=1} ...; with measurements 2 (10 values); cells with nucleus 1".

Our writer was checked with check.sh during development. Our re-export of the annotations and detections
fixtures is read by QuPath with the same counts, types, classes, measurement counts and nuclei as QuPath's own
file, and QuPath's re-export of our file equals (parsed JSON) its re-export of its own file. Our re-export of
the hierarchy fixture is flat: QuPath reads all 5 objects (annotations 3, cell 1 with nucleus, detection 1).
305 random objects of every type (unicode names, colourless classes, NaN/±inf, empty geometries, 3D, a
GeometryCollection) were read by QuPath with identical counts, types and classes; after QuPath's round trip
only what QuPath itself changes differed (0.01 px grid, float32 measurements, one colour per class name,
TMA cores as ellipses).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import uuid
import warnings
import zipfile
from pathlib import Path

import pytest
from cellbridge.errors import GeoJSONError
from cellbridge.io.qupath_geojson import (
    GeoJSONWriter,
    feature_to_object,
    object_to_feature,
    objects_to_json,
    parse_objects,
    read_objects,
    write_objects,
)
from cellbridge.objects import OBJECT_TYPES, PathClass, PathObject
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import GeometryCollection, LineString, MultiPoint, MultiPolygon, Point, Polygon, box

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "qupath_geojson"
QUPATH_WRITTEN = ["annotations", "detections", "hierarchy"]
NAN, INF = math.nan, math.inf


# -------------------- helpers


def fixture(name: str) -> Path:
    return FIXTURES / name


def same_measurements(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal names in the same order and equal values, NaN equal to NaN."""
    return list(a) == list(b) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a.values(), b.values(), strict=True)
    )


def assert_same_objects(ours: list[PathObject], expected: list[PathObject]) -> None:
    assert len(ours) == len(expected)
    for a, b in zip(ours, expected, strict=True):
        assert (a.id, a.object_type, a.path_class, a.name, a.color, a.locked, a.metadata) == (
            b.id,
            b.object_type,
            b.path_class,
            b.name,
            b.color,
            b.locked,
            b.metadata,
        )
        assert a.geometry.geom_type == b.geometry.geom_type and a.geometry.equals_exact(b.geometry, 0), a.id
        assert (a.nucleus_geometry is None) == (b.nucleus_geometry is None)
        if a.nucleus_geometry is not None:
            assert a.nucleus_geometry.equals_exact(b.nucleus_geometry, 0)
        assert same_measurements(a.measurements, b.measurements), (a.measurements, b.measurements)


def assert_same_json(ours: object, theirs: object, where: str = "$") -> None:
    """Same keys in the same order, same values; numbers compared numerically (QuPath writes 3.0 and 3)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), f"{where}: {ours!r} vs {theirs!r}"
        for key in theirs:
            assert_same_json(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{where}: {ours!r} vs {theirs!r}"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same_json(a, b, f"{where}[{i}]")
    elif isinstance(theirs, (int, float)) and not isinstance(theirs, bool):
        assert isinstance(ours, (int, float)) and not isinstance(ours, bool) and ours == theirs, (
            f"{where}: {ours!r} vs {theirs!r}"
        )
    else:
        assert ours == theirs, f"{where}: {ours!r} vs {theirs!r}"


def flatten_qupath_features(features: list[dict]) -> list[dict]:
    """QuPath's nested childObjects as the flat list we write: parent first, document order."""
    flat = []
    for feature in features:
        props = dict(feature["properties"])
        children = props.pop("childObjects", [])
        flat.append({**feature, "properties": props})
        flat.extend(flatten_qupath_features(children))
    return flat


def cell(x: float = 10, y: float = 10, **kwargs) -> PathObject:
    return PathObject(Point(x, y).buffer(5), "cell", nucleus_geometry=Point(x, y).buffer(2), **kwargs)


# -------------------- QuPath-written fixtures


def test_reads_qupath_written_annotations() -> None:
    objs = read_objects(fixture("qupath_written_annotations.geojson"))
    assert [o.id[:8] for o in objs] == [
        "11111111",
        "22222222",
        "33333333",
        "44444444",
        "55555555",
        "66666666",
    ]
    assert {o.object_type for o in objs} == {"annotation"}

    tissue, multi, point, points, line, rect = objs
    assert tissue.geometry.geom_type == "Polygon" and len(tissue.geometry.interiors) == 1
    assert Polygon(tissue.geometry.interiors[0]).area == 3000  # the 50 x 60 hole
    assert tissue.geometry.area == 85800
    assert (tissue.name, tissue.color, tissue.locked) == ("Tissue with hole", (255, 128, 0), True)
    assert tissue.path_class == PathClass(("Tumor",), (200, 0, 0))
    assert tissue.metadata == {"source": "hand", "reviewer": "AB"}

    assert multi.geometry.geom_type == "MultiPolygon" and len(multi.geometry.geoms) == 2
    assert multi.geometry.area == pytest.approx(17018.845)
    assert multi.geometry.bounds[3] == 790.13  # QuPath wrote 790.125 with 2 decimals
    assert (
        multi.path_class == PathClass(("Stroma", "Positive"), (10, 200, 30))
        and multi.class_name == "Stroma: Positive"
    )
    assert not multi.locked and multi.name is None and multi.color is None

    assert point.geometry.equals(Point(1234.5, 987.25)) and point.geometry.geom_type == "Point"
    assert point.path_class == PathClass(("Immune cells",), (80, 78, 167))  # colour chosen by QuPath
    assert points.geometry.geom_type == "MultiPoint" and len(points.geometry.geoms) == 3
    assert points.path_class == PathClass(("Other",), (255, 200, 0))
    assert line.geometry.geom_type == "LineString" and len(line.geometry.coords) == 3
    assert (line.name, line.color, line.path_class) == ("a line", (0, 0, 255), None)
    assert rect.measurements == {"Area px": 20000.0, "Score": 0.75}
    assert all(not o.measurements for o in objs[:5])


def test_reads_qupath_written_detections() -> None:
    objs = read_objects(fixture("qupath_written_detections.geojson"))
    assert [o.object_type for o in objs] == [
        "detection",
        "cell",
        "cell",
        "cell",
        "tile",
        "tmaCore",
        "detection",
    ]
    assert [o.id for o in objs] == [f"aaaaaaaa-0000-4000-8000-00000000000{i}" for i in range(1, 8)]
    det, cell1, cell2, bare_cell, tile, core, locked = objs

    assert det.path_class == PathClass(("Tumor",), (200, 0, 0))
    assert same_measurements(
        det.measurements,
        {
            "Area": 160.5,
            "Circularity": 0.8125,
            "Hematoxylin OD mean": NAN,
            "Ratio": INF,
            "Delta": -INF,
            "Count": 3.0,
        },
    )
    assert det.geometry.area == 138 and det.nucleus_geometry is None

    assert cell1.path_class == PathClass(("Tumor", "Positive"), (255, 100, 100))
    assert cell1.geometry.area == 997.5 and cell1.nucleus_geometry.area == 188
    assert cell1.measurements == {"Nucleus: Area": 112.0, "Cell: Area": 650.25, "DAB mean": 0.3125}
    assert cell2.path_class == PathClass(
        ("Stroma", "Negative"), (152, 178, 28)
    )  # written as a string; QuPath's colour
    assert cell2.nucleus_geometry.area == 100 and math.isnan(cell2.measurements["Nucleus: Eosin OD"])
    assert bare_cell.nucleus_geometry is None and bare_cell.name == "cell without nucleus"

    assert (
        tile.geometry.area == 512 * 512
        and tile.measurements == {"Tissue fraction": 0.5}
        and tile.name == "Tile 1"
    )
    assert core.name == "A-1" and core.metadata == {"Patient": "P01"}
    assert len(core.geometry.exterior.coords) == 101 and core.geometry.bounds == (
        1000,
        1000,
        1400,
        1400,
    )  # an ellipse
    assert (locked.color, locked.locked, locked.path_class) == ((12, 34, 56), True, None)
    assert locked.geometry.bounds[0] == 40.13


def test_reads_qupath_written_hierarchy_flattened_parent_first() -> None:
    objs = read_objects(fixture("qupath_written_hierarchy.geojson"))
    assert [o.id[-1] for o in objs] == ["1", "2", "3", "4", "5"]
    assert [o.object_type for o in objs] == ["annotation", "annotation", "cell", "detection", "annotation"]
    assert [o.name for o in objs] == ["Parent", "Child", None, None, "Sibling"]
    assert objs[0].path_class == PathClass(("Region*",), (0, 0, 180))
    assert objs[2].nucleus_geometry.area == 18 and objs[2].measurements == {"Nucleus: Area": 18.0}
    # feature_to_object reads the parent alone
    data = json.loads(fixture("qupath_written_hierarchy.geojson").read_text())
    assert feature_to_object(data["features"][0]).id == objs[0].id


def test_legacy_variants_read_as_qupath_reads_them() -> None:
    ours = read_objects(fixture("handwritten_legacy.geojson"))
    qupath = read_objects(fixture("qupath_written_legacy.geojson"))
    assert len(ours) == len(qupath) == 11
    for a, b in zip(ours, qupath, strict=True):
        assert a.object_type == b.object_type
        assert a.class_name == b.class_name
        assert (a.name, a.locked, a.metadata) == (b.name, b.locked, b.metadata)
        assert same_measurements(a.measurements, b.measurements)
        assert a.geometry.geom_type == b.geometry.geom_type
        if a.object_type == "tmaCore":  # QuPath turns a core into the ellipse inside its bounds
            assert a.geometry.bounds == b.geometry.bounds
        else:
            assert a.geometry.normalize().equals_exact(b.geometry.normalize(), 0)
        assert (a.nucleus_geometry is None) == (b.nucleus_geometry is None)
        if a.id.startswith("cccccccc"):
            assert a.id == b.id  # kept (and lower-cased) when a UUID
    assert [o.object_type for o in ours] == [
        "detection",
        "cell",
        "tile",
        "tmaCore",
        "annotation",
        "annotation",
        "detection",
        "annotation",
        "detection",
        "annotation",
        "annotation",
    ]
    assert ours[0].color == (0, 255, 0) and ours[0].path_class == PathClass(
        ("Tumor",)
    )  # packed int; string class
    assert ours[1].id == "cccccccc-0000-4000-8000-00000000000a"
    assert same_measurements(
        ours[1].measurements, {"a": NAN, "b": INF, "c": -INF, "d": INF, "e": NAN, "f": 2.5, "g": 1000.0}
    )
    assert ours[4].geometry.equals(Point(5.5, 6.25)) and not ours[4].geometry.has_z
    assert uuid.UUID(ours[6].id) and ours[6].path_class == PathClass(("Stroma", "Positive"), (255, 0, 0))
    assert ours[7].color is None and ours[7].metadata == {"n": "3", "ok": "true", "s": "text"}
    assert ours[8].path_class == PathClass(("Immune cells", "Negative"), (10, 20, 30))  # RGBA: alpha dropped


@pytest.mark.parametrize("name", QUPATH_WRITTEN)
def test_round_trip_equals_and_matches_qupath_json(name: str, tmp_path: Path) -> None:
    path = fixture(f"qupath_written_{name}.geojson")
    objs = read_objects(path)
    out = tmp_path / "ours.geojson"
    assert write_objects(objs, out) == len(objs)
    assert_same_objects(read_objects(out), objs)

    theirs = flatten_qupath_features(json.loads(path.read_text())["features"])
    for (
        feature
    ) in theirs:  # known difference: an ellipse ROI becomes a plain polygon (PathObject has no flag)
        feature["geometry"].pop("isEllipse", None)
    ours = json.loads(out.read_text())
    assert list(ours) == ["type", "features"] and ours["type"] == "FeatureCollection"
    assert_same_json(ours["features"], theirs)


def test_structural_check_can_fail() -> None:
    with pytest.raises(AssertionError):
        assert_same_json({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1})
    with pytest.raises(AssertionError):
        assert_same_json({"a": [1, 2.5]}, {"a": [1, 2.25]})


# -------------------- input variants


POLY = {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 3], [0, 0]]]}
FEATURE = {"type": "Feature", "geometry": POLY, "properties": {"objectType": "detection"}}


@pytest.mark.parametrize(
    "data",
    [
        {"type": "FeatureCollection", "features": [FEATURE, FEATURE]},
        [FEATURE, FEATURE],
        [[FEATURE], {"type": "FeatureCollection", "features": [FEATURE]}],
    ],
)
def test_collection_forms(data: object) -> None:
    objs = read_objects(data)
    assert [o.object_type for o in objs] == ["detection", "detection"]
    assert objs[0].geometry.area == 6 and objs[0].id != objs[1].id


def test_single_feature_text_and_paths(tmp_path: Path) -> None:
    assert [o.object_type for o in read_objects(FEATURE)] == ["detection"]
    assert [o.object_type for o in parse_objects(json.dumps(FEATURE))] == ["detection"]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(FEATURE))
    assert len(read_objects(path)) == len(read_objects(str(path))) == 1
    assert read_objects({"type": "FeatureCollection"}) == []


def test_compressed_files_as_qupath_exports_them(tmp_path: Path) -> None:
    source = fixture("qupath_written_detections.geojson")
    expected = read_objects(source)
    with zipfile.ZipFile(tmp_path / "cells.zip", "w") as archive:  # QuPath's "compress" export
        archive.writestr("cells.geojson", source.read_text())
        archive.writestr("readme.txt", "not objects")
    assert_same_objects(read_objects(tmp_path / "cells.zip"), expected)
    (tmp_path / "cells.geojson.gz").write_bytes(gzip.compress(source.read_bytes()))
    assert_same_objects(read_objects(tmp_path / "cells.geojson.gz"), expected)
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(GeoJSONError, match=r"broken\.zip: cannot read"):
        read_objects(tmp_path / "broken.zip")


def test_bare_geometry_is_an_annotation() -> None:
    (obj,) = read_objects(POLY)
    assert obj.object_type == "annotation" and obj.geometry.area == 6


def test_defaults_and_simple_forms() -> None:
    (obj,) = read_objects(
        {
            "type": "Feature",
            "id": "not-a-uuid",
            "geometry": POLY,
            "properties": {
                "classification": "Tumor: Positive",
                "measurements": [{"name": "Area", "value": 6}, {"name": "Mean", "value": "NaN"}],
            },
        }
    )
    assert obj.object_type == "annotation"  # missing objectType
    assert obj.path_class == PathClass(("Tumor", "Positive")) and obj.path_class.color is None
    assert same_measurements(obj.measurements, {"Area": 6.0, "Mean": NAN})
    assert str(uuid.UUID(obj.id)) == obj.id  # a new id replaces an invalid one
    (obj,) = read_objects({"type": "Feature", "geometry": POLY})  # no properties at all
    assert (obj.object_type, obj.path_class, obj.measurements, obj.locked) == ("annotation", None, {}, False)


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"object_type": "cell"}, "cell"),
        ({"type": "tile"}, "tile"),
        ({"objectType": "tma_core"}, "tmaCore"),
        ({"objectType": "PathDetectionObject"}, "detection"),
        ({"objectType": "detection", "type": "cell"}, "detection"),
    ],
)
def test_object_type_aliases(props: dict, expected: str) -> None:
    assert feature_to_object({"geometry": POLY, "properties": props}).object_type == expected


def test_legacy_type_in_id() -> None:
    obj = feature_to_object({"id": "PathCellObject", "geometry": POLY})
    assert obj.object_type == "cell" and obj.id != "PathCellObject"


def test_unknown_object_type_is_an_annotation_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cellbridge.io.qupath_geojson"):
        objs = parse_objects(
            json.dumps([FEATURE, {"geometry": POLY, "properties": {"objectType": "blob"}}]), "x.geojson"
        )
    assert objs[1].object_type == "annotation"
    assert "x.geojson: feature 1: unknown objectType 'blob'" in caplog.text


def test_root_object_contributes_only_its_children() -> None:
    root = {
        "type": "Feature",
        "geometry": {},
        "properties": {"objectType": "root", "childObjects": [FEATURE, FEATURE]},
    }
    assert [o.object_type for o in read_objects([root])] == ["detection", "detection"]


def test_nucleus_only_kept_for_cells() -> None:
    nucleus = {"type": "Polygon", "coordinates": [[[1, 0.5], [2, 0.5], [2, 1], [1, 0.5]]]}
    assert feature_to_object({**FEATURE, "nucleusGeometry": nucleus}).nucleus_geometry is None
    obj = feature_to_object(
        {"geometry": POLY, "nucleusGeometry": nucleus, "properties": {"objectType": "cell"}}
    )
    assert obj.nucleus_geometry.area == 0.25


def test_measurement_values_qupath_skips(caplog: pytest.LogCaptureFixture) -> None:
    obj = feature_to_object(
        {"geometry": POLY, "properties": {"measurements": {"a": True, "b": None, "c": "-inf", "d": 1}}}
    )
    assert obj.measurements == {"c": -INF, "d": 1.0}
    assert "'a' = True is not a number; skipped" in caplog.text


def test_z_is_dropped_as_qupath_rois_are_2d() -> None:
    line = feature_to_object(
        {"geometry": {"type": "LineString", "coordinates": [[1, 2, 3], [4, 5, 6]]}}
    ).geometry
    assert not line.has_z and list(line.coords) == [(1, 2), (4, 5)]
    mixed = feature_to_object(
        {"geometry": {"type": "MultiPoint", "coordinates": [[1, 2, 3], [4, 5]]}}
    ).geometry
    assert not mixed.has_z and mixed.equals(MultiPoint([(1, 2), (4, 5)]))


def test_class_string_split_as_java_does() -> None:
    # PathClass.fromString splits on ':' with Java's String.split, which drops a trailing empty part
    obj = feature_to_object({"geometry": POLY, "properties": {"classification": " Tumor :Positive:"}})
    assert obj.path_class == PathClass(("Tumor", "Positive"))


def test_geometry_collection_keeps_its_polygons() -> None:
    gc = {
        "type": "GeometryCollection",
        "geometries": [
            {"type": "Point", "coordinates": [1, 1]},
            POLY,
            {**POLY, "coordinates": [[[10, 10], [11, 10], [11, 11], [10, 10]]]},
        ],
    }
    obj = feature_to_object({"geometry": gc})
    assert obj.geometry.geom_type == "MultiPolygon" and obj.geometry.area == 6.5


def test_zero_area_polygon_is_empty_as_in_qupath() -> None:
    # QuPath writes an empty ROI as five [0, 0] points; reading that back gives an empty polygon again
    empty = {"type": "Polygon", "coordinates": [[[0, 0]] * 5]}
    assert feature_to_object({"geometry": empty}).geometry.is_empty


# -------------------- errors


PT = {"type": "Point", "coordinates": [0, 0]}


def geometry_text(geometry: object, second: bool = False) -> str:
    """A feature list whose feature 0 (or 1, after a good one) has this geometry."""
    return json.dumps([{"geometry": PT}] * second + [{"geometry": geometry}])


def props_text(**props: object) -> str:
    return json.dumps([{"geometry": PT, "properties": props}])


def ring(*xy: int) -> list[list[int]]:
    return [list(xy[i : i + 2]) for i in range(0, len(xy), 2)]


ERRORS = [
    # (text, substrings the message must contain)
    (
        '{"type": "FeatureCollection", "features": [,]}',
        ["cells.geojson: not valid JSON", "line 1, column 44"],
    ),
    ("5", ["cells.geojson: expected a GeoJSON FeatureCollection, Feature or list of features, not a number"]),
    ('{"foo": 1}', ["expected a GeoJSON FeatureCollection", "not an object"]),
    ('{"type": "FeatureCollection", "features": {}}', ["'features' must be a list"]),
    (
        '{"type": "FeatureCollection", "features": [5]}',
        ["cells.geojson: feature 0: a feature must be a JSON object"],
    ),
    ('[{"type": "Feature", "properties": {}}]', ["cells.geojson: feature 0: missing geometry"]),
    (geometry_text(None), ["feature 0: geometry: must be a GeoJSON geometry object, not null"]),
    (
        geometry_text({"type": "Circle", "coordinates": [1, 2]}),
        ["feature 0: geometry: unknown geometry type 'Circle'"],
    ),
    (geometry_text({"type": "Polygon"}), ["feature 0: geometry: Polygon has no coordinates"]),
    (
        geometry_text({"type": "Polygon", "coordinates": [ring(0, 0, 1, 1)]}, second=True),
        ["cells.geojson: feature 1: geometry: Polygon ring 0 has 2 points"],
    ),
    (
        geometry_text({"type": "Polygon", "coordinates": [ring(0, 0, 1, 0, 1, 1, 0, 1)]}),
        ["ring 0 is not closed"],
    ),
    (
        geometry_text({"type": "MultiPolygon", "coordinates": [[ring(0, 0, 1, 0, 0, 0)]]}),
        ["MultiPolygon part 0 ring 0 has 3 points"],
    ),
    (geometry_text({"type": "LineString", "coordinates": [[0, 0]]}), ["LineString has 1 point"]),
    (
        geometry_text({"type": "Point", "coordinates": ["1", "2"]}),
        ["feature 0: geometry.coordinates: coordinate '1' is not a number"],
    ),
    (
        geometry_text({"type": "LineString", "coordinates": [[0, 0], [math.nan, 1]]}),
        ["feature 0: geometry.coordinates[1]: coordinate nan is not finite"],
    ),
    (
        geometry_text({"type": "LineString", "coordinates": [[0, 0], [1]]}),
        ["coordinates[1]: a position must be [x, y]"],
    ),
    (geometry_text({"type": "Polygon", "coordinates": [5]}), ["geometry.coordinates[0]: must be a list"]),
    (json.dumps([{"geometry": PT, "properties": 5}]), ["properties must be a JSON object"]),
    (
        props_text(classification={"name": "A", "color": [1, 2]}),
        ["feature 0: properties.classification.color must be [r, g, b]"],
    ),
    (
        props_text(classification={"name": "A", "color": [0, 0, 300]}),
        ["properties.classification.color must be [r, g, b] with integers 0-255"],
    ),
    (props_text(classification={"name": "A", "color": "red"}), ["properties.classification.color must be"]),
    (
        props_text(classification={"names": ["A:B", "C"], "color": [1, 2, 3]}),
        ["class name 'A:B' contains ':'"],
    ),
    (props_text(classification="A: "), ["properties.classification: class name parts cannot be blank"]),
    (props_text(classification=7), ["properties.classification must be a string or an object"]),
    (props_text(color="red"), ["properties.color must be [r, g, b]"]),
    (
        props_text(measurements={"Area": "abc"}),
        ["feature 0: properties.measurements: 'Area': 'abc' is not a number"],
    ),
    (
        props_text(measurements=[{"name": "Area"}]),
        ['properties.measurements[0] must be {"name": ..., "value": number}'],
    ),
    (props_text(objectType=["cell"]), ["properties.objectType must be a string"]),
    (
        json.dumps(
            [
                {
                    "geometry": PT,
                    "nucleusGeometry": {"type": "Polygon", "coordinates": [[]]},
                    "properties": {"objectType": "cell"},
                }
            ]
        ),
        ["feature 0: nucleusGeometry: Polygon ring 0 has 0 points"],
    ),
    (
        props_text(childObjects=[{"geometry": PT}, {"geometry": {"type": "Point", "coordinates": [0]}}]),
        ["feature 0: properties.childObjects[1]: geometry.coordinates: a position must be [x, y]"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS)
def test_bad_geojson_gives_one_clear_error(text: str, expected: list[str]) -> None:
    with pytest.raises(GeoJSONError) as info:
        parse_objects(text, origin="cells.geojson")
    message = str(info.value)
    assert message.startswith("cells.geojson: ")
    for part in expected:
        assert part in message


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "cells.geojson"
    bad.write_text('{"type": "FeatureCollection",\n "features": [}')
    with pytest.raises(GeoJSONError, match=r"cells\.geojson: not valid JSON: .* line 2, column 15"):
        read_objects(bad)
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(GeoJSONError, match=r"cells\.geojson: not UTF-8 text"):
        read_objects(bad)
    with pytest.raises(GeoJSONError, match=r"missing\.geojson: cannot read"):
        read_objects(tmp_path / "missing.geojson")
    bad.write_text(
        json.dumps([FEATURE, {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}}])
    )
    with pytest.raises(
        GeoJSONError, match=r"cells\.geojson: feature 1: geometry: Polygon ring 0 has 2 points"
    ):
        read_objects(str(bad))


def test_feature_to_object_errors_name_the_index() -> None:
    with pytest.raises(GeoJSONError, match=r"^feature 7: missing geometry$"):
        feature_to_object({"properties": {}}, 7)
    with pytest.raises(GeoJSONError, match=r"^feature 3: a feature must be a JSON object, not a list$"):
        feature_to_object([], 3)  # type: ignore[arg-type]


# -------------------- writing


def test_feature_layout_matches_qupath() -> None:
    obj = PathObject(
        box(0, 0, 10.5, 20),
        "cell",
        PathClass.of("Tumor: Positive", (200, 0, 0)),
        {"Area": 210.0, "Mean": NAN, "Max": INF, "Min": -INF},
        box(2, 2, 4, 4),
        name="c1",
        color=(1, 2, 3),
        locked=True,
        metadata={"k": "v"},
    )
    feature = object_to_feature(obj)
    assert list(feature) == ["type", "id", "geometry", "nucleusGeometry", "properties"]
    assert feature["id"] == obj.id
    assert list(feature["properties"]) == [
        "objectType",
        "name",
        "color",
        "classification",
        "isLocked",
        "measurements",
        "metadata",
    ]
    assert feature["properties"]["classification"] == {"names": ["Tumor", "Positive"], "color": [200, 0, 0]}
    assert feature["properties"]["measurements"] == {
        "Area": 210.0,
        "Mean": "NaN",
        "Max": "Infinity",
        "Min": "-Infinity",
    }
    ring = feature["nucleusGeometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and all(type(v) is int for xy in ring for v in xy)  # closed; integral -> ints
    assert feature["geometry"]["coordinates"][0][0] == [10.5, 0]
    assert object_to_feature(PathObject(Point(1, 2), "tmaCore"))["properties"] == {
        "objectType": "tmaCore",
        "isMissing": False,
    }


def test_class_without_colour_is_written_as_qupath_string() -> None:
    feature = object_to_feature(PathObject(Point(1, 2), path_class=PathClass(("Tumor", "Positive"))))
    assert feature["properties"]["classification"] == "Tumor: Positive"


def test_full_precision_and_geometry_types_round_trip() -> None:
    objs = [
        PathObject(Point(0.1, 1 / 3).buffer(2.5)),
        PathObject(LineString([(0, 0), (1e-7, 12345.678901234)])),
        PathObject(MultiPoint([(1, 2), (3.25, 4)])),
        PathObject(MultiPolygon([box(0, 0, 1, 1), box(2, 2, 3, 3)])),
        PathObject(Polygon()),
        PathObject(Point(1.0, 2.0)),
    ]
    assert_same_objects(parse_objects(objects_to_json(objs)), objs)


def test_writer_normalises_what_qupath_cannot_read() -> None:
    mixed = GeometryCollection([box(0, 0, 1, 1), Point(5, 5), box(2, 2, 3, 3)])
    assert object_to_feature(PathObject(mixed))["geometry"]["type"] == "MultiPolygon"
    assert object_to_feature(PathObject(Point()))["geometry"] == {"type": "MultiPoint", "coordinates": []}
    assert object_to_feature(PathObject(Point(1, 2, 3)))["geometry"] == {
        "type": "Point",
        "coordinates": [1, 2],
    }
    (single,) = json.loads(objects_to_json([PathObject(mixed, "annotation")]))["features"]
    assert single["properties"] == {"objectType": "annotation"}


def nan_line() -> LineString:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # shapely warns when building it
        return LineString([(0, 0), (NAN, 1)])


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            PathObject(Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])),
            "geometry: invalid Polygon (Self-intersection",
        ),
        (PathObject(nan_line()), "geometry: LineString has NaN or infinite coordinates"),
        (PathObject(Point(1, 1), id="cell-1"), "id 'cell-1' is not a UUID"),
        (PathObject(Point(1, 1), measurements={"Area": "big"}), "measurement 'Area' must be a number"),
        (PathObject(Point(1, 1), path_class=PathClass(("A:B",))), "class name 'A:B'"),
        (PathObject(Point(1, 1), color=(0, 0, 256)), "color must be (r, g, b) with integers 0-255"),
        (PathObject(Point(1, 1), metadata={"k": 5}), "metadata 'k' must be a string"),
        (PathObject("POINT (1 1)"), "geometry: must be a shapely geometry, not str"),  # type: ignore[arg-type]
    ],
)
def test_unwritable_objects_give_one_clear_error(obj: PathObject, expected: str) -> None:
    with pytest.raises(GeoJSONError) as info:
        object_to_feature(obj)
    assert str(info.value).startswith(f"object {obj.id}: ") and expected in str(info.value)


def test_objects_to_json_is_one_feature_per_line() -> None:
    text = objects_to_json([cell(), cell(30, 30)])
    lines = text.splitlines()
    assert lines[0] == '{"type":"FeatureCollection","features":[' and lines[-1] == "]}" and len(lines) == 4
    assert objects_to_json([]) == '{"type":"FeatureCollection","features":[\n]}\n'
    assert json.loads(objects_to_json([])) == {"type": "FeatureCollection", "features": []}


# -------------------- atomic writing


def bad_object() -> PathObject:
    return PathObject(Polygon([(0, 0), (10, 10), (10, 0), (0, 10)]))


def test_write_objects_streams_and_counts(tmp_path: Path) -> None:
    target = tmp_path / "out.geojson"
    objs = (cell(i, i) for i in range(5))  # a generator: consumed one by one
    assert write_objects(objs, target) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["out.geojson"]
    assert len(read_objects(target)) == 5


def test_writer_renames_only_on_clean_exit(tmp_path: Path) -> None:
    target = tmp_path / "out.geojson"
    with GeoJSONWriter(target) as writer:
        writer.write(cell())
        writer.write_many([cell(20, 20), cell(40, 40)])
        assert (
            not target.exists() and len(list(tmp_path.iterdir())) == 1
        )  # a temporary file beside the target
        assert writer.count == 3
    assert [p.name for p in tmp_path.iterdir()] == ["out.geojson"] and len(read_objects(target)) == 3
    with pytest.raises(RuntimeError, match="not open"):
        writer.write(cell())


def test_failing_object_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.geojson"
    with pytest.raises(GeoJSONError, match=r"out\.geojson: object 2 \(id .*\): geometry: invalid Polygon"):
        write_objects([cell(), cell(20, 20), bad_object(), cell(30, 30)], target)
    assert list(tmp_path.iterdir()) == []


def test_failing_source_or_block_leaves_existing_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.geojson"
    target.write_text("previous result")

    def objects():
        yield cell()
        raise ValueError("model crashed")

    with pytest.raises(ValueError, match="model crashed"):
        write_objects(objects(), target)
    with pytest.raises(KeyboardInterrupt), GeoJSONWriter(target) as writer:
        writer.write(cell())
        raise KeyboardInterrupt
    with (
        pytest.raises(GeoJSONError, match="expected a PathObject, not dict"),
        GeoJSONWriter(target) as writer,
    ):
        writer.write(FEATURE)  # type: ignore[arg-type]
    assert target.read_text() == "previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.geojson"]


# -------------------- property test


coordinate = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
size = st.floats(min_value=3, max_value=500, allow_nan=False)


@st.composite
def geometries(draw: st.DrawFn):
    x, y, w, h = draw(coordinate), draw(coordinate), draw(size), draw(size)
    kind = draw(st.sampled_from(["box", "blob", "holed", "multi", "point", "points", "line"]))
    if kind == "box":
        return box(x, y, x + w, y + h)
    if kind == "blob":
        return Point(x, y).buffer(w, quad_segs=draw(st.integers(1, 8)))
    if kind == "holed":
        return box(x, y, x + w, y + h).difference(box(x + 1, y + 1, x + w - 1, y + h - 1))
    if kind == "multi":
        return MultiPolygon([box(x, y, x + w, y + h), box(x + w + 1, y, x + 2 * w + 1, y + h)])
    if kind == "point":
        return Point(x, y)
    if kind == "points":
        return MultiPoint([(x, y), (x + w, y + h)])
    return LineString([(x, y), (x + w, y), (x + w, y + h)])


class_part = (
    st.text(st.characters(blacklist_characters=":\n\r"), min_size=1, max_size=12).map(str.strip).filter(bool)
)
rgb = st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
any_float = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def path_objects(draw: st.DrawFn) -> PathObject:
    object_type = draw(st.sampled_from(OBJECT_TYPES))
    geometry = draw(geometries())
    nucleus = draw(st.none() | geometries()) if object_type == "cell" else None
    path_class = draw(
        st.none()
        | st.builds(PathClass, st.lists(class_part, min_size=1, max_size=3).map(tuple), st.none() | rgb)
    )
    return PathObject(
        geometry=geometry,
        object_type=object_type,
        path_class=path_class,
        measurements=draw(st.dictionaries(st.text(max_size=10), any_float, max_size=5)),
        nucleus_geometry=nucleus,
        name=draw(st.none() | st.text(max_size=10)),
        color=draw(st.none() | rgb),
        locked=draw(st.booleans()),
        metadata=draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
        id=str(draw(st.uuids())),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(path_objects(), max_size=4))
def test_random_objects_round_trip_exactly(objs: list[PathObject]) -> None:
    assert_same_objects(parse_objects(objects_to_json(objs)), objs)
