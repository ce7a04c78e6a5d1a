"""Positivity: per-object stain optical densities and intensity classes, as QuPath's positive cell detection.

Measurement names are QuPath's (`WatershedCellDetection` / `PositiveCellDetection`): the stain's name, "OD", then
the statistic, after the compartment, e.g. ``Nucleus: DAB OD mean``, ``Nucleus: DAB OD max``,
``Nucleus: Hematoxylin OD std dev``, ``Cell: DAB OD mean``, ``Cytoplasm: DAB OD min``. Statistics are mean, std dev
(sample, n - 1), max and min of the deconvolved pixels (`StainVectors.separate`) whose centres lie inside the
outline. Cells (objects with a nucleus) get Nucleus:, Cell: and Cytoplasm: (cell minus nucleus) measurements;
other detections get `compartment`'s (default "Nucleus").

Nuclear DAB: every object scored on its nucleus (cells, and detections measured as ``Nucleus``) also gets
``Nucleus core: <stain> OD mean`` over the core of its nucleus outline, the outline shrunk about its centroid to
`CORE_SCALE` of its size (36 % of its area; the whole outline when the core holds fewer than `MIN_CORE_PIXELS`
pixels). A segmentation outline that reaches past the nucleus into DAB-stained cytoplasm or background (nucleus
and cytoplasm drawn as one object, as models trained on H&E do on IHC) then still measures the nucleus: with the
outline up to 1/`CORE_SCALE` (1.67x) the nucleus's size the core lies inside the nucleus.

Classification follows `PositiveCellDetection`: the score measurement (default ``Nucleus core: DAB OD mean``;
``Nucleus: DAB OD mean`` gives QuPath's own) against one threshold (>= t: ``Positive``, else ``Negative``) or three (>= t3: ``3+``, >= t2: ``2+``, >= t1: ``1+``, else
``Negative``); QuPath's defaults are 0.2, 0.4, 0.6. With `derive=True` an existing class becomes the parent, as
QuPath does (``Tumor`` → ``Tumor: 2+``). An object with no pixel in the tile gets NaN measurements and keeps its
class (QuPath would call it Negative); summaries skip it.

    score_objects(objects, tile_rgb, origin=(x0, y0), downsample=1.0, stains=StainVectors.default("ihc-dab"))
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shapely import affinity

from cellbridge.errors import CellBridgeError
from cellbridge.geometry import pixels_inside
from cellbridge.ihc.stains import DAB, RESIDUAL, StainVectors
from cellbridge.objects import PathClass, PathObject, class_color

__all__ = [
    "DEFAULT_THRESHOLDS",
    "INTENSITY_CLASSES",
    "NEGATIVE",
    "POSITIVE",
    "intensity_class",
    "od_name",
    "parse_positivity",
    "parse_thresholds",
    "score_objects",
    "without_he_outputs",
]

DEFAULT_THRESHOLDS: tuple[float, float, float] = (0.2, 0.4, 0.6)  # PositiveCellDetection's defaults
POSITIVE, NEGATIVE = "Positive", "Negative"
INTENSITY_CLASSES: tuple[str, ...] = (NEGATIVE, "1+", "2+", "3+")
STATISTICS = ("mean", "std dev", "max", "min")
CORE = "Nucleus core"      # measurement compartment of the nucleus's central part
CORE_SCALE = 0.6           # the core: the nucleus outline scaled by this about its centroid
MIN_CORE_PIXELS = 4        # a smaller core is measured on the whole nucleus outline


def od_name(stain: str, statistic: str = "mean", compartment: str | None = "Nucleus") -> str:
    """QuPath's name of a stain measurement: `od_name("DAB", "max", "Cell")` → "Cell: DAB OD max"."""
    prefix = f"{compartment.strip()}: " if compartment else ""
    return f"{prefix}{stain} OD {statistic}"


def parse_thresholds(text: str | Sequence[float]) -> tuple[float, ...]:
    """One threshold (Positive / Negative) or three increasing ones (Negative / 1+ / 2+ / 3+): "0.2,0.4,0.6"."""
    try:
        values = tuple(float(p) for p in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        raise CellBridgeError(f"positivity thresholds must be numbers such as 0.2,0.4,0.6, not {text!r}") from None
    if len(values) not in (1, 3) or not all(math.isfinite(v) for v in values):
        raise CellBridgeError(f"give 1 positivity threshold (Positive/Negative) or 3 (1+/2+/3+), not {text!r}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise CellBridgeError(f"the 3 positivity thresholds must increase (1+ < 2+ < 3+), got {text!r}")
    return values


def parse_positivity(spec: str | os.PathLike[str]) -> tuple[float, ...] | Path:
    """A --positivity value: thresholds ("0.2,0.4,0.6" or "0.2"), or a reference-colour classifier JSON file
    (a path ending in .json, or any existing file) for `cellbridge.features.classifiers.apply_classifier`."""
    text = os.fspath(spec).strip()
    if text.lower().endswith(".json") or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise CellBridgeError(f"{path}: classifier file not found")
        return path
    return parse_thresholds(text)


def intensity_class(value: float, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> str | None:
    """QuPath's class for a score: "Positive"/"Negative" with one threshold, "Negative"/"1+"/"2+"/"3+" with three;
    None for NaN (nothing measured)."""
    if math.isnan(value):
        return None
    if len(thresholds) == 1:
        return POSITIVE if value >= thresholds[0] else NEGATIVE
    for name, threshold in zip(reversed(INTENSITY_CLASSES), reversed(thresholds)):
        if value >= threshold:
            return name
    return NEGATIVE


def score_objects(
    objects: Sequence[PathObject],
    rgb: np.ndarray,
    origin: tuple[float, float],
    downsample: float,
    stains: StainVectors,
    thresholds: Sequence[float] | None = DEFAULT_THRESHOLDS,
    compartment: str | None = "Nucleus",
    *,
    stain: str = DAB,
    score: str | None = None,
    derive: bool = False,
) -> None:
    """Add stain OD measurements to each object and classify it by intensity, in place.

    `rgb` is the tile (H, W, 3, uint8) whose pixel (i, j) covers level-0 [origin_x + j·downsample, … + downsample)
    horizontally, likewise vertically (as `cellbridge.features.measure.measure_objects`). Every non-residual stain
    of `stains` is measured. `thresholds` (1 or 3 values, or None to measure without classifying) apply to the
    `score` measurement, by default ``Nucleus core: <stain> OD mean`` for objects scored on a nucleus (cells, and
    detections when `compartment` is "Nucleus"), else ``<compartment>: <stain> OD mean``.
    """
    tile = np.asarray(rgb)
    if tile.ndim != 3 or tile.shape[2] != 3 or tile.dtype != np.uint8:
        raise ValueError(f"the tile must be 8-bit RGB of shape (H, W, 3), not {tile.dtype} {tile.shape}")
    if not (math.isfinite(downsample) and downsample > 0):
        raise ValueError(f"downsample must be a positive number, not {downsample!r}")
    if thresholds is not None:
        thresholds = parse_thresholds(thresholds)
    stain_index = stains.index(stain)
    objects = list(objects)
    if not objects:
        return

    # one group of pixels per measured compartment: (object, compartment name, flat pixel indices)
    groups: list[tuple[PathObject, str | None, np.ndarray]] = []
    empty = np.zeros(0, np.int64)
    for obj in objects:
        if obj.nucleus_geometry is not None:
            nucleus = pixels_inside(obj.nucleus_geometry, tile.shape[:2], origin, downsample)
            cell = pixels_inside(obj.geometry, tile.shape[:2], origin, downsample)
            nucleus = empty if nucleus is None else nucleus
            cell = empty if cell is None else cell
            groups.append((obj, "Nucleus", nucleus))
            groups.append((obj, CORE, _core_pixels(obj.nucleus_geometry, nucleus, tile.shape[:2], origin,
                                                   downsample)))
            groups.append((obj, "Cell", cell))
            groups.append((obj, "Cytoplasm", cell[~np.isin(cell, nucleus, assume_unique=True)]))
        else:
            pixels = pixels_inside(obj.geometry, tile.shape[:2], origin, downsample)
            if pixels is not None:  # points and lines have no intensities
                groups.append((obj, compartment, pixels))
                if compartment == "Nucleus":
                    groups.append((obj, CORE, _core_pixels(obj.geometry, pixels, tile.shape[:2], origin,
                                                           downsample)))
    if not groups:
        return

    channels = [i for i, name in enumerate(stains.channel_names) if name != RESIDUAL]
    counts = np.array([g[2].size for g in groups], np.int64)
    flat = np.concatenate([g[2] for g in groups])
    red, green, blue = (np.ascontiguousarray(tile[..., c]).reshape(-1)[flat] for c in range(3))
    stats = {c: _group_statistics(stains.separate_channel(red, green, blue, c), counts) for c in channels}

    for g, (obj, name, _) in enumerate(groups):
        for c in channels:
            stain_name = stains.channel_names[c]
            for statistic, values in zip(STATISTICS, stats[c]):
                if name != CORE or statistic == "mean":
                    obj.measurements[od_name(stain_name, statistic, name)] = float(values[g])

    if thresholds is None:
        return
    stain_name = stains.channel_names[stain_index]
    measured = {id(g[0]) for g in groups}
    for obj in objects:
        if id(obj) not in measured:
            continue
        scored_on_nucleus = obj.nucleus_geometry is not None or compartment == "Nucleus"
        key = score or od_name(stain_name, "mean", CORE if scored_on_nucleus else compartment)
        if key not in obj.measurements:
            raise CellBridgeError(f"positivity score measurement {key!r} was not measured; measured: "
                                  f"{', '.join(sorted(k for k in obj.measurements if ' OD ' in k))}")
        label = intensity_class(obj.measurements[key], thresholds)
        if label is not None:
            obj.path_class = _intensity_path_class(obj.path_class if derive else None, label)


def without_he_outputs(objects: Sequence[PathObject]) -> None:
    """Remove, in place, what an H&E model and H&E measurement attach but means nothing on IHC: the H&E colour
    deconvolution intensities (``Nucleus: Hematoxylin: Mean``, ``Eosin: Std.Dev.``; the IHC stains' own are
    ``… OD mean``) and the model's class probabilities (``Class probability: Tumor``)."""
    from cellbridge.features.measure import STAIN_CHANNELS

    def he_output(name: str) -> bool:  # "[Compartment: ]Eosin: Mean" or "Class probability: <class>"
        parts = name.split(": ")
        return parts[0] == "Class probability" or (len(parts) >= 2 and parts[-2] in STAIN_CHANNELS)

    for obj in objects:
        for key in [k for k in obj.measurements if he_output(k)]:
            del obj.measurements[key]


def _core_pixels(nucleus, pixels: np.ndarray, shape: tuple[int, int], origin: tuple[float, float],
                 downsample: float) -> np.ndarray:
    """The tile pixels of the nucleus's core (its outline scaled by `CORE_SCALE` about its centroid), or all of
    `pixels` (the whole nucleus) when the core holds fewer than `MIN_CORE_PIXELS`."""
    core = pixels_inside(affinity.scale(nucleus, CORE_SCALE, CORE_SCALE, origin="centroid"), shape, origin,
                         downsample)
    return pixels if core is None or core.size < MIN_CORE_PIXELS else core


def _group_statistics(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mean, sample std dev, max and min per consecutive group of `values` (NaN for empty groups)."""
    n = len(counts)
    labels = np.repeat(np.arange(n), counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(labels, values, minlength=n) / counts
        deviations = values - mean[labels]
        squares = np.bincount(labels, deviations * deviations, minlength=n)
        std = np.where(counts > 1, np.sqrt(squares / np.maximum(counts - 1, 1)), 0.0)
    maximum = np.full(n, np.nan)
    minimum = np.full(n, np.nan)
    filled = counts > 0
    if filled.any():
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[filled]
        maximum[filled] = np.maximum.reduceat(values, starts)
        minimum[filled] = np.minimum.reduceat(values, starts)
    std[~filled] = np.nan
    return mean, std, maximum, minimum


def _intensity_path_class(parent: PathClass | None, label: str) -> PathClass:
    """`label` as a class, derived from `parent` (minus any intensity part it already has) when given."""
    names: tuple[str, ...] = ()
    if parent is not None:
        names = tuple(n for n in parent.names if n not in (*INTENSITY_CLASSES, POSITIVE))
    return PathClass((*names, label), class_color(label))
