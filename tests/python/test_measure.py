"""Per-object measurements: QuPath's names, known answers on synthetic shapes, pixels of the right objects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from cellbridge.features.classifiers import ReferenceColourClassifier
from cellbridge.features.measure import (
    CHANNELS,
    intensity_name,
    measure_objects,
    od_from_rgb,
    shape_name,
)
from cellbridge.io.qupath_geojson import objects_to_json, parse_objects
from cellbridge.objects import PathObject
from shapely import affinity
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box
from skimage.color import rgb2hed

WHITE = (255, 255, 255)
PURPLE = (90, 50, 140)  # hematoxylin-like
PINK = (235, 160, 200)  # eosin-like


def white_tile(h: int = 64, w: int = 96) -> np.ndarray:
    return np.full((h, w, 3), 255, np.uint8)


def m(obj: PathObject, name: str) -> float:
    return obj.measurements[name]


# ------------------------------------------------------------------------------------------------ names


def test_names_follow_qupath_object_measurements():
    assert shape_name("Area", 0.25) == "Area µm^2"
    assert shape_name("Length", None) == "Length px"
    assert shape_name("Max diameter", 0.5, "Nucleus") == "Nucleus: Max diameter µm"
    assert shape_name("Circularity", 0.5, "Cell") == "Cell: Circularity"
    assert intensity_name("Red", "Std.Dev.") == "Red: Std.Dev."
    assert intensity_name("Hematoxylin", "Mean", "Nucleus") == "Nucleus: Hematoxylin: Mean"
    assert "\u00b5" in shape_name("Area", 1.0)  # QuPath's MICRO SIGN, not GREEK SMALL LETTER MU
    with pytest.raises(ValueError, match="unknown shape feature"):
        shape_name("Perimeter", None)


# ------------------------------------------------------------------------------------------------ shape


def test_rectangle_known_answers_in_pixels():
    tile = white_tile()
    tile[5:15, 10:30] = PURPLE
    rect = PathObject(box(10, 5, 30, 15))
    measure_objects([rect], tile, (0, 0), 1.0, None)
    assert m(rect, "Area px^2") == pytest.approx(200)
    assert m(rect, "Length px") == pytest.approx(60)
    assert m(rect, "Circularity") == pytest.approx(4 * math.pi * 200 / 60**2)
    assert m(rect, "Solidity") == pytest.approx(1)
    assert m(rect, "Max diameter px") == pytest.approx(math.sqrt(500))
    assert m(rect, "Min diameter px") == pytest.approx(10)
    for channel, value in zip(("Red", "Green", "Blue"), PURPLE):
        assert m(rect, f"{channel}: Mean") == pytest.approx(value)
        assert m(rect, f"{channel}: Std.Dev.") == pytest.approx(0, abs=1e-9)
    assert not any(name.startswith(("Nucleus", "Cell")) for name in rect.measurements)


def test_microns_scale_lengths_and_areas_not_ratios():
    tile = white_tile()
    rect = PathObject(box(10, 5, 30, 15))
    measure_objects([rect], tile, (0, 0), 1.0, 0.5)
    assert m(rect, "Area µm^2") == pytest.approx(200 * 0.25)
    assert m(rect, "Length µm") == pytest.approx(30)
    assert m(rect, "Max diameter µm") == pytest.approx(math.sqrt(500) * 0.5)
    assert m(rect, "Min diameter µm") == pytest.approx(5)
    assert m(rect, "Circularity") == pytest.approx(4 * math.pi * 200 / 60**2)
    assert m(rect, "Solidity") == pytest.approx(1)
    assert "Area px^2" not in rect.measurements


def test_disc_is_circular_and_concave_shape_is_not_solid():
    disc = PathObject(Point(40, 30).buffer(15, 64))
    l_shape = PathObject(Polygon([(0, 0), (20, 0), (20, 10), (10, 10), (10, 20), (0, 20)]))
    measure_objects([disc, l_shape], white_tile(), (0, 0), 1.0, None)
    assert m(disc, "Circularity") == pytest.approx(1, abs=2e-3)
    assert m(disc, "Max diameter px") == pytest.approx(30, rel=1e-3)
    assert m(disc, "Min diameter px") == pytest.approx(30, rel=2e-3)
    assert m(l_shape, "Solidity") == pytest.approx(300 / 350)


def test_max_diameter_is_the_minimum_bounding_circle_as_in_qupath():
    triangle = PathObject(Polygon([(0, 0), (10, 0), (5, 10 * math.sqrt(3) / 2)]))
    measure_objects([triangle], white_tile(), (0, 0), 1.0, None)
    assert m(triangle, "Max diameter px") == pytest.approx(20 / math.sqrt(3))  # circumcircle, not the side
    assert m(triangle, "Min diameter px") == pytest.approx(10 * math.sqrt(3) / 2)  # the triangle's height


def test_hole_is_not_measured_and_circularity_uses_the_outer_ring():
    tile = white_tile()
    tile[10:30, 10:30] = PURPLE
    tile[15:25, 15:25] = PINK  # the hole's pixels
    ring = PathObject(Polygon(box(10, 10, 30, 30).exterior.coords, [box(15, 15, 25, 25).exterior.coords]))
    measure_objects([ring], tile, (0, 0), 1.0, None)
    assert m(ring, "Area px^2") == pytest.approx(300)
    assert m(ring, "Length px") == pytest.approx(80 + 40)
    assert m(ring, "Circularity") == pytest.approx(4 * math.pi * 400 / 80**2)
    assert m(ring, "Red: Mean") == pytest.approx(PURPLE[0])


def test_multipolygon_has_no_circularity_and_measures_every_part():
    tile = white_tile()
    tile[0:10, 0:10] = PURPLE
    tile[20:30, 40:50] = PURPLE
    parts = PathObject(MultiPolygon([box(0, 0, 10, 10), box(40, 20, 50, 30)]))
    measure_objects([parts], tile, (0, 0), 1.0, None)
    assert m(parts, "Area px^2") == pytest.approx(200)
    assert "Circularity" not in parts.measurements  # QuPath: single polygons only
    assert m(parts, "Blue: Mean") == pytest.approx(PURPLE[2])


def test_points_get_nothing_and_lines_only_a_length():
    point, line = PathObject(Point(5, 5)), PathObject(LineString([(0, 0), (3, 4)]))
    measure_objects([point, line], white_tile(), (0, 0), 1.0, 0.5)
    assert point.measurements == {}
    assert line.measurements == {"Length µm": pytest.approx(2.5)}


# -------------------------------------------------------------------------------------------- intensity


def test_adjacent_objects_get_their_own_colours():
    tile = white_tile()
    tile[10:20, 10:20] = PURPLE
    tile[10:20, 20:30] = PINK
    left, right = PathObject(box(10, 10, 20, 20)), PathObject(box(20, 10, 30, 20))
    measure_objects([left, right], tile, (0, 0), 1.0, None)
    assert [m(left, f"{c}: Mean") for c in ("Red", "Green", "Blue")] == pytest.approx(PURPLE)
    assert [m(right, f"{c}: Mean") for c in ("Red", "Green", "Blue")] == pytest.approx(PINK)
    assert m(left, "Red: Std.Dev.") == pytest.approx(0, abs=1e-9)  # not one pixel of the neighbour


def test_standard_deviation_is_the_sample_one():
    tile = white_tile()
    tile[0, 0:4, 0] = [10, 20, 30, 40]
    strip = PathObject(box(0, 0, 4, 1))
    measure_objects([strip], tile, (0, 0), 1.0, None)
    assert m(strip, "Red: Mean") == pytest.approx(25)
    assert m(strip, "Red: Std.Dev.") == pytest.approx(np.std([10, 20, 30, 40], ddof=1))


def test_origin_and_downsample_map_level0_onto_the_tile():
    tile = white_tile()
    tile[3:8, 5:15] = PINK  # tile pixels (rows 3..7, cols 5..14)
    # level-0 = origin + tile pixel * downsample
    obj = PathObject(box(1000 + 5 * 4, 2000 + 3 * 4, 1000 + 15 * 4, 2000 + 8 * 4))
    measure_objects([obj], tile, (1000, 2000), 4.0, None)
    assert m(obj, "Area px^2") == pytest.approx(40 * 20)  # level-0 pixels
    assert m(obj, "Green: Mean") == pytest.approx(PINK[1])
    assert m(obj, "Green: Std.Dev.") == pytest.approx(0, abs=1e-9)


def test_pixels_are_those_whose_centres_lie_inside():
    rng = np.random.default_rng(3)
    h, w = 80, 120
    tile = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    origin, downsample = (500.25, 300.75), 1.7
    star = Polygon(
        [
            (60 + r * math.cos(a), 40 + r * math.sin(a))
            for a, r in zip(np.linspace(0, 2 * math.pi, 14, endpoint=False), [30, 12] * 7)
        ]
    )
    shapes = [star, affinity.rotate(affinity.scale(Point(30, 30).buffer(1, 32), 25, 9), 33)]
    for shape_tile in shapes:
        level0 = affinity.affine_transform(shape_tile, [downsample, 0, 0, downsample, *origin])
        obj = PathObject(level0)
        measure_objects([obj], tile, origin, downsample, None)
        cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        inside = shapely.contains_xy(shape_tile, cols, rows)
        expected = tile[inside].astype(float)
        assert inside.sum() > 50
        assert m(obj, "Red: Mean") == pytest.approx(expected[:, 0].mean())
        assert m(obj, "Blue: Std.Dev.") == pytest.approx(expected[:, 2].std(ddof=1))


def test_optical_density_white_is_zero_and_hematoxylin_beats_eosin_on_purple():
    tile = white_tile()
    tile[0:10, 0:10] = WHITE
    tile[0:10, 20:30] = PURPLE
    tile[0:10, 40:50] = PINK
    white, purple, pink = (PathObject(box(x, 0, x + 10, 10)) for x in (0, 20, 40))
    measure_objects([white, purple, pink], tile, (0, 0), 1.0, None)
    assert m(white, "Hematoxylin: Mean") == pytest.approx(0, abs=1e-12)
    assert m(white, "Eosin: Mean") == pytest.approx(0, abs=1e-12)
    assert m(purple, "Hematoxylin: Mean") > m(pink, "Hematoxylin: Mean") + 0.1
    # a uniform block's mean is its colour's optical density: 6 × rgb2hed's (log10 OD vs ln / ln 10^6)
    purple_od, pink_od = 6 * rgb2hed(np.array([[PURPLE, PINK]], np.uint8))[0]
    assert m(purple, "Hematoxylin: Mean") == pytest.approx(purple_od[0], rel=1e-6)   # 0.646
    assert m(purple, "Eosin: Mean") == pytest.approx(purple_od[1], rel=1e-6)         # 0.222
    assert m(pink, "Eosin: Mean") == pytest.approx(pink_od[1], rel=1e-6)             # 0.143


def test_optical_density_is_qupath_scale_rgb2hed():
    colours = np.array([PURPLE, (120, 80, 170), (200, 120, 170), (0, 0, 0)], np.uint8)
    ours = od_from_rgb(colours)
    theirs = rgb2hed(colours[None])[0][:, :2]
    assert (theirs[:3] > 0).all()
    np.testing.assert_allclose(ours[:3], 6 * theirs[:3], rtol=1e-6)  # log10 OD vs rgb2hed's ln / ln(10^6)
    assert np.isfinite(ours[3]).all()  # black is OD log10(255), not infinite
    # not clipped at 0 as rgb2hed is: pink has a little negative hematoxylin, keeping means unbiased
    assert rgb2hed(np.array([[PINK]], np.uint8))[0, 0, 0] == 0
    assert od_from_rgb(np.array(PINK, np.uint8))[0] < 0


# ---------------------------------------------------------------------------------------- edges, cells


def test_objects_straddling_the_tile_edge_use_their_visible_pixels():
    tile = white_tile(40, 60)
    tile[:, :] = PINK
    tile[0:5, 50:60] = PURPLE
    corner = PathObject(box(50, -5, 70, 5))  # 10x5 visible in the top-right corner
    outside = PathObject(box(-30, -30, -10, -10))
    left_edge = PathObject(Point(0, 20).buffer(8, 32))
    measure_objects([corner, outside, left_edge], tile, (0, 0), 1.0, 0.5)
    assert m(corner, "Area µm^2") == pytest.approx(200 * 0.25)  # shape of the whole object
    assert m(corner, "Red: Mean") == pytest.approx(PURPLE[0])
    assert m(corner, "Red: Std.Dev.") == pytest.approx(0, abs=1e-9)
    assert m(left_edge, "Green: Mean") == pytest.approx(PINK[1])
    assert m(outside, "Area µm^2") == pytest.approx(100)
    assert math.isnan(m(outside, "Red: Mean")) and math.isnan(m(outside, "Red: Std.Dev."))


def test_cells_get_nucleus_cytoplasm_and_cell_measurements():
    tile = white_tile()
    tile[10:30, 10:30] = PINK
    tile[15:25, 15:25] = PURPLE
    cell = PathObject(box(10, 10, 30, 30), object_type="cell", nucleus_geometry=box(15, 15, 25, 25))
    measure_objects([cell], tile, (0, 0), 1.0, 0.5)
    ms = cell.measurements
    assert ms["Nucleus: Area µm^2"] == pytest.approx(25)
    assert ms["Cell: Area µm^2"] == pytest.approx(100)
    assert ms["Nucleus/Cell area ratio"] == pytest.approx(0.25)
    assert ms["Nucleus: Red: Mean"] == pytest.approx(PURPLE[0])
    assert ms["Cytoplasm: Red: Mean"] == pytest.approx(PINK[0])
    assert ms["Cell: Red: Mean"] == pytest.approx(0.25 * PURPLE[0] + 0.75 * PINK[0])
    assert ms["Nucleus: Hematoxylin: Mean"] > ms["Cytoplasm: Hematoxylin: Mean"]
    for compartment in ("Nucleus", "Cell"):
        for feature in ("Area", "Length", "Circularity", "Solidity", "Max diameter", "Min diameter"):
            assert shape_name(feature, 0.5, compartment) in ms
    for compartment in ("Nucleus", "Cytoplasm", "Cell"):
        for channel in CHANNELS:
            assert intensity_name(channel, "Mean", compartment) in ms
            assert intensity_name(channel, "Std.Dev.", compartment) in ms
    assert not any(name.startswith(("Red", "Area")) for name in ms)  # no bare names on cells


def test_plain_detections_can_be_measured_as_nuclei():
    tile = white_tile()
    nucleus = PathObject(box(10, 10, 20, 20))
    measure_objects([nucleus], tile, (0, 0), 1.0, 0.25, compartment="Nucleus")
    assert set(nucleus.measurements) >= {
        "Nucleus: Area µm^2",
        "Nucleus: Red: Mean",
        "Nucleus: Eosin: Std.Dev.",
    }
    assert all(name.startswith("Nucleus: ") for name in nucleus.measurements)


def test_measuring_adds_to_existing_measurements_and_empty_input_is_fine():
    obj = PathObject(box(0, 0, 5, 5), measurements={"Detection probability": 0.9})
    measure_objects([obj], white_tile(), (0, 0), 1.0, None)
    assert obj.measurements["Detection probability"] == 0.9 and "Area px^2" in obj.measurements
    measure_objects([], white_tile(), (0, 0), 1.0, None)


def test_measured_and_classified_objects_round_trip_through_qupath_geojson():
    tile = white_tile()
    tile[10:30, 10:30] = PINK
    tile[15:25, 15:25] = PURPLE
    cell = PathObject(box(10, 10, 30, 30), object_type="cell", nucleus_geometry=box(15, 15, 25, 25))
    outside = PathObject(box(-20, -20, -10, -10))  # NaN intensities
    measure_objects([cell, outside], tile, (0, 0), 1.0, 0.25)
    ReferenceColourClassifier({"Tumor": PURPLE, "Stroma": PINK}).predict([cell])
    back = parse_objects(objects_to_json([cell, outside]))
    assert back[0].measurements == pytest.approx(cell.measurements)
    assert back[0].class_name == "Tumor"
    assert "Nucleus: Area µm^2" in back[0].measurements
    assert math.isnan(back[1].measurements["Red: Mean"])


@pytest.mark.parametrize(
    ("tile", "downsample", "mpp", "message"),
    [
        (np.zeros((10, 10), np.uint8), 1.0, None, "RGB image"),
        (np.zeros((10, 10, 3), np.float32), 1.0, None, "uint8"),
        (np.zeros((10, 10, 3), np.uint8), 0.0, None, "downsample"),
        (np.zeros((10, 10, 3), np.uint8), 1.0, -1.0, "mpp"),
    ],
)
def test_bad_arguments_are_named(tile, downsample, mpp, message):
    with pytest.raises(ValueError, match=message):
        measure_objects([PathObject(box(0, 0, 2, 2))], tile, (0, 0), downsample, mpp)
