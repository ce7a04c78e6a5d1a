"""Pascal VOC (e.g. BCCD) into the internal dataset type.

Layout: `ROOT/Annotations/<id>.xml`, `ROOT/JPEGImages/<file>`, split lists in `ROOT/ImageSets/Main/<split>.txt`.
VOC boxes are 1-based inclusive pixel indices; here they become continuous coordinates (x0 = xmin - 1,
x1 = xmax). Real-data quirks are handled, not edited: boxes crossing the border are clipped, empty or
1-pixel boxes dropped, an object listed twice (same class, IoU ≥ 0.9) kept once, class names stripped of whitespace.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

from cellbridge.datasets.records import Annotation, Box, Dataset, ImageRecord, sorted_classes
from cellbridge.errors import DatasetError
from cellbridge.objects import class_color

log = logging.getLogger(__name__)

DUPLICATE_IOU = 0.9
MIN_BOX_SIZE = 2.0  # pixels: BCCD lists two 1 x 1 "boxes" (xmin == xmax), which are not objects


def box_iou(a: Box, b: Box) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clip_box(bbox: Box, width: float, height: float) -> Box | None:
    """The box clipped to the image, or None when nothing of it is left."""
    x0, y0 = max(bbox[0], 0.0), max(bbox[1], 0.0)
    x1, y1 = min(bbox[2], float(width)), min(bbox[3], float(height))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _text(element: ElementTree.Element, path: str, where: str) -> str:
    value = element.findtext(path)
    if value is None or not value.strip():
        raise DatasetError(f"{where}: missing <{path}>")
    return value.strip()


def read_voc_annotation(xml_path: Path, image_dir: Path, stats: Counter | None = None) -> ImageRecord:
    """One VOC XML file as an ImageRecord (image path resolved in `image_dir`)."""
    stats = stats if stats is not None else Counter()
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as error:
        raise DatasetError(f"{xml_path}: not valid XML ({error})") from error
    where = str(xml_path)
    filename = root.findtext("filename") or f"{xml_path.stem}.jpg"
    image_path = image_dir / filename.strip()
    if not image_path.exists():
        raise DatasetError(f"{xml_path}: image {image_path} does not exist")
    try:
        width, height = int(_text(root, "size/width", where)), int(_text(root, "size/height", where))
    except ValueError as error:
        raise DatasetError(f"{where}: image size is not a number ({error})") from error
    annotations: list[Annotation] = []
    for index, obj in enumerate(root.findall("object")):
        label = _text(obj, "name", f"{where}: object {index}")
        try:
            raw = tuple(float(_text(obj, f"bndbox/{k}", f"{where}: object {index}"))
                        for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as error:
            raise DatasetError(f"{where}: object {index}: box coordinate is not a number ({error})") from error
        bbox = clip_box((raw[0] - 1, raw[1] - 1, raw[2], raw[3]), width, height)
        if bbox is None or bbox[2] - bbox[0] < MIN_BOX_SIZE or bbox[3] - bbox[1] < MIN_BOX_SIZE:
            stats["empty boxes dropped"] += 1
            continue
        if bbox != (raw[0] - 1, raw[1] - 1, raw[2], raw[3]):
            stats["boxes clipped to the image"] += 1
        if any(a.label == label and box_iou(a.bbox, bbox) >= DUPLICATE_IOU for a in annotations):
            stats["duplicate objects dropped"] += 1
            continue
        annotations.append(Annotation(label, bbox))
    return ImageRecord(image_path, width, height, annotations, name=xml_path.stem)


def read_voc(root: str | Path, split: str | None = None, classes: list[str] | None = None) -> Dataset:
    """A Pascal VOC folder (optionally one split from ImageSets/Main) as a Dataset."""
    root = Path(root)
    annotation_dir, image_dir = root / "Annotations", root / "JPEGImages"
    if not annotation_dir.is_dir():
        raise DatasetError(f"{root}: not a Pascal VOC folder (no Annotations/ inside)")
    if split is None:
        xml_paths = sorted(annotation_dir.glob("*.xml"))
    else:
        split_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.exists():
            available = sorted(p.stem for p in split_file.parent.glob("*.txt")) if split_file.parent.exists() else []
            raise DatasetError(f"{root}: no split {split!r} (available: {', '.join(available) or 'none'})")
        ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        xml_paths = [annotation_dir / f"{i}.xml" for i in ids]
        missing = [p for p in xml_paths if not p.exists()]
        if missing:
            raise DatasetError(f"{split_file}: lists {len(missing)} images without annotation files, "
                               f"e.g. {missing[0].name}")
    if not xml_paths:
        raise DatasetError(f"{root}: no annotation files found")
    stats: Counter = Counter()
    images = [read_voc_annotation(p, image_dir, stats) for p in xml_paths]
    for problem, count in stats.items():
        log.info("%s: %d %s", root, count, problem)
    labels = {a.label for image in images for a in image.annotations}
    ordered = sorted_classes(labels, classes)
    return Dataset(images, ordered, {c: class_color(c) for c in ordered})
