"""Nuclei from maps, without torch: heatmap peaks seed a watershed inside the foreground, giving one polygon per
nucleus, its score, its class and (optionally) its cell grown around it.

The nuclei and classical engines post-process every tile with `NucleiObjects`; it imports no torch, so the
pipeline can run it in worker processes that stay small (`pipeline/postprocess.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.color import rgb2hed
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.morphology import h_maxima
from skimage.segmentation import expand_labels, watershed

from cellbridge.geometry import label_polygons, to_level0
from cellbridge.objects import SCORE_MEASUREMENT, PathClass, PathObject
from cellbridge.tiling.plan import Tile

DEFAULTS: dict[str, Any] = {
    "peak_threshold": 0.3,     # minimum heatmap value of a nucleus centre
    "min_distance": 3,         # pixels between two centres
    "peak_prominence": 0.0,    # > 0: a centre must rise this far above the saddle to any higher one (h-maxima)
    "fg_threshold": 0.5,       # foreground probability
    "min_area": 6,             # pixels; smaller pieces are dropped
    "foreground": "model",     # or "otsu" (Otsu on the hematoxylin channel)
    "cell_expansion_px": 0.0,  # > 0: cells grown from nuclei without overlapping (QuPath's cell expansion)
    "max_object_size": 40,
    "tta": False,              # average the maps of the four flips of each tile (4× the forward time)
}


@dataclass
class NucleiObjects:
    """Objects of one tile from its maps: channel 0 the centre heatmap, 1 the foreground, 2 the normalised
    distance when `maps` is 3, then class probabilities.

    Picklable; `options` are the engine's (DEFAULTS plus model.json and the caller's), `classes` its classes
    and `class_names` their names as model.json spells them."""

    options: dict[str, Any]
    classes: tuple[PathClass, ...]
    class_names: tuple[str, ...]
    maps: int = 2

    def __call__(self, raw: np.ndarray, rgb: np.ndarray, tile: Tile) -> list[PathObject]:
        options = self.options
        raw = raw.astype(np.float32)
        distance = raw[2] if self.maps > 2 else None
        labels, scores = segment_nuclei(raw[0], raw[1] if options["foreground"] == "model" else None, rgb, options,
                                        distance)
        if labels.max() == 0:
            return []
        nuclei = label_polygons(labels, min_area=int(options["min_area"]))
        cells = {}
        if options["cell_expansion_px"] > 0:
            grown = expand_labels(labels, distance=float(options["cell_expansion_px"]))
            cells = label_polygons(grown)
        class_probs = _mean_per_label(raw[self.maps:], labels) if raw.shape[0] > self.maps else None
        objects = []
        for label, polygon in nuclei.items():
            measurements = {SCORE_MEASUREMENT: round(float(scores[label]), 4)}
            path_class = self.classes[0]
            if class_probs is not None:
                probs = class_probs[label]
                path_class = self.classes[int(np.argmax(probs))]
                for name, p in zip(self.class_names, probs):
                    measurements[f"Class probability: {name}"] = round(float(p), 4)
            nucleus = to_level0(polygon, tile.x, tile.y, tile.downsample)
            if label in cells:
                # both outlines trace pixel edges, but corner cuts may differ by a sliver: keep the nucleus inside
                cell = to_level0(cells[label].union(polygon), tile.x, tile.y, tile.downsample)
                objects.append(PathObject(cell, "cell", path_class, measurements, nucleus_geometry=nucleus))
            else:
                objects.append(PathObject(nucleus, "detection", path_class, measurements))
        return objects


def segment_nuclei(heat: np.ndarray, foreground: np.ndarray | None, rgb: np.ndarray,
                   options: dict[str, Any], distance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Label image of nuclei and each label's peak score (index = label; 0 unused).

    Peaks of the heatmap above `peak_threshold`, at least `min_distance` apart, are the seeds; the watershed of
    the inverted heatmap grows them inside the foreground (the model's, or Otsu on hematoxylin when None).
    With `peak_prominence` h > 0 a peak must also stand h above the saddle that joins it to a higher one, and one
    seed is kept per such maximum: the several shallow peaks a large nucleus can get become one nucleus, while
    touching nuclei, whose centres are separated by a deep dip, stay apart.
    """
    options = {**DEFAULTS, **options}
    if foreground is None:
        mask = otsu_hematoxylin_foreground(rgb)
    else:
        mask = foreground >= options["fg_threshold"]
    mask = ndi.binary_opening(mask, iterations=1)
    peaks = peak_local_max(heat, min_distance=int(options["min_distance"]),
                           threshold_abs=float(options["peak_threshold"]), exclude_border=False)
    if len(peaks) and float(options["peak_prominence"]) > 0:
        peaks = _prominent(peaks, heat, float(options["peak_prominence"]))
    markers = np.zeros(heat.shape, np.int32)
    if len(peaks) == 0:
        return markers, np.zeros(1, np.float32)
    markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, len(peaks) + 1)
    mask[peaks[:, 0], peaks[:, 1]] = True  # a confident centre is a nucleus even where the mask missed it
    labels = watershed(-heat if distance is None else -distance, markers, mask=mask)
    scores = np.concatenate([[0.0], heat[peaks[:, 0], peaks[:, 1]]]).astype(np.float32)
    return labels, scores


def _prominent(peaks: np.ndarray, heat: np.ndarray, prominence: float) -> np.ndarray:
    """The peaks (rows, highest first) that lie in a maximum of `heat` at least `prominence` high (h-maxima),
    the highest one of each such maximum."""
    maxima, _ = ndi.label(h_maxima(heat.astype(np.float64), prominence), structure=np.ones((3, 3)))
    region = maxima[peaks[:, 0], peaks[:, 1]]
    _, first = np.unique(region, return_index=True)
    keep = np.sort(first[region[first] > 0])
    return peaks[keep]


def otsu_hematoxylin_foreground(rgb: np.ndarray) -> np.ndarray:
    """The classical foreground: Otsu threshold on the hematoxylin channel of a colour deconvolution."""
    hematoxylin = rgb2hed(rgb)[..., 0]
    if np.ptp(hematoxylin) < 1e-6:
        return np.zeros(hematoxylin.shape, bool)
    return hematoxylin > threshold_otsu(hematoxylin)


def _mean_per_label(probs: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Mean class probability vector over each label's pixels."""
    count = labels.max() + 1
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=count).astype(np.float64)
    sums = np.stack([np.bincount(flat, weights=p.ravel(), minlength=count) for p in probs], axis=1)
    means = sums / np.maximum(sizes, 1)[:, None]
    return {int(k): means[k] for k in np.nonzero(sizes)[0] if k}
