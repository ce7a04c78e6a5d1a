"""The internal dataset type that COCO, Pascal VOC and tile exports all read into and write from.

Pixel coordinates are those of the image file (x right, y down, continuous: a pixel i spans [i, i+1)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shapely.geometry.base import BaseGeometry

from cellbridge.objects import RGB

Box = tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass
class Annotation:
    """One labelled object in an image: a box, and optionally its outline and/or centre point."""

    label: str
    bbox: Box
    geometry: BaseGeometry | None = None  # polygon outline, when the source had one
    point: tuple[float, float] | None = None  # centre, when the source was a point annotation

    @property
    def area(self) -> float:
        """Outline area when known, else box area."""
        if self.geometry is not None and self.geometry.area > 0:
            return float(self.geometry.area)
        return (self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1])


@dataclass
class ImageRecord:
    """An image file with its annotations; `training_area` limits where it is fully annotated."""

    path: Path
    width: int
    height: int
    annotations: list[Annotation] = field(default_factory=list)
    training_area: BaseGeometry | None = None  # None: the whole image is annotated
    name: str = ""
    mpp: float | None = None  # µm per pixel when known (None: estimate it where scale matters)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.path.stem


@dataclass
class Dataset:
    """Images with annotations and the ordered class list (COCO category id = position + 1)."""

    images: list[ImageRecord]
    classes: list[str]
    colors: dict[str, RGB] = field(default_factory=dict)

    def category_id(self, label: str) -> int:
        """The stable COCO category id of a class name."""
        return self.classes.index(label) + 1

    def counts(self) -> dict[str, int]:
        """Number of annotations per class."""
        counts = dict.fromkeys(self.classes, 0)
        for image in self.images:
            for annotation in image.annotations:
                counts[annotation.label] = counts.get(annotation.label, 0) + 1
        return counts


def sorted_classes(labels: set[str] | list[str], order: list[str] | None = None) -> list[str]:
    """Class names in a stable order: the given `order` first, the rest alphabetically."""
    order = list(order or [])
    return order + sorted(set(labels) - set(order))
