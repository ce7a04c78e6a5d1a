"""Classify measured objects: by reference colours, or by a classifier trained on measurements.

Both classifiers read the measurements `cellbridge.features.measure.measure_objects` writes, set each
object's `path_class` (with its colour from `cellbridge.objects.class_color` unless training gave one) and
write one ``Class probability: <class>`` measurement per class.

- `ReferenceColourClassifier`: each object's mean colour against per-class reference colours, in HSV; from
  a JSON file such as ``{"classes": {"Positive": "#8b4513", "Negative": [90, 90, 180]}}``.
- `MeasurementClassifier`: a random forest (scikit-learn) trained on labelled objects' measurements; saved as
  one JSON file holding the feature names, classes, colours and the trees themselves, so loading a model runs
  no pickled code and needs no scikit-learn.

    apply_classifier(objects, "classifier.json")      # either kind, told apart by the file's content
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from skimage.color import rgb2hsv

from cellbridge.errors import CellBridgeError
from cellbridge.io.atomic import atomic_write
from cellbridge.objects import RGB, PathClass, PathObject, class_color

__all__ = [
    "PROBABILITY_PREFIX",
    "Classifier",
    "MeasurementClassifier",
    "ReferenceColourClassifier",
    "apply_classifier",
    "load_classifier",
]

PROBABILITY_PREFIX = "Class probability: "
MEASUREMENT_CLASSIFIER_FORMAT = "cellbridge.measurement-classifier"
MEASUREMENT_CLASSIFIER_VERSION = 1
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


class Classifier(Protocol):
    """What `apply_classifier` needs: class names and a `predict` that classifies objects in place."""

    @property
    def classes(self) -> list[str]: ...

    def predict(self, objects: Sequence[PathObject]) -> None: ...


def apply_classifier(objects: Sequence[PathObject], classifier: Classifier | str | os.PathLike[str]) -> None:
    """Classify `objects` in place with a classifier, or with the classifier saved in a JSON file."""
    if isinstance(classifier, (str, os.PathLike)):
        classifier = load_classifier(classifier)
    classifier.predict(objects)


def load_classifier(path: str | os.PathLike[str]) -> ReferenceColourClassifier | MeasurementClassifier:
    """A classifier from JSON: a saved `MeasurementClassifier`, else a reference colour file."""
    data = _read_json(path)
    if isinstance(data, dict) and data.get("format") == MEASUREMENT_CLASSIFIER_FORMAT:
        return MeasurementClassifier._from_json(data, os.fspath(path))
    return ReferenceColourClassifier._from_json(data, os.fspath(path))


# ---------------------------------------------------------------------------------- reference colours


class ReferenceColourClassifier:
    """Assign each object the class whose reference colour is nearest to its mean colour, in HSV.

    The distance between colours (h, s, v in [0, 1]) is sqrt((2·Δh)² + Δs² + Δv²) with Δh the circular hue
    difference (at most 0.5, so each term lies in [0, 1]). Probabilities are a softmax over negative
    distances, p_k = exp(-d_k / T) / Σ_j exp(-d_j / T), with temperature T (default 0.1: a class 0.1 nearer
    than another is e ≈ 2.7 times as likely; smaller T gives sharper probabilities).

    The mean colour is read from ``Nucleus: Red: Mean`` (and Green, Blue) when the object has it, as cells
    and nuclei measured with `compartment="Nucleus"` do, else from ``Red: Mean``.
    """

    def __init__(self, references: dict[str, Sequence[int] | str], temperature: float = 0.1) -> None:
        if len(references) < 2:
            raise CellBridgeError(
                f"a reference colour classifier needs at least 2 classes, got {len(references)}"
            )
        valid = isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
        if not (valid and math.isfinite(temperature) and temperature > 0):
            raise CellBridgeError(f"temperature must be a positive number, not {temperature!r}")
        self.references: dict[str, RGB] = {}
        for name, colour in references.items():
            parsed = _parse_colour(colour)
            if parsed is None:
                raise CellBridgeError(
                    f"class {name!r}: colour must be [r, g, b] with integers 0-255 or '#rrggbb', "
                    f"not {colour!r}"
                )
            try:
                PathClass.of(name)  # a valid QuPath class name
            except (ValueError, AttributeError):
                raise CellBridgeError(f"invalid class name {name!r}") from None
            self.references[name] = parsed
        self.temperature = float(temperature)
        self.colours: dict[str, RGB] = {name: class_color(name) for name in self.references}

    @property
    def classes(self) -> list[str]:
        return list(self.references)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> ReferenceColourClassifier:
        """Reference colours from ``{"classes": {name: colour}, "temperature": T}`` or ``{name: colour}``.

        A colour is ``[r, g, b]`` (integers 0-255) or ``"#rrggbb"``; ``temperature`` is optional.
        """
        return cls._from_json(_read_json(path), os.fspath(path))

    @classmethod
    def _from_json(cls, data: Any, origin: str) -> ReferenceColourClassifier:
        if not isinstance(data, dict):
            raise CellBridgeError(
                f"{origin}: expected a JSON object of class colours, not {type(data).__name__}"
            )
        temperature: Any = 0.1
        if "classes" in data:
            classes = data["classes"]
            temperature = data.get("temperature", temperature)
            unknown = sorted(set(data) - {"classes", "temperature"})
            if unknown:
                raise CellBridgeError(
                    f"{origin}: unknown key(s) {unknown}; expected 'classes', 'temperature'"
                )
            if not isinstance(classes, dict):
                raise CellBridgeError(f"{origin}: 'classes' must be an object of class name -> colour")
        else:
            classes = data
        try:
            return cls(classes, temperature)
        except CellBridgeError as err:
            raise CellBridgeError(f"{origin}: {err}") from None

    def distances(self, objects: Sequence[PathObject]) -> np.ndarray:
        """HSV distances (n_objects, n_classes) from each object's mean colour to each reference."""
        if not objects:
            return np.zeros((0, len(self.references)))
        rgb = np.array([_mean_colour(obj, i) for i, obj in enumerate(objects)], np.float64).reshape(-1, 3)
        hsv = rgb2hsv(np.clip(rgb, 0, 255).reshape(-1, 1, 3) / 255.0).reshape(-1, 3)
        ref = rgb2hsv(np.array(list(self.references.values()), np.float64).reshape(-1, 1, 3) / 255.0)
        ref = ref.reshape(-1, 3)
        dh = np.abs(hsv[:, None, 0] - ref[None, :, 0])
        dh = np.minimum(dh, 1.0 - dh)
        ds = hsv[:, None, 1] - ref[None, :, 1]
        dv = hsv[:, None, 2] - ref[None, :, 2]
        return np.sqrt((2.0 * dh) ** 2 + ds**2 + dv**2)

    def predict_proba(self, objects: Sequence[PathObject]) -> np.ndarray:
        """Class probabilities (n_objects, n_classes), columns in `classes` order."""
        return _softmax(-self.distances(objects) / self.temperature)

    def predict(self, objects: Sequence[PathObject]) -> None:
        """Set each object's class to the nearest reference and add its class probabilities."""
        objects = list(objects)
        _assign(objects, self.predict_proba(objects), self.classes, self.colours)


def _mean_colour(obj: PathObject, index: int) -> tuple[float, float, float]:
    m = obj.measurements
    for prefix in ("Nucleus: ", ""):
        names = [f"{prefix}{channel}: Mean" for channel in ("Red", "Green", "Blue")]
        if all(name in m for name in names):
            values = tuple(_number(m[name], obj, index, name) for name in names)
            return values  # type: ignore[return-value]
    missing = next(name for name in ("Red: Mean", "Green: Mean", "Blue: Mean") if name not in m)
    raise CellBridgeError(
        f"object {index} ({obj.id}) has no measurement {missing!r} (nor 'Nucleus: {missing}'); "
        "measure the objects first (cellbridge.features.measure.measure_objects)"
    )


# ----------------------------------------------------------------------------------- measurement model


class MeasurementClassifier:
    """A random forest on chosen measurements, trained from labelled objects.

    Training uses scikit-learn's `RandomForestClassifier`; the fitted trees are kept as plain arrays and
    evaluated here (with scikit-learn's float32 rounding of inputs), so predictions are scikit-learn's own
    and a saved model reloads without scikit-learn and without unpickling anything.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        max_depth: int | None = None,
        min_samples_leaf: int = 1,
        random_state: int | None = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state
        self.features: list[str] = []
        self._classes: list[str] = []
        self.colours: dict[str, RGB] = {}
        self._trees: list[_Tree] = []

    @property
    def classes(self) -> list[str]:
        return list(self._classes)

    @property
    def is_fitted(self) -> bool:
        return bool(self._trees)

    def fit(
        self, objects: Sequence[PathObject], features: Sequence[str] | None = None
    ) -> MeasurementClassifier:
        """Train on the objects that have a class (the others are ignored).

        `features` are measurement names; by default every numeric measurement that all training objects
        share (class probabilities excluded), in the first object's order.
        """
        training = [obj for obj in objects if obj.path_class is not None]
        if not training:
            raise CellBridgeError("no labelled objects to train on: none of the objects has a class")
        names = [obj.class_name for obj in training]
        classes = sorted(set(names))  # type: ignore[type-var]
        if len(classes) < 2:
            raise CellBridgeError(
                f"training needs at least 2 classes, got {len(classes)} "
                f"({classes[0]!r}, {len(training)} objects)"
            )
        chosen = self._choose_features(training, features)
        x = _feature_matrix(training, chosen, "training object")
        y = np.array([classes.index(name) for name in names])  # type: ignore[arg-type]

        from sklearn.ensemble import RandomForestClassifier  # lazily: importing scikit-learn is slow

        forest = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.random_state,
            n_jobs=1,
        )
        forest.fit(x, y)
        self._trees = [_Tree.from_sklearn(est.tree_, len(classes)) for est in forest.estimators_]
        self.features = chosen
        self._classes = classes  # type: ignore[assignment]
        self.colours = {}
        for obj in training:
            name = obj.class_name
            if name not in self.colours and obj.path_class is not None and obj.path_class.color is not None:
                self.colours[name] = obj.path_class.color  # type: ignore[index]
        for name in classes:
            self.colours.setdefault(name, class_color(name))  # type: ignore[arg-type]
        return self

    @staticmethod
    def _choose_features(training: list[PathObject], features: Sequence[str] | None) -> list[str]:
        if features is None:
            common = [
                name
                for name, value in training[0].measurements.items()
                if _is_number(value) and not name.startswith(PROBABILITY_PREFIX)
            ]
            for obj in training[1:]:
                common = [name for name in common if _is_number(obj.measurements.get(name))]
            if not common:
                raise CellBridgeError("the training objects share no numeric measurement to train on")
            return common
        if isinstance(features, str):
            raise CellBridgeError(
                f"features must be a list of measurement names, not the string {features!r}"
            )
        chosen = list(features)
        if not chosen:
            raise CellBridgeError("features is empty: name at least one measurement")
        duplicates = sorted({name for name in chosen if chosen.count(name) > 1})
        if duplicates:
            raise CellBridgeError(f"features named more than once: {duplicates}")
        known = {name for obj in training for name in obj.measurements}
        for name in chosen:
            if name not in known:
                close = sorted(known, key=lambda k: (name.lower() not in k.lower(), k))[:5]
                raise CellBridgeError(
                    f"unknown feature {name!r}: no training object has this measurement "
                    f"(some that exist: {close})"
                )
        return chosen

    def predict_proba(self, objects: Sequence[PathObject]) -> np.ndarray:
        """Class probabilities (n_objects, n_classes), columns in `classes` order."""
        if not self.is_fitted:
            raise CellBridgeError("the measurement classifier is not trained: call fit() or load() first")
        x = _feature_matrix(list(objects), self.features, "object")
        if len(x) == 0:
            return np.zeros((0, len(self._classes)))
        x = x.astype(np.float32).astype(np.float64)  # scikit-learn's trees compare float32 inputs
        total = np.zeros((len(x), len(self._classes)))
        for tree in self._trees:
            total += tree.predict_proba(x)
        return total / len(self._trees)

    def predict(self, objects: Sequence[PathObject]) -> None:
        """Set each object's class to the most probable one and add its class probabilities."""
        objects = list(objects)
        _assign(objects, self.predict_proba(objects), self._classes, self.colours)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the classifier (features, classes, colours, trees) as one JSON file, atomically."""
        if not self.is_fitted:
            raise CellBridgeError("cannot save an untrained measurement classifier")
        document = {
            "format": MEASUREMENT_CLASSIFIER_FORMAT,
            "version": MEASUREMENT_CLASSIFIER_VERSION,
            "model": "random_forest",
            "features": self.features,
            "classes": self._classes,
            "colours": {name: list(self.colours[name]) for name in self._classes},
            "parameters": {
                "n_estimators": self.n_estimators,
                "max_depth": self.max_depth,
                "min_samples_leaf": self.min_samples_leaf,
                "random_state": self.random_state,
            },
            "trees": [tree.to_json() for tree in self._trees],
        }
        with atomic_write(path) as handle:
            json.dump(document, handle, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            handle.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MeasurementClassifier:
        """A classifier saved by `save`."""
        return cls._from_json(_read_json(path), os.fspath(path))

    @classmethod
    def _from_json(cls, data: Any, origin: str) -> MeasurementClassifier:
        def fail(problem: str) -> CellBridgeError:
            return CellBridgeError(f"{origin}: {problem}")

        if not isinstance(data, dict) or data.get("format") != MEASUREMENT_CLASSIFIER_FORMAT:
            raise fail(f'not a measurement classifier (no "format": "{MEASUREMENT_CLASSIFIER_FORMAT}")')
        if data.get("version") != MEASUREMENT_CLASSIFIER_VERSION:
            raise fail(
                f"unsupported version {data.get('version')!r}; this cellbridge reads version "
                f"{MEASUREMENT_CLASSIFIER_VERSION}"
            )
        features, classes = data.get("features"), data.get("classes")
        if not (isinstance(features, list) and features and all(isinstance(f, str) for f in features)):
            raise fail("'features' must be a non-empty list of measurement names")
        if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
            raise fail("'classes' must be a list of at least 2 class names")
        colours = data.get("colours", {})
        if not isinstance(colours, dict):
            raise fail("'colours' must be an object of class name -> [r, g, b]")
        parameters = data.get("parameters", {})
        model = (
            cls(
                **{
                    k: v
                    for k, v in parameters.items()
                    if k in ("n_estimators", "max_depth", "min_samples_leaf", "random_state")
                }
            )
            if isinstance(parameters, dict)
            else cls()
        )
        model.features, model._classes = list(features), list(classes)
        for name in classes:
            colour = _parse_colour(colours[name]) if name in colours else class_color(name)
            if colour is None:
                raise fail(
                    f"class {name!r}: colour must be [r, g, b] with integers 0-255, not {colours[name]!r}"
                )
            model.colours[name] = colour
        trees = data.get("trees")
        if not (isinstance(trees, list) and trees):
            raise fail("'trees' must be a non-empty list")
        try:
            model._trees = [_Tree.from_json(tree, len(features), len(classes)) for tree in trees]
        except (KeyError, TypeError, ValueError) as err:
            raise fail(f"malformed tree: {err}") from None
        return model


class _Tree:
    """One fitted decision tree as arrays (scikit-learn's layout); leaves have left == right == -1."""

    def __init__(
        self,
        left: np.ndarray,
        right: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        value: np.ndarray,
    ) -> None:
        self.left, self.right, self.feature, self.threshold, self.value = (
            left,
            right,
            feature,
            threshold,
            value,
        )

    @classmethod
    def from_sklearn(cls, tree: Any, n_classes: int) -> _Tree:
        value = np.asarray(tree.value, np.float64)[:, 0, :n_classes]
        totals = value.sum(axis=1, keepdims=True)
        value = np.divide(value, totals, out=np.zeros_like(value), where=totals > 0)  # fractions per node
        left = np.asarray(tree.children_left, np.int64)
        feature = np.where(left < 0, -1, np.asarray(tree.feature, np.int64))
        threshold = np.where(left < 0, 0.0, np.asarray(tree.threshold, np.float64))
        value[left >= 0] = 0.0  # only leaves' values are used
        return cls(left, np.asarray(tree.children_right, np.int64), feature, threshold, value)

    def to_json(self) -> dict[str, list]:
        leaves = self.left < 0
        return {
            "left": self.left.tolist(),
            "right": self.right.tolist(),
            "feature": self.feature.tolist(),
            "threshold": self.threshold.tolist(),
            "leaf_value": self.value[leaves].tolist(),  # leaves in node order
        }

    @classmethod
    def from_json(cls, data: dict, n_features: int, n_classes: int) -> _Tree:
        left = np.asarray(data["left"], np.int64)
        right = np.asarray(data["right"], np.int64)
        feature = np.asarray(data["feature"], np.int64)
        threshold = np.asarray(data["threshold"], np.float64)
        n = len(left)
        if n == 0 or not (len(right) == len(feature) == len(threshold) == n):
            raise ValueError("left, right, feature and threshold must be equally long and non-empty")
        leaves = left < 0
        if not np.array_equal(leaves, right < 0):
            raise ValueError("a node has one child")
        inner = ~leaves
        if (
            (left[inner] <= np.flatnonzero(inner))
            | (left[inner] >= n)
            | (right[inner] <= np.flatnonzero(inner))
            | (right[inner] >= n)
        ).any():
            raise ValueError("child index out of range (children must follow their parent)")
        if ((feature[inner] < 0) | (feature[inner] >= n_features)).any():
            raise ValueError(f"feature index out of range (0..{n_features - 1})")
        leaf_value = np.asarray(data["leaf_value"], np.float64).reshape(-1, n_classes)
        if len(leaf_value) != leaves.sum():
            raise ValueError(f"{len(leaf_value)} leaf values for {int(leaves.sum())} leaves")
        value = np.zeros((n, n_classes))
        value[leaves] = leaf_value
        return cls(left, right, feature, threshold, value)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        rows = np.arange(len(x))
        node = np.zeros(len(x), np.int64)
        active = rows
        while active.size:
            current = node[active]
            inner = self.left[current] >= 0
            active, current = active[inner], current[inner]
            goes_left = x[active, self.feature[current]] <= self.threshold[current]
            node[active] = np.where(goes_left, self.left[current], self.right[current])
        return self.value[node]


def _feature_matrix(objects: list[PathObject], features: list[str], kind: str) -> np.ndarray:
    """(n_objects, n_features) float64 from the objects' measurements; one clear error for gaps or NaN."""
    x = np.empty((len(objects), len(features)))
    for i, obj in enumerate(objects):
        m = obj.measurements
        for j, name in enumerate(features):
            value = m.get(name)
            if value is None:
                lacking = sum(1 for o in objects if name not in o.measurements)
                raise CellBridgeError(
                    f"{kind} {i} ({obj.id}) has no measurement {name!r} "
                    f"({lacking} of {len(objects)} objects lack it); measure the objects first"
                )
            x[i, j] = _number(value, obj, i, name, kind)
    return x


# --------------------------------------------------------------------------------------------- shared


def _assign(
    objects: list[PathObject], proba: np.ndarray, classes: list[str], colours: dict[str, RGB]
) -> None:
    if not objects:
        return
    best = np.argmax(proba, axis=1)
    path_classes = [PathClass.of(name, colours[name]) for name in classes]
    names = [f"{PROBABILITY_PREFIX}{name}" for name in classes]
    for obj, k, row in zip(objects, best.tolist(), proba.tolist()):
        obj.path_class = path_classes[k]
        obj.measurements.update(zip(names, row))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=1, keepdims=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value: Any, obj: PathObject, index: int, name: str, kind: str = "object") -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise CellBridgeError(
            f"{kind} {index} ({obj.id}): measurement {name!r} is {value!r}, not a finite number"
        )
    return float(value)


def _parse_colour(colour: Any) -> RGB | None:
    if isinstance(colour, str):
        match = _HEX.fullmatch(colour.strip())
        if match is None:
            return None
        digits = match.group(1)
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    if (
        isinstance(colour, (list, tuple))
        and len(colour) == 3
        and all(isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour)
    ):
        return (int(colour[0]), int(colour[1]), int(colour[2]))
    return None


def _read_json(path: str | os.PathLike[str]) -> Any:
    origin = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CellBridgeError(f"{origin}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CellBridgeError(f"{origin}: cannot read: {getattr(err, 'strerror', None) or err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CellBridgeError(
            f"{origin}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        ) from None
