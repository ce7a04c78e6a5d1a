"""QuPath GeoJSON: read what QuPath v0.6 reads, write what QuPath imports unchanged.

The reference is QuPath's own reader and writer (`qupath.lib.io.QuPathTypeAdapters`, `ROITypeAdapters`,
`GsonTools.PathClassTypeAdapter`, `GsonTools.parseObjectsFromGeoJSON`). Reading accepts everything QuPath
accepts (a FeatureCollection, a list of features, one Feature or a bare geometry; legacy type names, the old
measurement list, packed colours, nested `childObjects`) and turns what QuPath rejects into one
`GeoJSONError` naming the file, the feature and the problem. Writing produces a FeatureCollection in
QuPath's own layout, one feature per line, streamed to a temporary file and renamed when complete.

    objects = read_objects("cells.geojson")
    with GeoJSONWriter("out.geojson") as writer:
        writer.write_many(objects)
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import numbers
import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import numpy as np
import shapely
from shapely.geometry import GeometryCollection, MultiLineString, MultiPoint, MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from cellbridge.errors import GeoJSONError
from cellbridge.io.atomic import atomic_write
from cellbridge.objects import OBJECT_TYPES, RGB, PathClass, PathObject, new_object_id

__all__ = [
    "GeoJSONWriter",
    "feature_to_object",
    "object_to_feature",
    "objects_to_json",
    "parse_objects",
    "read_objects",
    "write_objects",
]

log = logging.getLogger(__name__)

# objectType values and the legacy names QuPath still reads (PathObjectTypeAdapter.parseObject); "unknown" is
# QuPath's own internal default. Anything else becomes an annotation with a warning, as in QuPath.
_OBJECT_TYPES = {
    "annotation": "annotation",
    "PathAnnotationObject": "annotation",
    "unknown": "annotation",
    "detection": "detection",
    "PathDetectionObject": "detection",
    "cell": "cell",
    "PathCellObject": "cell",
    "tile": "tile",
    "PathTileObject": "tile",
    "tmaCore": "tmaCore",
    "tma_core": "tmaCore",
    "TMACoreObject": "tmaCore",
}
_ROOT_TYPES = ("root", "PathRootObject")
_LEGACY_TYPE_IDS = (
    "PathAnnotationObject",
    "PathDetectionObject",
    "PathCellObject",
    "PathTileObject",
    "TMACoreObject",
    "PathRootObject",
)  # v0.2 stored the type in "id"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# nesting depth of "coordinates" below the positions, per geometry type
_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}
_GEOMETRY_TYPES = (*_DEPTH, "GeometryCollection")
_HEAD = '{"type":"FeatureCollection","features":['
_TAIL = "\n]}\n"


# ---------------------------------------------------------------------------------------------------- reading


def read_objects(source: str | os.PathLike[str] | dict | list) -> list[PathObject]:
    """Objects from a .geojson/.json file (also .gz, or a .zip of them, as QuPath exports) or parsed JSON.

    Nested children follow their parent, in document order.
    """
    if isinstance(source, (dict, list)):
        return _objects_from_json(source, "")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"read_objects needs a path or parsed JSON, not {type(source).__name__}")
    origin, path = os.fspath(source), Path(source)
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive:
                entries = [n for n in archive.namelist() if n.lower().endswith((".geojson", ".json"))]
                texts = [(f"{origin}/{n}", archive.read(n)) for n in entries]
        else:
            data = path.read_bytes()
            texts = [(origin, gzip.decompress(data) if path.suffix.lower() == ".gz" else data)]
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as err:
        raise GeoJSONError(f"{origin}: cannot read: {getattr(err, 'strerror', None) or err}") from err
    objects: list[PathObject] = []
    for name, data in texts:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise GeoJSONError(f"{name}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        objects.extend(parse_objects(text, origin=name))
    return objects


def parse_objects(text: str, origin: str = "<string>") -> list[PathObject]:
    """Objects from GeoJSON text; `origin` names the text in error messages."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise GeoJSONError(
            f"{origin}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        ) from None
    return _objects_from_json(data, origin)


def feature_to_object(feature: dict, index: int = 0) -> PathObject:
    """One QuPath object from one GeoJSON Feature (its nested children are read by `read_objects`)."""
    label = f"feature {index}"
    props = feature.get("properties") if isinstance(feature, dict) else None
    if isinstance(props, dict) and _type_name(props, label) in _ROOT_TYPES:
        raise GeoJSONError(
            f"{label}: a QuPath root object is not an object itself; read it with read_objects"
        )
    return _read_feature(feature, label)[0]


def _objects_from_json(data: Any, origin: str) -> list[PathObject]:
    prefix = f"{origin}: " if origin else ""
    objects: list[PathObject] = []
    for index, item in enumerate(_top_level_items(data, prefix)):
        label = f"{prefix}feature {index}"
        if isinstance(item, dict) and item.get("type") in _GEOMETRY_TYPES:  # QuPath makes an annotation
            objects.append(PathObject(_geometry(item, f"{label}: geometry"), "annotation"))
        else:
            objects.extend(_read_feature(item, label))
    return objects


def _top_level_items(data: Any, prefix: str) -> Iterator[Any]:
    """The features in document order, from a FeatureCollection, a (nested) list, a Feature or a geometry."""
    if isinstance(data, list):
        for item in data:
            if isinstance(item, list) or (isinstance(item, dict) and item.get("type") == "FeatureCollection"):
                yield from _top_level_items(item, prefix)
            else:
                yield item
    elif isinstance(data, dict) and (
        data.get("type") == "FeatureCollection" or ("features" in data and "type" not in data)
    ):
        features = data.get("features", [])
        if not isinstance(features, list):
            raise GeoJSONError(f"{prefix}FeatureCollection 'features' must be a list, not {_kind(features)}")
        yield from features
    elif isinstance(data, dict) and (data.get("type") in ("Feature", *_GEOMETRY_TYPES) or "geometry" in data):
        yield data
    else:
        raise GeoJSONError(
            f"{prefix}expected a GeoJSON FeatureCollection, Feature or list of features, not {_kind(data)}"
        )


def _read_feature(feature: Any, label: str) -> list[PathObject]:
    """The object for one feature followed by its nested children (depth first), as QuPath reads them."""
    if not isinstance(feature, dict):
        raise GeoJSONError(f"{label}: a feature must be a JSON object, not {_kind(feature)}")
    props = feature.get("properties")
    if props is None:
        props = {}
    elif not isinstance(props, dict):
        raise GeoJSONError(f"{label}: properties must be a JSON object, not {_kind(props)}")

    object_id, legacy_type = _read_id(feature.get("id"))
    type_name = _type_name(props, label) or legacy_type
    if type_name in _ROOT_TYPES:  # QuPath's image root: only its children are objects
        return _read_children(props, label)

    object_type = _OBJECT_TYPES.get(type_name or "annotation")
    if object_type is None:
        log.warning(
            "%s: unknown objectType %r; reading it as an annotation, as QuPath does", label, type_name
        )
        object_type = "annotation"
    if "geometry" not in feature:
        raise GeoJSONError(f"{label}: missing geometry")
    geometry = _geometry(feature["geometry"], f"{label}: geometry")
    nucleus = None
    if feature.get("nucleusGeometry") is not None:
        nucleus = _geometry(feature["nucleusGeometry"], f"{label}: nucleusGeometry")
        if object_type != "cell":  # QuPath parses it but only cells keep a nucleus
            log.debug("%s: nucleusGeometry ignored on a %s", label, object_type)
            nucleus = None
    if object_type == "tmaCore" and _is_true(props.get("isMissing")):
        log.warning("%s: TMA core 'isMissing' is not kept (PathObject has no such field)", label)

    obj = PathObject(
        geometry=geometry,
        object_type=object_type,
        path_class=_read_class(props.get("classification"), f"{label}: properties.classification"),
        measurements=_read_measurements(props.get("measurements"), f"{label}: properties.measurements"),
        nucleus_geometry=nucleus,
        name=_read_text(props.get("name"), f"{label}: properties.name"),
        color=_read_object_color(props.get("color"), f"{label}: properties.color"),
        locked=_is_true(props.get("isLocked")),
        metadata=_read_metadata(props.get("metadata"), f"{label}: properties.metadata"),
        id=object_id,
    )
    return [obj, *_read_children(props, label)]


def _read_id(value: Any) -> tuple[str, str | None]:
    """(object id, legacy type): QuPath keeps canonical UUIDs and replaces any other id with a new one."""
    if isinstance(value, str) and value in _LEGACY_TYPE_IDS:
        return new_object_id(), value
    if isinstance(value, str) and _UUID.fullmatch(value):
        return value.lower(), None
    return new_object_id(), None


def _type_name(props: dict, label: str) -> str | None:
    """The object type as written: `objectType`, else the legacy `object_type`, else the alias `type`."""
    for key in ("objectType", "object_type", "type"):
        value = props.get(key)
        if value is None:
            continue
        if isinstance(value, (list, dict)):
            raise GeoJSONError(f"{label}: properties.{key} must be a string, not {_kind(value)}")
        return _json_text(value)
    return None


def _read_children(props: dict, label: str) -> list[PathObject]:
    key = "childObjects" if "childObjects" in props else "children"
    children = props.get(key)
    if not isinstance(children, list):
        return []
    objects: list[PathObject] = []
    for i, child in enumerate(children):
        objects.extend(_read_feature(child, f"{label}: properties.{key}[{i}]"))
    return objects


def _geometry(value: Any, label: str) -> BaseGeometry:
    """A shapely geometry from GeoJSON, after checking everything QuPath's JTS reader would reject."""
    if not isinstance(value, dict):
        raise GeoJSONError(f"{label}: must be a GeoJSON geometry object, not {_kind(value)}")
    kind = value.get("type")
    if kind not in _GEOMETRY_TYPES:
        what = "has no type" if kind is None else f"unknown geometry type {kind!r}"
        raise GeoJSONError(f"{label}: {what}; expected one of {', '.join(_GEOMETRY_TYPES)}")
    _warn_plane(value.get("plane"), label)
    if kind == "GeometryCollection":
        parts = value.get("geometries")
        if not isinstance(parts, list):
            raise GeoJSONError(f"{label}: GeometryCollection needs a 'geometries' list")
        return _homogenize(
            GeometryCollection([_geometry(p, f"{label}.geometries[{i}]") for i, p in enumerate(parts)]), label
        )
    if "coordinates" not in value:
        raise GeoJSONError(f"{label}: {kind} has no coordinates")
    coordinates = _positions(value["coordinates"], _DEPTH[kind], f"{label}.coordinates")
    _check_parts(kind, coordinates, label)
    if kind == "MultiPolygon":  # an empty part (no rings) adds nothing
        coordinates = [rings for rings in coordinates if rings]
    try:
        geometry = shape({"type": kind, "coordinates": coordinates})
    except (ValueError, TypeError, IndexError, shapely.errors.ShapelyError) as err:  # not expected here
        raise GeoJSONError(f"{label}: {kind} cannot be built: {err}") from None
    return _collapse_zero_area(geometry)


def _positions(value: Any, depth: int, where: str) -> Any:
    """Nested lists down to (n, 2) float arrays of positions (a Point is one (x, y) tuple)."""
    if depth == 0:
        return _position(value, where)
    if not isinstance(value, list):
        raise GeoJSONError(f"{where}: must be a list, not {_kind(value)}")
    if depth == 1:
        return _position_array(value, where)
    return [_positions(v, depth - 1, f"{where}[{i}]") for i, v in enumerate(value)]


def _position_array(positions: list, where: str) -> np.ndarray:
    """Positions as an (n, 2) array; the common all-numeric case is checked at once, others one by one."""
    if not positions:
        return np.empty((0, 2))
    try:
        array = np.array(positions)
    except ValueError:  # ragged, e.g. a mix of [x, y] and [x, y, z]
        array = None
    if array is not None and array.ndim == 2 and array.shape[1] >= 2 and array.dtype.kind in "if":
        xy = array[:, :2].astype(float)
        if np.isfinite(xy).all():
            return xy
    return np.array([_position(v, f"{where}[{i}]") for i, v in enumerate(positions)])


def _position(value: Any, where: str) -> tuple[float, float]:
    """One (x, y); a 3rd value (z) is dropped, as QuPath's 2D ROIs do."""
    if not isinstance(value, list) or len(value) < 2:
        raise GeoJSONError(f"{where}: a position must be [x, y], not {_short(value)}")
    for v in value[:2]:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise GeoJSONError(f"{where}: coordinate {_short(v)} is not a number")
        if not math.isfinite(v):
            raise GeoJSONError(f"{where}: coordinate {v} is not finite")
    return float(value[0]), float(value[1])


def _check_parts(kind: str, coordinates: list, label: str) -> None:
    """JTS's rules: a LineString has 0 or >= 2 points; a ring >= 4 points, the first equal to the last."""
    if kind in ("LineString", "MultiLineString"):
        lines = [coordinates] if kind == "LineString" else coordinates
        for i, line in enumerate(lines):
            if len(line) == 1:
                part = "LineString" if kind == "LineString" else f"MultiLineString part {i}"
                raise GeoJSONError(f"{label}: {part} has 1 point; a line needs at least 2")
    elif kind in ("Polygon", "MultiPolygon"):
        polygons = [coordinates] if kind == "Polygon" else coordinates
        for p, rings in enumerate(polygons):
            part = "Polygon" if kind == "Polygon" else f"MultiPolygon part {p}"
            for r, ring in enumerate(rings):
                if len(ring) < 4:
                    raise GeoJSONError(
                        f"{label}: {part} ring {r} has {len(ring)} points; a closed ring needs at least 4"
                    )
                if not np.array_equal(ring[0], ring[-1]):
                    raise GeoJSONError(
                        f"{label}: {part} ring {r} is not closed (first point {list(ring[0])} "
                        f"!= last point {list(ring[-1])})"
                    )


def _collapse_zero_area(geometry: BaseGeometry) -> BaseGeometry:
    """Drop zero-area polygons, as QuPath's 0.01-pixel precision reduction does (how it writes empty ROIs)."""
    if isinstance(geometry, Polygon) and not geometry.is_empty and geometry.area == 0:
        return Polygon()
    if isinstance(geometry, MultiPolygon) and any(p.area == 0 for p in geometry.geoms):
        return MultiPolygon([p for p in geometry.geoms if p.area > 0])
    return geometry


def _homogenize(geometry: BaseGeometry, label: str) -> BaseGeometry:
    """A GeometryCollection as the ROI QuPath makes of it: its polygons, else its lines, else its points."""
    if geometry.geom_type != "GeometryCollection":
        return geometry
    parts = list(_single_parts(geometry))
    if not parts:
        return Polygon()
    dimension = max(shapely.get_dimensions(parts))
    kept = [p for p in parts if shapely.get_dimensions(p) == dimension]
    if len(kept) < len(parts):
        log.warning(
            "%s: GeometryCollection mixes geometry types; keeping only its %d %s part(s), as QuPath does",
            label,
            len(kept),
            kept[0].geom_type,
        )
    if len(kept) == 1:
        return kept[0]
    return {2: MultiPolygon, 1: MultiLineString, 0: MultiPoint}[dimension](kept)


def _single_parts(geometry: BaseGeometry) -> Iterator[BaseGeometry]:
    if hasattr(geometry, "geoms"):
        for part in geometry.geoms:
            yield from _single_parts(part)
    elif not geometry.is_empty:
        yield geometry


def _warn_plane(plane: Any, label: str) -> None:
    if isinstance(plane, dict) and (plane.get("z", 0) != 0 or plane.get("t", 0) != 0):
        log.warning(
            "%s: plane z=%s t=%s ignored; CellBridge objects are 2D",
            label,
            plane.get("z", 0),
            plane.get("t", 0),
        )


def _read_class(value: Any, where: str) -> PathClass | None:
    """A classification as QuPath reads it: a string, {"name"|"names", "color"} or the pre-v0.4 form."""
    if value is None:
        return None
    if isinstance(value, str):
        return _class_from_names(_split_class(value), None, where)
    if not isinstance(value, dict):
        raise GeoJSONError(
            f"{where} must be a string or an object with name/names and color, not {_kind(value)}"
        )
    if not value:  # QuPath's serialized NULL_CLASS
        return None
    if (
        "colorRGB" in value or "parentClass" in value
    ):  # before v0.4: {"name", "colorRGB", "parentClass": {...}}
        names: list[str] = []
        node: Any = value
        while isinstance(node, dict) and node.get("name") is not None:
            names.insert(0, _read_text(node["name"], f"{where}.name"))
            node = node.get("parentClass")
        if not names:
            return None
        colour = value.get("colorRGB")
        return _class_from_names(
            names, None if colour is None else _unpack(colour, f"{where}.colorRGB"), where
        )
    # QuPath also needs a colour here; a missing one is accepted (QuPath would pick its own)
    colour = _read_class_color(value.get("color"), f"{where}.color")
    if value.get("name") is not None:
        if not isinstance(value["name"], str):
            raise GeoJSONError(f"{where}.name must be a string, not {_kind(value['name'])}")
        return _class_from_names(_split_class(value["name"]), colour, where)
    names = value.get("names")
    if names is None:
        raise GeoJSONError(f"{where} needs 'name' or 'names'")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise GeoJSONError(f"{where}.names must be a list of strings, not {_short(names)}")
    return _class_from_names(names, colour, where) if names else None


def _split_class(text: str) -> list[str]:
    """QuPath's `PathClass.fromString` split: on ':', dropping trailing empty parts as Java's split does."""
    parts = text.split(":")
    while len(parts) > 1 and parts[-1] == "":
        parts.pop()
    return parts


def _class_from_names(names: list[str], colour: RGB | None, where: str) -> PathClass:
    stripped = []
    for name in names:
        name = name.strip()
        if not name:
            raise GeoJSONError(f"{where}: class name parts cannot be blank: {names!r}")
        if any(c in name for c in ":\n\r"):
            raise GeoJSONError(f"{where}: class name {name!r} contains ':' or a line break")
        stripped.append(name)
    return PathClass(tuple(stripped), colour)


def _read_class_color(value: Any, where: str) -> RGB | None:
    """[r, g, b], [r, g, b, alpha] (alpha dropped), [packed], or []/null for none, as QuPath's arrayToRgb."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) not in (0, 1, 3, 4) or not all(_is_int(v) for v in value):
        raise GeoJSONError(f"{where} must be [r, g, b] with integers 0-255, not {_short(value)}")
    if not value:
        return None
    if len(value) == 1:
        return _unpack(value[0], where)
    return _rgb(value[:3], where)


def _read_object_color(value: Any, where: str) -> RGB | None:
    """[r, g, b] or a packed (A)RGB integer; QuPath ignores arrays of any other length."""
    if value is None:
        return None
    if _is_int(value):
        return _unpack(value, where)
    if isinstance(value, list) and len(value) != 3:
        log.warning("%s: %s ignored, as QuPath does; expected [r, g, b]", where, _short(value))
        return None
    if not isinstance(value, list) or not all(_is_int(v) for v in value):
        raise GeoJSONError(
            f"{where} must be [r, g, b] with integers 0-255 or a packed RGB integer, not {_short(value)}"
        )
    return _rgb(value, where)


def _rgb(values: list, where: str) -> RGB:
    r, g, b = (int(v) for v in values)
    if not all(0 <= c <= 255 for c in (r, g, b)):
        raise GeoJSONError(f"{where} must be [r, g, b] with integers 0-255, not {_short(values)}")
    return r, g, b


def _unpack(value: Any, where: str) -> RGB:
    if not _is_int(value):
        raise GeoJSONError(f"{where} must be a packed RGB integer, not {_short(value)}")
    packed = int(value)
    return (packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF


def _read_measurements(value: Any, where: str) -> dict[str, float]:
    """A name -> number map or the pre-v0.4 list of {"name", "value"}; "NaN", "Infinity", "-inf" accepted."""
    if value is None:
        return {}
    result: dict[str, float] = {}
    if isinstance(value, list):
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or "name" not in entry or entry.get("value") is None:
                raise GeoJSONError(
                    f'{where}[{i}] must be {{"name": ..., "value": number}}, not {_short(entry)}'
                )
            name = _read_text(entry["name"], f"{where}[{i}].name")
            result[name] = _number(entry["value"], f"{where}[{i}].value")
        return result
    if not isinstance(value, dict):
        log.warning("%s: %s ignored, as QuPath does; expected an object", where, _kind(value))
        return {}
    for name, v in value.items():
        if v is None or isinstance(v, (bool, list, dict)):
            log.warning("%s: %r = %s is not a number; skipped, as QuPath does", where, name, _short(v))
            continue
        result[name] = _number(v, f"{where}: {name!r}")
    return result


def _number(value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and "_" not in value:  # "NaN", "Infinity", "-inf", " 2.5 ", "1e3" ...
        try:
            return float(value)
        except ValueError:
            pass
    raise GeoJSONError(f"{where}: {_short(value)} is not a number")


def _read_metadata(value: Any, where: str) -> dict[str, str]:
    """String values; numbers and booleans become text and other values are skipped, as in QuPath."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        log.warning("%s: %s ignored, as QuPath does; expected an object", where, _kind(value))
        return {}
    return {
        key: _json_text(v) for key, v in value.items() if v is not None and not isinstance(v, (list, dict))
    }


def _read_text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        raise GeoJSONError(f"{where} must be a string, not {_kind(value)}")
    return _json_text(value)


# ---------------------------------------------------------------------------------------------------- writing


def object_to_feature(obj: PathObject) -> dict:
    """The GeoJSON Feature QuPath itself would write for `obj` (keys in QuPath's order)."""
    return _feature(obj, f"object {getattr(obj, 'id', '?')}")


def objects_to_json(objects: Iterable[PathObject]) -> str:
    """A FeatureCollection string, one feature per line (for result chunks sent to QuPath)."""
    lines = [
        _dumps(_feature(obj, f"object {i} (id {getattr(obj, 'id', '?')})")) for i, obj in enumerate(objects)
    ]
    return _HEAD + "".join(("\n" if i == 0 else ",\n") + line for i, line in enumerate(lines)) + _TAIL


def write_objects(objects: Iterable[PathObject], path: str | os.PathLike[str]) -> int:
    """Write a FeatureCollection atomically, feature by feature; return how many objects were written."""
    with GeoJSONWriter(path) as writer:
        writer.write_many(objects)
    return writer.count


class GeoJSONWriter:
    """Stream objects into a FeatureCollection file: a temporary file, renamed over `path` on a clean exit.

    On any error (a bad object or an exception in the with-block) the temporary file is deleted and an
    existing `path` is left untouched.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.count = 0
        self._file: IO[str] | None = None
        self._stack: ExitStack | None = None

    def __enter__(self) -> GeoJSONWriter:
        with ExitStack() as stack:
            self._file = stack.enter_context(atomic_write(self.path))
            self._file.write(_HEAD)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        stack, self._stack, handle, self._file = self._stack, None, self._file, None
        if stack is None:
            return False
        if exc_type is None:
            with stack:  # a failing last write still removes the temporary file
                handle.write(_TAIL)
            return False
        return bool(stack.__exit__(exc_type, exc, tb))

    def write(self, obj: PathObject) -> None:
        """Append one object."""
        if self._file is None:
            raise RuntimeError("GeoJSONWriter is not open; use it as `with GeoJSONWriter(path) as writer:`")
        line = _dumps(_feature(obj, f"{self.path}: object {self.count} (id {getattr(obj, 'id', '?')})"))
        self._file.write(("\n" if self.count == 0 else ",\n") + line)
        self.count += 1

    def write_many(self, objects: Iterable[PathObject]) -> None:
        """Append objects as they come (an iterator is consumed lazily, never held in memory)."""
        for obj in objects:
            self.write(obj)


def _dumps(feature: dict) -> str:
    return json.dumps(feature, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _feature(obj: Any, label: str) -> dict:
    if not isinstance(obj, PathObject):
        raise GeoJSONError(f"{label}: expected a PathObject, not {type(obj).__name__}")
    if obj.object_type not in OBJECT_TYPES:
        raise GeoJSONError(
            f"{label}: unknown object type {obj.object_type!r}; expected one of {OBJECT_TYPES}"
        )
    if not isinstance(obj.id, str) or not _UUID.fullmatch(obj.id):
        raise GeoJSONError(f"{label}: id {obj.id!r} is not a UUID; QuPath would replace it")
    feature: dict[str, Any] = {
        "type": "Feature",
        "id": obj.id.lower(),
        "geometry": _geometry_json(obj.geometry, f"{label}: geometry"),
    }
    if obj.nucleus_geometry is not None:
        if obj.object_type == "cell":
            feature["nucleusGeometry"] = _geometry_json(obj.nucleus_geometry, f"{label}: nucleus_geometry")
        else:
            log.warning("%s: nucleus_geometry not written: QuPath keeps a nucleus only for cells", label)
    props: dict[str, Any] = {"objectType": obj.object_type}
    if obj.name is not None:
        props["name"] = _string(obj.name, f"{label}: name")
    if obj.color is not None:
        props["color"] = _rgb_json(obj.color, f"{label}: color")
    if obj.path_class is not None:
        props["classification"] = _class_json(obj.path_class, f"{label}: path_class")
    if obj.locked:
        props["isLocked"] = True
    if obj.object_type == "tmaCore":
        props["isMissing"] = False  # QuPath always writes it for cores; PathObject has no such field
    if obj.measurements:
        props["measurements"] = {
            _string(k, f"{label}: measurement name"): _measurement_json(v, f"{label}: measurement {k!r}")
            for k, v in obj.measurements.items()
        }
    if obj.metadata:
        props["metadata"] = {
            _string(k, f"{label}: metadata key"): _string(v, f"{label}: metadata {k!r}")
            for k, v in obj.metadata.items()
        }
    feature["properties"] = props
    return feature


def _geometry_json(geometry: Any, label: str) -> dict:
    """GeoJSON for a shapely geometry that QuPath reads back unchanged (2D, finite, valid, no collections)."""
    if not isinstance(geometry, BaseGeometry):
        raise GeoJSONError(f"{label}: must be a shapely geometry, not {type(geometry).__name__}")
    geometry = _homogenize(geometry, label)
    if geometry.has_z:
        geometry = shapely.force_2d(geometry)
    if geometry.is_empty:  # QuPath reads these as an empty ROI; it cannot read an empty Point
        return {
            "type": "MultiPoint" if geometry.geom_type == "Point" else geometry.geom_type,
            "coordinates": [],
        }
    if not np.isfinite(shapely.get_coordinates(geometry)).all():
        raise GeoJSONError(f"{label}: {geometry.geom_type} has NaN or infinite coordinates")
    if geometry.geom_type in ("Polygon", "MultiPolygon") and not geometry.is_valid:
        raise GeoJSONError(
            f"{label}: invalid {geometry.geom_type} ({shapely.is_valid_reason(geometry)}); QuPath cannot "
            "import it; repair it first, e.g. with shapely.make_valid"
        )
    return {"type": geometry.geom_type, "coordinates": _coordinates_json(geometry)}


def _coordinates_json(geometry: BaseGeometry) -> list:
    """GeoJSON coordinates (closed rings, exterior first), as `mapping` gives but from coordinate arrays."""
    kind = geometry.geom_type
    if kind == "Point":
        return _xy_json(shapely.get_coordinates(geometry))[0]
    if kind in ("LineString", "MultiPoint"):
        return _xy_json(shapely.get_coordinates(geometry))
    if kind == "Polygon":
        return [_xy_json(shapely.get_coordinates(ring)) for ring in shapely.get_rings(geometry)]
    return [_coordinates_json(part) for part in geometry.geoms]  # MultiLineString, MultiPolygon


def _xy_json(xy: np.ndarray) -> list:
    """Positions as lists; all ints when every value is integral (as QuPath writes them), else floats."""
    if np.array_equal(xy, np.round(xy)) and np.abs(xy).max(initial=0) < 2**53:
        return xy.astype(np.int64).tolist()
    return xy.tolist()


def _class_json(path_class: Any, label: str) -> Any:
    """{"name"|"names", "color"}; without a colour QuPath accepts only the plain string (and picks one)."""
    if not isinstance(path_class, PathClass) or not path_class.names:
        raise GeoJSONError(f"{label}: must be a PathClass with at least one name, not {_short(path_class)}")
    for name in path_class.names:
        if (
            not isinstance(name, str)
            or not name.strip()
            or name != name.strip()
            or any(c in name for c in ":\n\r")
        ):
            raise GeoJSONError(
                f"{label}: class name {name!r} must be non-blank text without ':', line breaks "
                "or surrounding spaces"
            )
    if path_class.color is None:
        return path_class.name
    names = {"name": path_class.names[0]} if len(path_class.names) == 1 else {"names": list(path_class.names)}
    return {**names, "color": _rgb_json(path_class.color, f"{label}.color")}


def _rgb_json(colour: Any, label: str) -> list[int]:
    if (
        not isinstance(colour, (tuple, list))
        or len(colour) != 3
        or not all(
            isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour
        )
    ):
        raise GeoJSONError(f"{label} must be (r, g, b) with integers 0-255, not {_short(colour)}")
    return [int(c) for c in colour]


def _measurement_json(value: Any, label: str) -> float | str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise GeoJSONError(f"{label} must be a number, not {_short(value)}")
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return number


def _string(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise GeoJSONError(f"{label} must be a string, not {_short(value)}")
    return value


# ---------------------------------------------------------------------------------------------------- helpers


def _is_int(value: Any) -> bool:
    """An integer as Gson's getAsInt accepts it: a JSON integer or an integral float."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_true(value: Any) -> bool:
    """Java's Boolean.parseBoolean on a JSON primitive: true or "true" in any case."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _json_text(value: Any) -> str:
    """A JSON primitive as text, as Gson's getAsString gives it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
