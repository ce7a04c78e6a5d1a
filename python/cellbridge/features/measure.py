"""Per-object measurements named as QuPath names them: shape, mean colour and stain optical densities.

The names follow QuPath v0.6's `qupath.lib.analysis.features.ObjectMeasurements`, which QuPath itself uses
for StarDist, InstanSeg and Cellpose detections, so a QuPath user's scripts and classifiers read ours as
their own:

========================================  =================================================================
shape (per compartment)                   ``Area µm^2``, ``Length µm`` (the perimeter), ``Circularity``,
                                          ``Solidity``, ``Max diameter µm``, ``Min diameter µm``
cells only                                ``Nucleus/Cell area ratio`` (clipped to [0, 1])
intensity (per compartment and channel)   ``Red: Mean``, ``Red: Std.Dev.``, likewise ``Green``, ``Blue``,
                                          ``Hematoxylin`` and ``Eosin``
========================================  =================================================================

Without a pixel size the units are ``px`` (``Area px^2``, ``Length px``). A cell's names carry the compartment
first, as QuPath v0.6 writes them: ``Nucleus: Area µm^2``, ``Cell: Area µm^2``, ``Nucleus: Red: Mean``,
``Cytoplasm: Red: Mean`` (cell minus nucleus), ``Cell: Red: Mean``. A plain detection has bare names
(``Area µm^2``, ``Red: Mean``), or ``Nucleus: ...`` ones when measured with ``compartment="Nucleus"``.

Shape follows QuPath's definitions on the object's full level-0 geometry: circularity 4πA/P² of the outer
ring (single polygons only, as in QuPath), solidity area / convex hull area, max diameter the diameter of the
minimum bounding circle (QuPath's `MinimumBoundingCircle`; for a rectangle, its diagonal), min diameter the
minimum caliper width (QuPath's `MinimumDiameter`). Std.Dev. is the sample standard deviation (n - 1), as in
QuPath (0 for one pixel, NaN with no pixels, where the mean is NaN too).

Intensities come from the tile the objects were detected on: a pixel belongs to an object when its centre
lies inside the polygon (half-open at the edges, so objects sharing an edge never share a pixel). Objects
reaching past the tile are measured on their visible pixels; their shape is still that of the whole object.
Stain densities use scikit-image's H&E-DAB colour deconvolution matrix (`skimage.color.hed_from_rgb`, the
matrix `rgb2hed` uses) on QuPath's optical densities, OD = -log10(max(v, 1) / 255): a white pixel is 0 and
values are on QuPath's scale (6x `rgb2hed`'s, which divides by ln(10^6)); unlike `rgb2hed` they are not
clipped at 0, as in QuPath, so means stay unbiased.

    measure_objects(objects, tile_rgb, origin=(x0, y0), downsample=2.0, mpp=0.25)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from skimage.color import hed_from_rgb

from cellbridge.geometry import pixels_inside
from cellbridge.objects import PathObject

__all__ = [
    "CHANNELS",
    "MICRON",
    "STAIN_CHANNELS",
    "intensity_name",
    "measure_objects",
    "od_from_rgb",
    "shape_name",
]

MICRON = "\u00b5m"  # QuPath's unit string (GeneralTools.micrometerSymbol): MICRO SIGN + m
RGB_CHANNELS = ("Red", "Green", "Blue")
STAIN_CHANNELS = ("Hematoxylin", "Eosin")  # QuPath's names for the deconvolved H&E channels
CHANNELS = RGB_CHANNELS + STAIN_CHANNELS

_OD_LUT = -np.log10(np.maximum(np.arange(256, dtype=np.float64), 1.0) / 255.0)  # 8-bit value -> OD
_STAINS_FROM_OD = np.ascontiguousarray(np.asarray(hed_from_rgb, np.float64)[:, :2])  # OD rgb -> (H, E)
_STAIN_LUTS = _OD_LUT[None, None, :] * _STAINS_FROM_OD[:, :, None]  # [rgb channel, stain, 8-bit value]
_POLYGON_TYPE_ID = 3


def shape_name(feature: str, mpp: float | None, compartment: str | None = None) -> str:
    """QuPath's name for a shape feature: `shape_name("Area", 0.5, "Nucleus")` -> "Nucleus: Area µm^2".

    `feature` is one of Area, Length, Circularity, Solidity, Max diameter, Min diameter.
    """
    unit = MICRON if mpp is not None else "px"
    suffix = {
        "Area": f" {unit}^2",
        "Length": f" {unit}",
        "Max diameter": f" {unit}",
        "Min diameter": f" {unit}",
    }
    if feature not in suffix and feature not in ("Circularity", "Solidity"):
        raise ValueError(f"unknown shape feature {feature!r}")
    return f"{_prefix(compartment)}{feature}{suffix.get(feature, '')}"


def intensity_name(channel: str, statistic: str, compartment: str | None = None) -> str:
    """QuPath's name for an intensity: `intensity_name("Red", "Mean", "Nucleus")` -> "Nucleus: Red: Mean"."""
    return f"{_prefix(compartment)}{channel}: {statistic}"


def od_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """Hematoxylin and eosin optical densities (..., 2) of 8-bit RGB values (..., 3), as measured here."""
    values = np.asarray(rgb)
    if values.dtype != np.uint8:
        values = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return _OD_LUT[values] @ _STAINS_FROM_OD


def measure_objects(
    objects: Sequence[PathObject],
    rgb: np.ndarray,
    origin: tuple[float, float],
    downsample: float,
    mpp: float | None,
    compartment: str | None = None,
) -> None:
    """Add QuPath's shape and intensity measurements to each object's measurement map, in place.

    `rgb` is the tile (H, W, 3, uint8) the objects were detected on; its pixel (i, j) covers level-0
    [origin_x + j * downsample, origin_x + (j + 1) * downsample) horizontally, likewise vertically. Object
    geometries are level-0 pixels; `mpp` is the level-0 pixel size in µm, or None for pixel units.
    Cells (objects with a nucleus geometry) get Nucleus:, Cytoplasm: and Cell: measurements; other objects
    get bare names, or `compartment` + ": " names when a compartment is given (e.g. "Nucleus").
    Points get no measurements and lines only a length, as in QuPath.
    """
    tile = _check_tile(rgb)
    if not (math.isfinite(downsample) and downsample > 0):
        raise ValueError(f"downsample must be a positive number, not {downsample!r}")
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"mpp must be a positive number or None, not {mpp!r}")
    objects = list(objects)
    if not objects:
        return

    # One "region" per measured outline: (object, measurement compartment, geometry).
    regions: list[tuple[PathObject, str | None, BaseGeometry]] = []
    cells: list[tuple[PathObject, int, int]] = []  # (cell, nucleus region index, cell region index)
    for obj in objects:
        if obj.nucleus_geometry is not None:
            regions.append((obj, "Nucleus", obj.nucleus_geometry))
            regions.append((obj, "Cell", obj.geometry))
            cells.append((obj, len(regions) - 2, len(regions) - 1))
        else:
            regions.append((obj, compartment, obj.geometry))

    geometries = np.array([region[2] for region in regions], dtype=object)
    areas = _add_shape_measurements(regions, geometries, mpp)
    for cell, nucleus_index, cell_index in cells:
        if areas[cell_index] > 0 and not np.isnan(areas[nucleus_index]):
            cell.measurements["Nucleus/Cell area ratio"] = float(
                np.clip(areas[nucleus_index] / areas[cell_index], 0.0, 1.0)
            )

    pixels = [pixels_inside(geometry, tile.shape[:2], origin, downsample) for geometry in geometries]
    groups: list[tuple[PathObject, str | None, np.ndarray]] = [
        (obj, compartment_name, pixels[i])
        for i, (obj, compartment_name, _) in enumerate(regions)
        if pixels[i] is not None
    ]
    for cell, nucleus_index, cell_index in cells:
        nucleus_pixels, cell_pixels = pixels[nucleus_index], pixels[cell_index]
        if cell_pixels is None:
            continue
        if nucleus_pixels is not None and nucleus_pixels.size:
            cell_pixels = cell_pixels[~np.isin(cell_pixels, nucleus_pixels, assume_unique=True)]
        groups.append((cell, "Cytoplasm", cell_pixels))
    _add_intensity_measurements(groups, tile)


# ------------------------------------------------------------------------------------------------ shape


def _add_shape_measurements(
    regions: list[tuple[PathObject, str | None, BaseGeometry]], geometries: np.ndarray, mpp: float | None
) -> np.ndarray:
    """Shape measurements for every region (vectorised over shapely arrays); returns the scaled areas."""
    scale = 1.0 if mpp is None else float(mpp)
    type_ids = shapely.get_type_id(geometries)
    polygonal = np.isin(type_ids, (3, 6)) & ~shapely.is_empty(geometries)
    lineal = np.isin(type_ids, (1, 2, 5)) & ~shapely.is_empty(geometries)
    area = np.where(polygonal, shapely.area(geometries) * scale * scale, np.nan)
    length = shapely.length(geometries) * scale
    hull_area = shapely.area(shapely.convex_hull(geometries)) * scale * scale
    with np.errstate(divide="ignore", invalid="ignore"):
        solidity = np.where(hull_area > 0, area / hull_area, np.nan)
    max_diameter = 2.0 * shapely.minimum_bounding_radius(geometries) * scale
    min_diameter = shapely.length(shapely.minimum_width(geometries)) * scale
    single = type_ids == _POLYGON_TYPE_ID
    circularity = np.full(len(geometries), np.nan)
    if single.any():  # QuPath: outer ring only, single polygons only
        rings = shapely.get_exterior_ring(geometries[single])
        ring_area = shapely.area(shapely.polygons(rings)) * scale * scale
        ring_length = shapely.length(rings) * scale
        with np.errstate(divide="ignore", invalid="ignore"):
            circularity[single] = np.where(ring_length > 0, 4 * np.pi * ring_area / ring_length**2, np.nan)

    for i, (obj, compartment, _) in enumerate(regions):
        out = obj.measurements
        if lineal[i]:
            out[shape_name("Length", mpp, compartment)] = float(length[i])
        if not polygonal[i]:
            continue
        out[shape_name("Area", mpp, compartment)] = float(area[i])
        out[shape_name("Length", mpp, compartment)] = float(length[i])
        if single[i]:
            out[shape_name("Circularity", mpp, compartment)] = float(circularity[i])
        out[shape_name("Solidity", mpp, compartment)] = float(solidity[i])
        out[shape_name("Max diameter", mpp, compartment)] = float(max_diameter[i])
        out[shape_name("Min diameter", mpp, compartment)] = float(min_diameter[i])
    return area


# -------------------------------------------------------------------------------------------- intensity


def _add_intensity_measurements(
    groups: list[tuple[PathObject, str | None, np.ndarray]], tile: np.ndarray
) -> None:
    """Mean and sample standard deviation of R, G, B, H and E over each group's pixels, in one pass."""
    if not groups:
        return
    counts = np.array([g[2].size for g in groups], np.int64)
    labels = np.repeat(np.arange(len(groups)), counts)
    flat = np.concatenate([g[2] for g in groups]) if counts.sum() else np.zeros(0, np.int64)
    red, green, blue = (np.ascontiguousarray(tile[..., c]).reshape(-1)[flat] for c in range(3))
    stains = [  # per-channel lookup tables: OD(v) * deconvolution weight, summed over R, G, B
        _STAIN_LUTS[0, s][red] + _STAIN_LUTS[1, s][green] + _STAIN_LUTS[2, s][blue] for s in range(2)
    ]
    values = [red, green, blue, *stains]

    n = len(groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = np.empty((n, len(CHANNELS)))
        stds = np.empty((n, len(CHANNELS)))
        for c in range(len(CHANNELS)):
            sums = np.bincount(labels, values[c], minlength=n)
            mean = sums / counts
            # two-pass variance: sum of squared deviations from each group's own mean (no cancellation)
            deviations = values[c] - mean[labels]
            squares = np.bincount(labels, deviations * deviations, minlength=n)
            means[:, c] = mean
            stds[:, c] = np.where(counts > 1, np.sqrt(squares / np.maximum(counts - 1, 1)), 0.0)
    stds[counts == 0] = np.nan

    names: dict[str | None, list[str]] = {}
    for (obj, compartment, _), mean_row, std_row in zip(groups, means.tolist(), stds.tolist()):
        if compartment not in names:
            names[compartment] = [
                intensity_name(channel, statistic, compartment)
                for channel in CHANNELS
                for statistic in ("Mean", "Std.Dev.")
            ]
        interleaved = [v for pair in zip(mean_row, std_row) for v in pair]
        obj.measurements.update(zip(names[compartment], interleaved))


def _check_tile(rgb: np.ndarray) -> np.ndarray:
    tile = np.asarray(rgb)
    if tile.ndim != 3 or tile.shape[2] != 3:
        raise ValueError(f"the tile must be an RGB image of shape (H, W, 3), not {tile.shape}")
    if tile.dtype != np.uint8:
        raise ValueError(f"the tile must be 8-bit (uint8) RGB, not {tile.dtype}")
    return np.ascontiguousarray(tile)


def _prefix(compartment: str | None) -> str:
    return f"{compartment.strip()}: " if compartment else ""
