"""Classification of measured objects: reference colours and a trained measurement classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cellbridge.errors import CellBridgeError
from cellbridge.features.classifiers import (
    MeasurementClassifier,
    ReferenceColourClassifier,
    apply_classifier,
    load_classifier,
)
from cellbridge.features.measure import measure_objects
from cellbridge.objects import PathClass, PathObject, class_color
from shapely.geometry import Point

BROWN = (139, 69, 19)  # DAB-positive nucleus
BLUE = (70, 80, 160)  # hematoxylin-only nucleus


def noisy_nuclei(
    rng: np.random.Generator,
    specs: list[tuple[tuple[int, int, int], float, str]],
    size: int = 1024,
    spacing: int = 48,
) -> tuple[np.ndarray, list[PathObject], list[str]]:
    """A tile of noisy discs on a grid, one per (colour, radius, label), measured; tile, nuclei, labels."""
    tile = np.full((size, size, 3), 240, np.float64)
    tile += rng.normal(0, 4, tile.shape)
    objects, labels = [], []
    per_row = size // spacing
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    for i, (colour, radius, label) in enumerate(specs):
        cx, cy = spacing * (i % per_row + 0.5), spacing * (i // per_row + 0.5)
        cx, cy = cx + rng.uniform(-3, 3), cy + rng.uniform(-3, 3)
        top, left = max(0, int(cy - spacing / 2)), max(0, int(cx - spacing / 2))
        sl = np.s_[top : int(cy + spacing / 2), left : int(cx + spacing / 2)]
        disc = (xx[sl] - cx) ** 2 + (yy[sl] - cy) ** 2 < radius**2
        shade = np.asarray(colour, np.float64) + rng.normal(0, 8, 3)
        tile[sl][disc] = shade + rng.normal(0, 10, (disc.sum(), 3))
        objects.append(PathObject(Point(cx, cy).buffer(radius, 24)))
        labels.append(label)
    tile = np.clip(np.rint(tile), 0, 255).astype(np.uint8)
    measure_objects(objects, tile, (0, 0), 1.0, 0.5, compartment="Nucleus")
    return tile, objects, labels


def write(tmp_path, name, data) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------------- reference colours


def test_reference_colours_separate_brown_from_blue_nuclei(tmp_path):
    rng = np.random.default_rng(0)
    specs = [
        (BROWN, rng.uniform(6, 12), "Positive") if i % 2 else (BLUE, rng.uniform(6, 12), "Negative")
        for i in range(120)
    ]
    _, nuclei, labels = noisy_nuclei(rng, specs)
    path = write(tmp_path, "refs.json", {"classes": {"Positive": "#8b4513", "Negative": list(BLUE)}})
    classifier = ReferenceColourClassifier.from_json(path)
    classifier.predict(nuclei)
    assert [o.class_name for o in nuclei] == labels
    for obj in nuclei:
        p_pos, p_neg = (
            obj.measurements["Class probability: Positive"],
            obj.measurements["Class probability: Negative"],
        )
        assert p_pos + p_neg == pytest.approx(1)
        assert max(p_pos, p_neg) > 0.9
        assert obj.path_class.color == class_color(obj.class_name)


def test_reference_colours_read_cells_nucleus_colour():
    tile = np.full((40, 40, 3), 240, np.uint8)
    tile[10:30, 10:30] = BLUE  # cytoplasm
    tile[15:25, 15:25] = BROWN  # nucleus
    cell = PathObject(
        Point(20, 20).buffer(10, 4).envelope,
        object_type="cell",
        nucleus_geometry=Point(20, 20).buffer(5, 4).envelope,
    )
    measure_objects([cell], tile, (0, 0), 1.0, None)
    ReferenceColourClassifier({"Positive": BROWN, "Negative": BLUE}).predict([cell])
    assert cell.class_name == "Positive"


def test_hue_distance_is_circular():
    red_ish, magenta_ish = PathObject(Point(0, 0)), PathObject(Point(0, 0))
    red_ish.measurements.update({"Red: Mean": 200, "Green: Mean": 30, "Blue: Mean": 40})  # hue just below 1
    magenta_ish.measurements.update(
        {"Red: Mean": 200, "Green: Mean": 40, "Blue: Mean": 30}
    )  # hue just above 0
    classifier = ReferenceColourClassifier({"Red": "#c8281e", "Green": "#28c81e"})
    assert np.argmin(classifier.distances([red_ish, magenta_ish]), axis=1).tolist() == [0, 0]
    assert classifier.distances([red_ish])[0, 0] < 0.1


def test_temperature_sharpens_probabilities():
    obj = PathObject(Point(0, 0), measurements={"Red: Mean": 120, "Green: Mean": 70, "Blue: Mean": 60})
    refs = {"Positive": BROWN, "Negative": BLUE}
    soft = ReferenceColourClassifier(refs, temperature=1.0).predict_proba([obj])[0]
    sharp = ReferenceColourClassifier(refs, temperature=0.02).predict_proba([obj])[0]
    assert soft.argmax() == sharp.argmax() == 0
    assert 0.5 < soft[0] < sharp[0]


def test_reference_file_layouts_and_errors(tmp_path):
    flat = ReferenceColourClassifier.from_json(
        write(tmp_path, "flat.json", {"Tumor": "#c80000", "Stroma": "96c896"})
    )
    assert flat.references == {"Tumor": (200, 0, 0), "Stroma": (150, 200, 150)}
    nested = ReferenceColourClassifier.from_json(
        write(tmp_path, "nested.json", {"classes": {"A": [1, 2, 3], "B": [4, 5, 6]}, "temperature": 0.5})
    )
    assert nested.temperature == 0.5 and nested.classes == ["A", "B"]

    cases = {
        "missing.json": (None, "no such file"),
        "bad.json": ("{oops", "not valid JSON"),
        "list.json": ([1, 2], "expected a JSON object"),
        "one.json": ({"Positive": "#ffffff"}, "at least 2 classes"),
        "colour.json": ({"A": [1, 2], "B": "#000000"}, "class 'A': colour must be"),
        "range.json": ({"A": [1, 2, 300], "B": "#000000"}, "class 'A': colour must be"),
        "hex.json": ({"A": "#12345", "B": "#000000"}, "class 'A': colour must be"),
        "key.json": ({"classes": {"A": "#000000", "B": "#ffffff"}, "temp": 1}, "unknown key"),
        "temperature.json": ({"classes": {"A": "#000000", "B": "#ffffff"}, "temperature": 0}, "temperature"),
        "name.json": ({":": "#000000", "B": "#ffffff"}, "invalid class name"),
    }
    for name, (content, message) in cases.items():
        path = str(tmp_path / name) if content is None else write(tmp_path, name, content)
        with pytest.raises(CellBridgeError, match=message) as info:
            ReferenceColourClassifier.from_json(path)
        assert name in str(info.value)


def test_reference_classifier_requires_measured_colours():
    measured = PathObject(Point(0, 0), measurements={"Red: Mean": 1, "Green: Mean": 2, "Blue: Mean": 3})
    unmeasured = PathObject(Point(0, 0), measurements={"Red: Mean": 1})
    classifier = ReferenceColourClassifier({"A": BROWN, "B": BLUE})
    with pytest.raises(CellBridgeError, match=r"object 1 .* no measurement 'Green: Mean'.*measure"):
        classifier.predict([measured, unmeasured])
    assert measured.path_class is None  # nothing half-done
    nan = PathObject(Point(0, 0), measurements={"Red: Mean": float("nan"), "Green: Mean": 2, "Blue: Mean": 3})
    with pytest.raises(CellBridgeError, match="'Red: Mean' is nan"):
        classifier.predict([nan])
    classifier.predict([])


# ----------------------------------------------------------------------------------- measurement model


def small_dark_vs_large_pale(seed: int, n: int) -> tuple[list[PathObject], list[str]]:
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(n):
        if i % 2:
            specs.append(((70, 40, 120), rng.normal(6, 0.8), "Lymphocyte"))
        else:
            specs.append(((170, 120, 190), rng.normal(11, 1.5), "Tumor"))
    _, nuclei, labels = noisy_nuclei(rng, specs)
    return nuclei, labels


def labelled(objects: list[PathObject], labels: list[str]) -> list[PathObject]:
    for obj, label in zip(objects, labels):
        obj.path_class = PathClass.of(label)
    return objects


def test_measurement_classifier_learns_small_dark_vs_large_pale(tmp_path):
    train, train_labels = small_dark_vs_large_pale(1, 200)
    test, test_labels = small_dark_vs_large_pale(2, 200)
    classifier = MeasurementClassifier().fit(labelled(train, train_labels))
    assert classifier.classes == ["Lymphocyte", "Tumor"]
    assert "Nucleus: Area µm^2" in classifier.features and "Nucleus: Red: Mean" in classifier.features
    classifier.predict(test)
    accuracy = np.mean([o.class_name == label for o, label in zip(test, test_labels)])
    assert accuracy >= 0.95
    for obj in test:
        probabilities = [obj.measurements[f"Class probability: {c}"] for c in classifier.classes]
        assert sum(probabilities) == pytest.approx(1)
        assert obj.path_class.color == class_color(obj.class_name)

    # save / load gives identical predictions, from a plain JSON file
    path = tmp_path / "model" / "nuclei.json"
    classifier.save(path)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["features"] == classifier.features and document["classes"] == classifier.classes
    loaded = MeasurementClassifier.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(test), classifier.predict_proba(test))
    again, _ = small_dark_vs_large_pale(2, 200)
    apply_classifier(again, str(path))
    assert [o.class_name for o in again] == [o.class_name for o in test]
    assert [o.measurements for o in again] == [o.measurements for o in test]


def test_trees_predict_exactly_as_scikit_learn():
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 4))
    y = np.where(x[:, 0] + x[:, 1] ** 2 > 1, "B", np.where(x[:, 2] > 0.5, "C", "A"))
    objects = [
        PathObject(
            Point(0, 0),
            path_class=PathClass.of(label),
            measurements={f"f{j}": float(v) for j, v in enumerate(row)},
        )
        for row, label in zip(x, y)
    ]
    ours = MeasurementClassifier(n_estimators=20, random_state=3).fit(objects)
    theirs = RandomForestClassifier(n_estimators=20, random_state=3, n_jobs=1).fit(
        x, np.unique(y, return_inverse=True)[1]
    )
    query = rng.normal(size=(500, 4))
    query_objects = [
        PathObject(Point(0, 0), measurements={f"f{j}": float(v) for j, v in enumerate(row)}) for row in query
    ]
    np.testing.assert_allclose(
        ours.predict_proba(query_objects), theirs.predict_proba(query), rtol=0, atol=1e-12
    )


def test_default_features_are_the_shared_numeric_measurements():
    a = PathObject(
        Point(0, 0),
        path_class=PathClass.of("A"),
        measurements={"x": 1.0, "y": 2.0, "only a": 3.0, "Class probability: A": 1.0},
    )
    b = PathObject(
        Point(0, 0),
        path_class=PathClass.of("B"),
        measurements={"y": 5.0, "x": 4.0, "flag": True, "Class probability: A": 0.0},
    )
    unlabelled = PathObject(Point(0, 0), measurements={"z": 1.0})
    classifier = MeasurementClassifier(n_estimators=5).fit([a, b, unlabelled])
    assert classifier.features == ["x", "y"]


def test_training_colours_are_kept(tmp_path):
    objects = [
        PathObject(Point(0, 0), path_class=PathClass.of("Mine", (1, 2, 3)), measurements={"x": float(i)})
        for i in range(5)
    ]
    objects += [
        PathObject(Point(0, 0), path_class=PathClass.of("Other"), measurements={"x": 10.0 + i})
        for i in range(5)
    ]
    classifier = MeasurementClassifier(n_estimators=3).fit(objects)
    assert classifier.colours == {"Mine": (1, 2, 3), "Other": class_color("Other")}
    classifier.save(tmp_path / "c.json")
    assert load_classifier(tmp_path / "c.json").colours == classifier.colours
    classifier.predict(objects)
    assert objects[0].path_class == PathClass.of("Mine", (1, 2, 3))


def test_measurement_classifier_errors(tmp_path):
    a = PathObject(Point(0, 0), path_class=PathClass.of("A"), measurements={"x": 1.0, "y": 2.0})
    a2 = PathObject(Point(0, 0), path_class=PathClass.of("A"), measurements={"x": 1.5, "y": 2.5})
    b = PathObject(Point(0, 0), path_class=PathClass.of("B"), measurements={"x": 4.0})
    with pytest.raises(CellBridgeError, match="at least 2 classes"):
        MeasurementClassifier().fit([a, a2])
    with pytest.raises(CellBridgeError, match="no labelled objects"):
        MeasurementClassifier().fit([PathObject(Point(0, 0), measurements={"x": 1.0})])
    with pytest.raises(CellBridgeError, match="unknown feature 'Area'"):
        MeasurementClassifier().fit([a, b], features=["x", "Area"])
    with pytest.raises(CellBridgeError, match=r"training object 2 .* no measurement 'y' \(1 of 3"):
        MeasurementClassifier().fit([a, a2, b], features=["x", "y"])
    with pytest.raises(CellBridgeError, match="more than once"):
        MeasurementClassifier().fit([a, b], features=["x", "x"])
    with pytest.raises(CellBridgeError, match="list of measurement names"):
        MeasurementClassifier().fit([a, b], features="x")
    nan = PathObject(Point(0, 0), path_class=PathClass.of("B"), measurements={"x": float("nan")})
    with pytest.raises(CellBridgeError, match="'x' is nan"):
        MeasurementClassifier().fit([a, nan], features=["x"])
    with pytest.raises(CellBridgeError, match="not trained"):
        MeasurementClassifier().predict([a])
    with pytest.raises(CellBridgeError, match="untrained"):
        MeasurementClassifier().save(tmp_path / "x.json")

    classifier = MeasurementClassifier(n_estimators=3).fit([a, a2, b], features=["x"])
    stranger = PathObject(Point(0, 0), measurements={"y": 1.0})
    with pytest.raises(CellBridgeError, match=r"object 1 .* no measurement 'x'"):
        classifier.predict([a, stranger])
    assert classifier.predict_proba([]).shape == (0, 2)


def test_loading_bad_classifier_files_names_file_and_problem(tmp_path):
    good_objects = [
        PathObject(Point(0, 0), path_class=PathClass.of(c), measurements={"x": float(i)})
        for i, c in enumerate("AABB")
    ]
    MeasurementClassifier(n_estimators=2).fit(good_objects).save(tmp_path / "good.json")
    good = json.loads((tmp_path / "good.json").read_text())

    def broken(**changes):
        doc = json.loads(json.dumps(good))
        for key, value in changes.items():
            if key == "tree":
                doc["trees"][0].update(value)
            else:
                doc[key] = value
        return doc

    cases = {
        "version.json": (broken(version=99), "unsupported version 99"),
        "features.json": (broken(features=[]), "'features' must be"),
        "classes.json": (broken(classes=["A"]), "'classes' must be"),
        "trees.json": (broken(trees=[]), "'trees' must be"),
        "cycle.json": (broken(tree={"left": [0, -1, -1]}), "malformed tree: child index"),
        "feature.json": (broken(tree={"feature": [7, -1, -1]}), "malformed tree: feature index"),
        "leaves.json": (broken(tree={"leaf_value": [[1.0, 0.0]]}), "malformed tree"),
        "colours.json": (broken(colours={"A": "red"}), "class 'A': colour"),
    }
    for name, (content, message) in cases.items():
        with pytest.raises(CellBridgeError, match=message) as info:
            MeasurementClassifier.load(write(tmp_path, name, content))
        assert name in str(info.value)
    with pytest.raises(CellBridgeError, match="not a measurement classifier"):
        MeasurementClassifier.load(write(tmp_path, "refs.json", {"A": "#000000", "B": "#ffffff"}))


def test_apply_classifier_takes_either_kind_or_a_file(tmp_path):
    obj = PathObject(Point(0, 0), measurements={"Red: Mean": 140, "Green: Mean": 70, "Blue: Mean": 20})
    apply_classifier([obj], ReferenceColourClassifier({"Positive": BROWN, "Negative": BLUE}))
    assert obj.class_name == "Positive"
    path = write(tmp_path, "refs.json", {"Positive": "#8b4513", "Negative": "#4650a0"})
    assert isinstance(load_classifier(path), ReferenceColourClassifier)
    obj.path_class = None
    apply_classifier([obj], path)
    assert obj.class_name == "Positive"
    with pytest.raises(CellBridgeError, match="no such file"):
        apply_classifier([obj], tmp_path / "nothing.json")
