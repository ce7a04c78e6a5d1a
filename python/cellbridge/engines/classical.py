"""Classical nucleus detection, the recipe of QuPath's built-in cell detection and our baseline (no learned
weights).

Hematoxylin by colour deconvolution (`cellbridge.ihc.StainVectors`, QuPath's default H&E vectors) → background
subtraction (white top-hat, QuPath's "background radius") → Gaussian smoothing → threshold (Otsu, local mean, or
a fixed optical density) → distance-transform peaks seed a watershed inside the mask → polygons. The distance map
and mask then go through the same seeded watershed and object building as the learned nuclei engine
(`engines.nuclei_objects`), so cells, scores, classes and seams behave alike.

All sizes are in µm in model.json `postprocessing` and converted with the package's `mpp` (the pipeline has
already resampled the tile to it):

    background_radius_um  8     0 turns background subtraction off
    sigma_um              1.0   Gaussian smoothing of the hematoxylin channel (QuPath: 1.5; 1.0 splits crowded
                                nuclei better on synthetic H&E and DSB training histology)
    threshold             "otsu" | "local" | a number (hematoxylin optical density)
    min_od                0.05  the threshold never goes below this (empty glass stays empty)
    local_block_um        25    window of the local threshold
    split_distance_um     3     least distance between two nucleus centres
    min_radius_um         1     a centre must be this far inside the mask
    min_area_um2 / max_area_um2  10 / 400   nucleus area limits (QuPath's defaults)
    cell_expansion_um     0     > 0: cells grown around nuclei
"""

from __future__ import annotations

import math
from typing import Any

import torch

from cellbridge.engines.classical_objects import ClassicalObjects
from cellbridge.engines.nuclei import DEFAULTS as NUCLEI_DEFAULTS
from cellbridge.engines.nuclei import NucleiEngine

DEFAULTS: dict[str, Any] = {
    "stains": "he",
    "background_radius_um": 8.0,
    "sigma_um": 1.0,
    "threshold": "otsu",
    "min_od": 0.05,
    "local_block_um": 25.0,
    "split_distance_um": 3.0,
    "min_radius_um": 1.0,
    "min_area_um2": 10.0,
    "max_area_um2": 400.0,
    "cell_expansion_um": 0.0,
}
DEFAULT_MPP = 0.5  # µm/px assumed when model.json has no mpp


class ClassicalEngine(NucleiEngine):
    """Hematoxylin threshold + distance-transform watershed; µm parameters → model pixels at `spec.mpp`.

    The seeded-watershed options of the nuclei engine are derived from the µm ones; one given explicitly (by
    model.json or the run, e.g. the run's `threshold` → `peak_threshold`) is kept as given."""

    DEFAULTS = {**NUCLEI_DEFAULTS, **DEFAULTS}
    flip_tta = False  # no network: nothing to average

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from cellbridge.ihc import StainVectors

        o = self.options
        threshold = o["threshold"]
        self.stains = StainVectors.default(str(o["stains"]))
        px = 1.0 / float(self.spec.mpp or DEFAULT_MPP)  # pixels per µm
        self.px = px
        max_radius = math.sqrt(float(o["max_area_um2"]) / math.pi) * px
        self.settings = {
            "background_radius": float(o["background_radius_um"]) * px,
            "sigma": float(o["sigma_um"]) * px,
            "threshold": threshold,
            "min_od": float(o["min_od"]),
            "local_block": int(round(float(o["local_block_um"]) * px)) | 1,
            "max_radius": max_radius,
            "max_area": float(o["max_area_um2"]) * px * px,
        }
        # the seeded watershed of the nuclei engine, on the distance map scaled to [0, 1] by the largest radius
        derived = {
            "foreground": "model", "fg_threshold": 0.5,
            "peak_threshold": float(o["min_radius_um"]) * px / max_radius,
            "min_distance": max(1, int(round(float(o["split_distance_um"]) * px))),
            "min_area": max(1, int(round(float(o["min_area_um2"]) * px * px))),
            "cell_expansion_px": float(o["cell_expansion_um"]) * px,
        }
        self.options.update({k: v for k, v in derived.items() if k not in self.given})
        if "max_object_size" not in self.given:
            self.options["max_object_size"] = 2 * max_radius + 2 * float(self.options["cell_expansion_px"])

    @classmethod
    def type_problem(cls, name: str, value: Any) -> str | None:
        if name == "threshold":
            ok = value in ("otsu", "local") or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                                and math.isfinite(value))
            return None if ok else "must be 'otsu', 'local' or a number"
        return super().type_problem(name, value)

    def infer(self, batch: torch.Tensor) -> list[None]:
        return [None] * len(batch)  # all work is per tile, on the RGB pixels (postprocess)

    def postprocessor(self) -> ClassicalObjects:
        return ClassicalObjects(super().postprocessor(), self.stains, dict(self.settings))
