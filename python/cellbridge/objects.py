"""QuPath objects as Python data: what flows from the engines through merge to GeoJSON.

The names follow QuPath's own (`PathObject`, `PathClass`, object types `annotation`, `detection`, `cell`,
`tile`, `tmaCore`) so that a QuPath user reads them without translation. Coordinates are always level-0
pixels of the slide, x right, y down.
"""

from __future__ import annotations

import colorsys
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Literal

from shapely.geometry.base import BaseGeometry

ObjectType = Literal["annotation", "detection", "cell", "tile", "tmaCore"]
OBJECT_TYPES: tuple[str, ...] = ("annotation", "detection", "cell", "tile", "tmaCore")
REGION_OBJECT_TYPES: tuple[str, ...] = ("annotation", "detection")  # what region and instance engines may emit

RGB = tuple[int, int, int]

#: the measurement holding a detected object's score (QuPath's name); seams keep the higher-scoring duplicate
SCORE_MEASUREMENT = "Detection probability"

# QuPath's built-in class colours (qupath.lib.objects.classes.PathClass), so our classes look familiar.
STANDARD_CLASS_COLORS: dict[str, RGB] = {
    "Tumor": (200, 0, 0), "Stroma": (150, 200, 150), "Immune cells": (160, 90, 160),
    "Necrosis": (50, 50, 50), "Other": (255, 200, 0), "Region*": (0, 0, 180), "Ignore*": (180, 180, 180),
    "Positive": (200, 50, 50), "Negative": (90, 90, 180), "1+": (255, 215, 0), "2+": (225, 150, 50),
    "3+": (200, 50, 50),
}


def class_color(name: str) -> RGB:
    """A class's colour: QuPath's own for its standard classes, else a stable bright colour from the name."""
    if name in STANDARD_CLASS_COLORS:
        return STANDARD_CLASS_COLORS[name]
    digest = hashlib.sha1(name.encode("utf-8")).digest()
    hue, saturation, value = digest[0] / 255, 0.55 + digest[1] / 255 * 0.4, 0.65 + digest[2] / 255 * 0.3
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


@dataclass(frozen=True)
class PathClass:
    """A QuPath classification: one name, or several for a derived class (e.g. `Tumor: Positive`)."""

    names: tuple[str, ...]
    color: RGB | None = None

    @classmethod
    def of(cls, name: str, color: RGB | None = None) -> PathClass:
        """A class from QuPath's string form (`"Tumor"` or `"Tumor: Positive"`)."""
        names = tuple(part.strip() for part in name.split(":") if part.strip())
        if not names:
            raise ValueError(f"empty class name {name!r}")
        return cls(names, None if color is None else (int(color[0]), int(color[1]), int(color[2])))

    @property
    def name(self) -> str:
        """QuPath's string form: derived names joined with ': '."""
        return ": ".join(self.names)

    def __str__(self) -> str:
        return self.name


def new_object_id() -> str:
    """A fresh random UUID string, QuPath's object id format since v0.4."""
    return str(uuid.uuid4())


@dataclass
class PathObject:
    """One QuPath object: its ROI geometry, type, class, measurements, and a nucleus ROI for cells."""

    geometry: BaseGeometry
    object_type: ObjectType = "detection"
    path_class: PathClass | None = None
    measurements: dict[str, float] = field(default_factory=dict)
    nucleus_geometry: BaseGeometry | None = None
    name: str | None = None
    color: RGB | None = None
    locked: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=new_object_id)

    def __post_init__(self) -> None:
        if self.object_type not in OBJECT_TYPES:
            raise ValueError(f"unknown object type {self.object_type!r}; expected one of {OBJECT_TYPES}")

    @property
    def class_name(self) -> str | None:
        """The classification as QuPath's string, or None when unclassified."""
        return None if self.path_class is None else self.path_class.name

    @property
    def locating_geometry(self) -> BaseGeometry:
        """The geometry that places the object: the nucleus for cells (as QuPath does), else the ROI."""
        return self.nucleus_geometry if self.nucleus_geometry is not None else self.geometry
