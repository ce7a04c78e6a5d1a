"""Small geometry helpers over shapely shared by several packages."""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry


def polygons_of(geometry: BaseGeometry) -> list[Polygon]:
    """The non-empty polygons of any geometry (none for points and lines)."""
    if isinstance(geometry, Polygon):
        return [geometry] if not geometry.is_empty else []
    if hasattr(geometry, "geoms"):
        return [p for g in geometry.geoms for p in polygons_of(g)]
    return []


def shift_scale(geometry: BaseGeometry, x0: float, y0: float, scale: float) -> BaseGeometry:
    """Geometry mapped by (p - (x0, y0)) / scale, e.g. level-0 → tile pixels."""
    return shapely.transform(geometry, lambda c: (c - np.array([x0, y0])) / scale)
