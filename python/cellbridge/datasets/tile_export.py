"""Training tiles from a slide and its QuPath annotations: tile PNGs + a COCO JSON.

Which area is tiled: annotations of class `Training area` (minus `Ignore*` annotations) when there are any;
else unclassified annotation polygons; else the bounding box of the labelled objects. Tiles outside that
area keep a `training_area` polygon, so training can ignore the unannotated pixels.

Which objects: every classified object that is not a region. An object belongs to each tile that holds its
centre; its box is clipped to the tile. Points (QuPath point annotations, one object per point of a
MultiPoint) become boxes of `point_box` level-0 pixels (one size, or one per class). Polygons also get a
COCO `segmentation`. Category ids are stable: sorted class names, or the order given.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import shapely
from shapely.geometry import MultiPoint, Point, box
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from cellbridge.datasets.coco import write_coco
from cellbridge.datasets.records import Annotation, Dataset, ImageRecord, sorted_classes
from cellbridge.errors import DatasetError
from cellbridge.geometry import polygons_of, shift_scale
from cellbridge.io.atomic import atomic_write
from cellbridge.io.slides import Slide
from cellbridge.objects import PathObject, class_color
from cellbridge.tiling import plan_tiles

TRAINING_AREA = "Training area"
IGNORE = "Ignore*"


@dataclass
class _Item:
    label: str
    centre: tuple[float, float]
    bbox: tuple[float, float, float, float]  # level-0
    geometry: BaseGeometry | None
    is_point: bool


@dataclass
class TileExport:
    """What an export wrote."""

    json_path: Path
    images: int
    annotations: int
    per_class: dict[str, int]
    region_source: str
    skipped: Counter = field(default_factory=Counter)


def parse_point_box(value: str) -> float | dict[str, float]:
    """`"24"` → 24.0; `"RBC=24,WBC=48,*=30"` → per-class sizes (`*` is the default)."""
    if "=" not in value:
        return _box_side(value, value)
    sizes = {}
    for part in value.split(","):
        name, _, size = part.partition("=")
        sizes[name.strip()] = _box_side(size, value)
    return sizes


def _box_side(text: str, whole: str) -> float:
    """One --point-box size: a positive number of pixels."""
    try:
        size = float(text)
    except ValueError:
        size = math.nan
    if not (math.isfinite(size) and size > 0):
        raise DatasetError(f"--point-box {whole!r}: {text.strip()!r} is not a positive box size in pixels")
    return size


def _box_size(point_box: float | dict[str, float], label: str) -> float:
    if isinstance(point_box, dict):
        if label in point_box:
            return point_box[label]
        if "*" in point_box:
            return point_box["*"]
        raise DatasetError(f"no --point-box size for class {label!r} (give one, or a default with '*=SIZE')")
    return point_box


def _items(objects: Iterable[PathObject], point_box: float | dict[str, float], skipped: Counter) -> list[_Item]:
    items = []
    for obj in objects:
        label = obj.class_name
        geometry = obj.locating_geometry
        if isinstance(geometry, (Point, MultiPoint)):
            points = [geometry] if isinstance(geometry, Point) else list(geometry.geoms)
            half = _box_size(point_box, label) / 2
            for p in points:
                items.append(_Item(label, (p.x, p.y), (p.x - half, p.y - half, p.x + half, p.y + half), None, True))
        elif polygons_of(geometry):
            c = geometry.centroid
            items.append(_Item(label, (c.x, c.y), geometry.bounds, geometry, False))
        else:
            skipped["objects without area or points (lines)"] += 1
    return items


def _region(objects: list[PathObject], labelled: list[_Item], region_class: str) -> tuple[BaseGeometry, str]:
    def areal(o: PathObject) -> bool:
        return o.object_type == "annotation" and bool(polygons_of(o.geometry))

    ignore = [o.geometry for o in objects if o.class_name == IGNORE and areal(o)]
    areas = [o.geometry for o in objects if o.class_name == region_class and areal(o)]
    source = f"{region_class!r} annotations"
    if not areas:
        areas = [o.geometry for o in objects if o.path_class is None and areal(o)]
        source = "unclassified annotations"
    if not areas:
        if not labelled:
            raise DatasetError("no labelled objects to export (objects need a classification)")
        bounds = np.array([i.bbox for i in labelled])
        areas = [box(bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max())]
        source = "bounding box of the labelled objects"
    region = shapely.union_all(areas)
    if ignore:
        region = region.difference(shapely.union_all(ignore))
    return region, source


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DatasetError(f"{path}: PNG encoding failed")
    with atomic_write(path, "wb") as handle:
        handle.write(encoded.tobytes())


def export_coco_tiles(slide: Slide, objects: Sequence[PathObject], out_dir: str | Path, tile_size: int = 1024,
                      overlap: int = 128, downsamples: Sequence[float] = (1.0,),
                      point_box: float | dict[str, float] = 24.0, region_class: str = TRAINING_AREA,
                      keep_empty: bool = False, classes: list[str] | None = None, progress: bool = False,
                      cancelled: Callable[[], bool] = lambda: False) -> TileExport:
    """Write tiles of the annotated region at each downsample as PNGs and one COCO JSON (`annotations.json`)."""
    out_dir = Path(out_dir)
    skipped: Counter = Counter()
    non_regions = [o for o in objects if o.class_name not in (region_class, IGNORE)]
    skipped["unclassified objects"] = sum(1 for o in non_regions if o.path_class is None and
                                          o.object_type != "annotation")
    items = _items([o for o in non_regions if o.path_class is not None], point_box, skipped)
    region, region_source = _region(list(objects), items, region_class)
    if region.is_empty:
        raise DatasetError("the training area is empty (Ignore* annotations cover it all?)")
    labels = {i.label for i in items}
    ordered = sorted_classes(labels, classes)
    centres = shapely.points([i.centre for i in items]) if items else []
    tree = shapely.STRtree(centres)
    plans = [(d, plan_tiles(*slide.dimensions, tile_size=tile_size, overlap=overlap, downsample=d, roi=region))
             for d in downsamples]
    records: list[ImageRecord] = []
    total = sum(len(plan) for _, plan in plans)
    with tqdm(total=total, desc="export tiles", unit="tile", disable=not progress) as bar:
        for downsample, plan in plans:
            for tile in plan:
                if cancelled():
                    raise KeyboardInterrupt
                bar.update()
                x0, y0, x1, y1 = tile.bounds
                hits = [items[int(k)] for k in tree.query(box(x0, y0, x1, y1))] if items else []
                inside = [i for i in hits if x0 <= i.centre[0] < x1 and y0 <= i.centre[1] < y1]
                annotations = [a for i in inside if (a := _to_tile(i, tile.bounds, downsample)) is not None]
                if not annotations and not keep_empty:
                    continue
                name = f"{slide.path.stem}_d{downsample:g}_x{round(x0)}_y{round(y0)}"
                path = out_dir / "images" / f"{name}.png"
                _write_png(path, slide.read_region(x0, y0, x1 - x0, y1 - y0, downsample))
                frame = box(x0, y0, x1, y1)
                area = None if region.covers(frame) else shift_scale(region.intersection(frame), x0, y0,
                                                                           downsample)
                records.append(ImageRecord(path, tile.size, tile.size, annotations, area, name))
    dataset = Dataset(records, ordered, {c: class_color(c) for c in ordered})
    json_path = out_dir / "annotations.json"
    write_coco(dataset, json_path)
    counts = dataset.counts()
    return TileExport(json_path, len(records), sum(counts.values()), counts, region_source, skipped)


def _to_tile(item: _Item, bounds: tuple[float, float, float, float], downsample: float) -> Annotation | None:
    x0, y0, x1, y1 = bounds
    bx0, by0 = max(item.bbox[0], x0), max(item.bbox[1], y0)
    bx1, by1 = min(item.bbox[2], x1), min(item.bbox[3], y1)
    bbox = ((bx0 - x0) / downsample, (by0 - y0) / downsample, (bx1 - x0) / downsample, (by1 - y0) / downsample)
    if bbox[2] - bbox[0] < 1 or bbox[3] - bbox[1] < 1:
        return None
    geometry = None
    if item.geometry is not None:
        geometry = shift_scale(item.geometry.intersection(box(*bounds)), x0, y0, downsample)
    point = ((item.centre[0] - x0) / downsample, (item.centre[1] - y0) / downsample) if item.is_point else None
    return Annotation(item.label, bbox, geometry, point)
