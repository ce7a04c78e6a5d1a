"""Small geometry helpers over shapely shared by several packages."""

from __future__ import annotations

import math

import cv2
import numpy as np
import shapely
from shapely.geometry import Polygon, box
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


def to_level0(geometry: BaseGeometry, x0: float, y0: float, downsample: float) -> BaseGeometry:
    """Tile-pixel geometry → level-0 coordinates: p · downsample + (x0, y0) (the inverse of `shift_scale`)."""
    return shapely.transform(geometry, lambda c: c * downsample + np.array([x0, y0]))


def label_polygons(labels: np.ndarray, min_area: int = 1) -> dict[int, Polygon]:
    """One polygon per label of an instance label image, tracing pixel edges (not pixel centres).

    Holes are ignored (nuclei and cells are filled); a label split into pieces keeps its largest piece.
    """
    from skimage.measure import regionprops

    out: dict[int, Polygon] = {}
    for region in regionprops(labels):
        if region.area < min_area:
            continue
        r0, c0, r1, c1 = region.bbox
        crop = np.pad(region.image.astype(np.uint8), 1)
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        best = max(contours, key=cv2.contourArea)
        if len(best) < 3:  # one pixel or a line of pixels: its pixel square(s) from the bbox of the trace
            xs, ys = best[:, 0, 0], best[:, 0, 1]
            polygon = box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        else:
            # cv2 traces boundary pixel centres; growing by half a pixel puts the outline on the pixel edges
            polygon = Polygon(best[:, 0, :] + 0.5).buffer(0.5, join_style="mitre")
        if not polygon.is_valid:
            polygon = shapely.make_valid(polygon)
            polygon = max((p for p in polygons_of(polygon)), key=lambda p: p.area)
        out[region.label] = shapely.transform(polygon, lambda c: c + np.array([c0 - 1, r0 - 1]))
    return out


def pixels_inside(
    geometry: BaseGeometry, shape: tuple[int, int], origin: tuple[float, float], downsample: float
) -> np.ndarray | None:
    """Flat indices into the tile of the pixels whose centres lie inside `geometry` (None if not an area).

    Even-odd scanline fill over all rings at once (holes and multi-part shapes come for free), half-open so
    that a centre on a left or top edge is inside and one on a right or bottom edge outside.
    """
    polygons = polygons_of(geometry)
    if not polygons:
        return None
    height, width = shape
    rings = [np.asarray(ring.coords, np.float64) for p in polygons for ring in (p.exterior, *p.interiors)]
    starts = np.concatenate([r[:-1] for r in rings])
    ends = np.concatenate([r[1:] for r in rings])
    scale = 1.0 / downsample
    offset = np.array(origin, np.float64)
    starts = (starts - offset) * scale  # tile pixel coordinates: pixel (i, j) covers [j, j+1) x [i, i+1)
    ends = (ends - offset) * scale

    lo = np.minimum(starts, ends).min(axis=0)
    hi = np.maximum(starts, ends).max(axis=0)
    col0, row0 = max(0, math.ceil(lo[0] - 0.5)), max(0, math.ceil(lo[1] - 0.5))
    col1, row1 = min(width, math.ceil(hi[0] - 0.5)), min(height, math.ceil(hi[1] - 0.5))
    if col0 >= col1 or row0 >= row1:
        return np.zeros(0, np.int64)

    centres_y = np.arange(row0, row1) + 0.5  # (R,)
    y0, y1 = starts[:, 1], ends[:, 1]
    crosses = (y0[None, :] <= centres_y[:, None]) != (y1[None, :] <= centres_y[:, None])  # (R, E)
    rows, edges = np.nonzero(crosses)
    if rows.size == 0:
        return np.zeros(0, np.int64)
    e0, e1 = starts[edges], ends[edges]
    x = e0[:, 0] + (centres_y[rows] - e0[:, 1]) * (e1[:, 0] - e0[:, 0]) / (e1[:, 1] - e0[:, 1])
    # A crossing at x toggles every pixel whose centre c + 0.5 lies left of it: columns c < ceil(x - 0.5).
    ncols = col1 - col0
    stop = np.clip(np.ceil(x - 0.5) - col0, 0, ncols).astype(np.int64)
    toggles = np.bincount(rows * (ncols + 1) + stop, minlength=(row1 - row0) * (ncols + 1))
    toggles = toggles.reshape(row1 - row0, ncols + 1)
    # crossings right of column c = all crossings with stop > c
    right_of = toggles[:, ::-1].cumsum(axis=1)[:, ::-1][:, 1:]
    inside_rows, inside_cols = np.nonzero(right_of & 1)
    return (inside_rows + row0).astype(np.int64) * width + (inside_cols + col0)


def rasterize(geometry: BaseGeometry, shape: tuple[int, int], origin: tuple[float, float] = (0.0, 0.0),
              downsample: float = 1.0) -> np.ndarray:
    """Boolean mask (shape) of the pixels whose centres lie inside `geometry` (level-0 → pixels via origin, scale)."""
    mask = np.zeros(shape[0] * shape[1], bool)
    index = pixels_inside(geometry, shape, origin, downsample)
    if index is not None:
        mask[index] = True
    return mask.reshape(shape)
