"""Semantic (region) segmentation: a U-Net (`cellbridge.networks.unet`, `unet-semantic`) gives per-pixel class
probabilities; tiles are blended across their overlaps with a cosine window, the blended class map is turned into
one polygon per connected region and class (holes kept, simplified, small pieces dropped), as QuPath annotations or
detections with their area.

Output channels: 0 = background, k = model.json class k - 1 (as for the detectors, background is not a class).

The blending and polygonising are `cellbridge.merge.regions.RegionMerger`'s; the engine's postprocessor hands it
each tile's probabilities (`TileProbabilities`), and `make_merger` makes one merger per run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from shapely.geometry.base import BaseGeometry

from cellbridge.engines.base import Engine, check_object_type
from cellbridge.engines.probability_maps import to_maps
from cellbridge.merge.regions import RegionMerger, TileProbabilities
from cellbridge.tiling.plan import Tile, TilePlan

DEFAULTS: dict[str, Any] = {
    "min_area": RegionMerger.min_area,             # model pixels²: smaller region pieces are dropped
    "min_hole_area": RegionMerger.min_hole_area,   # model pixels²: smaller holes are filled
    "simplify": RegionMerger.simplify,             # model pixels: Douglas-Peucker tolerance (0: exact pixel edges)
    "object_type": RegionMerger.object_type,       # or "detection"
    "max_object_size": 0,    # regions may span any number of tiles: no whole-object overlap needed
}


def tile_probabilities(raw: np.ndarray, rgb: np.ndarray, tile: Tile) -> TileProbabilities:
    """A tile's class probabilities as the run's `RegionMerger` takes them (no objects per tile)."""
    return TileProbabilities(raw)


class SemanticEngine(Engine):
    """U-Net class probabilities per tile, blended across tiles into region polygons (see the module docstring)."""

    DEFAULTS = DEFAULTS
    objects_per_tile = False  # its merger makes (and measures) the regions
    channels_last_on_cpu = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_object_type(self.options)

    @property
    def object_size(self) -> float:
        return float(self.options.get("max_object_size", 0))

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> list[np.ndarray]:
        return to_maps(torch.softmax(self.module(self.in_module_layout(batch)).float(), dim=1))

    def postprocessor(self) -> Callable[[np.ndarray, np.ndarray, Tile], TileProbabilities]:
        return tile_probabilities

    def make_merger(self, plan: TilePlan, roi: BaseGeometry | None = None, mpp: float | None = None) -> RegionMerger:
        """The merger of one run over `plan`: tiles blended into region polygons (measured in µm when `mpp` is
        known)."""
        return RegionMerger(plan, [self.spec.path_class(i) for i in range(len(self.spec.classes))], roi=roi,
                            mpp=mpp, min_area=float(self.options["min_area"]),
                            min_hole_area=float(self.options["min_hole_area"]),
                            simplify=float(self.options["simplify"]), object_type=self.options["object_type"])
