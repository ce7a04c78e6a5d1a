"""Classical nuclei from RGB pixels, without torch: hematoxylin → background subtraction → smoothing →
threshold → distance map, then the nuclei engine's seeded watershed (`NucleiObjects`). The classical engine
(`engines/classical.py`) post-processes every tile with `ClassicalObjects`; worker processes can run it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from cellbridge.engines.nuclei_objects import NucleiObjects
from cellbridge.objects import PathObject
from cellbridge.tiling.plan import Tile


@dataclass
class ClassicalObjects:
    """Objects of one tile from its RGB pixels (the model output is unused). Picklable."""

    nuclei: NucleiObjects
    stains: Any              # cellbridge.ihc.StainVectors
    settings: dict[str, Any]  # model pixels: background_radius, sigma, threshold, min_od, local_block, max_radius…

    def __call__(self, raw: Any, rgb: np.ndarray, tile: Tile) -> list[PathObject]:
        distance, mask = classical_maps(rgb, self.stains, self.settings)
        if not mask.any():
            return []
        objects = self.nuclei(np.stack([distance, mask.astype(np.float32)]), rgb, tile)
        limit = self.settings["max_area"] * tile.downsample ** 2  # level-0 px²
        return [o for o in objects if o.locating_geometry.area <= limit]


def hematoxylin(rgb: np.ndarray, stains: Any) -> np.ndarray:
    """Hematoxylin optical density (float32) of an RGB tile by colour deconvolution."""
    return stains.separate(rgb)[..., stains.index("Hematoxylin")]


def classical_maps(rgb: np.ndarray, stains: Any,
                   settings: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Distance map (scaled so the largest allowed nucleus radius is 1) and nucleus mask of an RGB tile."""
    h = hematoxylin(rgb, stains)
    radius = settings["background_radius"]
    if radius > 0:
        size = 2 * int(round(radius)) + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        h = cv2.morphologyEx(h, cv2.MORPH_TOPHAT, kernel)
    if settings["sigma"] > 0:
        h = cv2.GaussianBlur(h, (0, 0), settings["sigma"])
    threshold = settings["threshold"]
    if threshold == "otsu":
        level = threshold_otsu(h) if np.ptp(h) > 1e-6 else np.inf
        mask = h > max(level, settings["min_od"])
    elif threshold == "local":
        local = cv2.blur(h, (settings["local_block"], settings["local_block"]))
        mask = (h > local) & (h > settings["min_od"])
    else:
        mask = h > float(threshold)
    mask = ndi.binary_fill_holes(mask)
    distance = ndi.distance_transform_edt(mask).astype(np.float32)
    distance = cv2.GaussianBlur(distance, (0, 0), 1.0)  # one peak per round blob, not a ridge of them
    return distance / max(settings["max_radius"], 1.0), mask
