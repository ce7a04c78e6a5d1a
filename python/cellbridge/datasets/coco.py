"""COCO detection JSON to and from the internal dataset type.

Written files load in pycocotools. Besides the standard fields, categories carry their QuPath `color`,
point annotations carry a COCO keypoint (`keypoints: [x, y, 2]`, category keypoint `centre`), and an image
may carry `training_area` (COCO polygon lists): outside it the image is not annotated (partial annotation).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import shapely
from pycocotools import mask as mask_utils
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from cellbridge.datasets.records import Annotation, Dataset, ImageRecord
from cellbridge.errors import DatasetError
from cellbridge.geometry import polygons_of
from cellbridge.io.atomic import atomic_write
from cellbridge.objects import class_color


def to_coco_segmentation(geometry: BaseGeometry) -> list[list[float]]:
    """COCO polygon lists (exterior rings, flat x,y lists) of a geometry; holes are not representable."""
    rings = []
    for polygon in polygons_of(geometry):
        coords = np.asarray(polygon.exterior.coords)[:-1]
        if len(coords) >= 3:
            rings.append([round(float(v), 2) for v in coords.reshape(-1)])
    return rings


def from_coco_segmentation(segmentation: Any, height: int, width: int) -> BaseGeometry | None:
    """A shapely geometry from COCO polygon lists or RLE; None when empty."""
    if not segmentation:
        return None
    if isinstance(segmentation, list):
        polygons = [Polygon(np.asarray(ring, dtype=float).reshape(-1, 2)) for ring in segmentation if len(ring) >= 6]
    else:
        rle = mask_utils.frPyObjects(segmentation, height, width) if isinstance(segmentation.get("counts"), list) \
            else segmentation
        binary = mask_utils.decode(rle).astype(np.uint8)
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        polygons = [Polygon(c.reshape(-1, 2) + 0.5) for c in contours if len(c) >= 3]
    polygons = [shapely.make_valid(p) if not p.is_valid else p for p in polygons]
    merged = shapely.union_all(polygons) if polygons else None
    return None if merged is None or merged.is_empty else merged


def coco_dict(dataset: Dataset, base_dir: Path) -> dict[str, Any]:
    """The COCO JSON content, image file names relative to `base_dir`."""
    categories = [{"id": dataset.category_id(name), "name": name, "supercategory": "object",
                   "color": list(dataset.colors.get(name, class_color(name))),
                   "keypoints": ["centre"], "skeleton": []} for name in dataset.classes]
    images, annotations = [], []
    for image_id, image in enumerate(dataset.images, start=1):
        entry: dict[str, Any] = {"id": image_id, "file_name": os.path.relpath(image.path, base_dir),
                                 "width": image.width, "height": image.height}
        if image.training_area is not None:
            entry["training_area"] = to_coco_segmentation(image.training_area)
        images.append(entry)
        for a in image.annotations:
            x0, y0, x1, y1 = a.bbox
            item: dict[str, Any] = {
                "id": len(annotations) + 1, "image_id": image_id, "category_id": dataset.category_id(a.label),
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "area": round(a.area, 2), "iscrowd": 0,
                "segmentation": to_coco_segmentation(a.geometry) if a.geometry is not None else [],
            }
            if a.point is not None:
                item["keypoints"] = [round(a.point[0], 2), round(a.point[1], 2), 2]
                item["num_keypoints"] = 1
            annotations.append(item)
    return {"info": {"description": "written by cellbridge"}, "images": images, "annotations": annotations,
            "categories": categories}


def write_coco(dataset: Dataset, json_path: str | Path) -> None:
    """Write the dataset as COCO JSON (atomically); image paths are stored relative to the JSON's folder."""
    json_path = Path(json_path)
    content = coco_dict(dataset, json_path.parent.resolve())
    with atomic_write(json_path) as handle:
        json.dump(content, handle)


def _require(item: dict, key: str, where: str) -> Any:
    if key not in item:
        raise DatasetError(f"{where}: missing {key!r}")
    return item[key]


def _size(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0 \
            or value != int(value):
        raise DatasetError(f"{where} must be a positive whole number of pixels, got {value!r}")
    return int(value)


def read_coco(json_path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    """A COCO detection JSON as a Dataset; file names resolve against `image_dir` (default: the JSON's folder)."""
    json_path = Path(json_path)
    try:
        content = json.loads(json_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DatasetError(f"{json_path}: not a COCO JSON file (binary, not UTF-8 text)") from None
    except json.JSONDecodeError as error:
        raise DatasetError(f"{json_path}: not valid JSON (line {error.lineno}, column {error.colno}: "
                           f"{error.msg})") from error
    if not isinstance(content, dict) or not isinstance(content.get("images"), list):
        raise DatasetError(f"{json_path}: not a COCO file (no 'images' list)")
    base = Path(image_dir) if image_dir is not None else json_path.parent
    categories = sorted(content.get("categories", []), key=lambda c: c.get("id", 0))
    names = {}
    for i, category in enumerate(categories):
        where = f"{json_path}: category {i}"
        names[_require(category, "id", where)] = str(_require(category, "name", where))
    colors = {str(c["name"]): tuple(int(v) for v in c["color"][:3]) for c in categories
              if isinstance(c.get("color"), list) and len(c["color"]) >= 3}
    images: dict[Any, ImageRecord] = {}
    for i, entry in enumerate(content["images"]):
        where = f"{json_path}: image {i}"
        width, height = _size(_require(entry, "width", where), f"{where}: width"), \
            _size(_require(entry, "height", where), f"{where}: height")
        record = ImageRecord(base / str(_require(entry, "file_name", where)), width, height)
        if entry.get("training_area"):
            record.training_area = from_coco_segmentation(entry["training_area"], height, width)
        images[_require(entry, "id", where)] = record
    for i, item in enumerate(content.get("annotations", [])):
        where = f"{json_path}: annotation {i}"
        image = images.get(_require(item, "image_id", where))
        if image is None:
            raise DatasetError(f"{where}: image_id {item['image_id']} is not among the images")
        label = names.get(_require(item, "category_id", where))
        if label is None:
            raise DatasetError(f"{where}: category_id {item['category_id']} is not among the categories")
        bbox = _require(item, "bbox", where)
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DatasetError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
            raise DatasetError(f"{where}: bbox must be finite with a width and height of 0 or more, got {bbox!r}")
        keypoints = item.get("keypoints") or []
        point = (float(keypoints[0]), float(keypoints[1])) if len(keypoints) >= 3 and keypoints[2] > 0 else None
        geometry = from_coco_segmentation(item.get("segmentation"), image.height, image.width)
        image.annotations.append(Annotation(label, (x, y, x + w, y + h), geometry, point))
    classes = [names[k] for k in sorted(names)]
    return Dataset(list(images.values()), classes, {c: colors.get(c, class_color(c)) for c in classes})

