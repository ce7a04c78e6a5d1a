"""Which pixel size a run uses for an image, and how it was found: given by the user (or QuPath), read from
the file, estimated from the nuclei (`pipeline.scale.estimate_pixel_size`) when neither says, or, when the
estimate fails, assumed to be the model's own. Every command and the bridge report it the same way
(`Scale.to_json`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from shapely.geometry.base import BaseGeometry

from cellbridge.io.slides import Slide

log = logging.getLogger(__name__)

ESTIMATE_SIDE = 2048  # level-0 pixels: the square (centre of the region) the nuclei are measured in

GIVEN, FILE, ESTIMATED, ASSUMED, UNKNOWN = "given", "file", "estimated", "assumed", "unknown"


@dataclass(frozen=True)
class Scale:
    """The pixel size used for an image (µm/px at level 0; None when unknown) and how it was found."""

    pixel_size: float | None
    source: str  # given | file | estimated | assumed (the model's own) | unknown (model without µm scale)
    note: str

    @property
    def calibrated(self) -> bool:
        """True when the pixel size comes from the user or the file (measurements are then in µm)."""
        return self.source in (GIVEN, FILE)

    def to_json(self) -> dict[str, Any]:
        """`{"pixelSize", "source", "note"}` for summaries, sidecars and job results."""
        return {"pixelSize": None if self.pixel_size is None else round(self.pixel_size, 5),
                "source": self.source, "note": self.note}


def find_scale(slide: Slide, given: float | None, model_mpp: float | None,
               roi: BaseGeometry | None = None) -> Scale:
    """The scale of `slide`: `given` (already checked) first, then the file's, then an estimate from the
    nuclei of the region's centre (only when the model works at a µm scale: `model_mpp`)."""
    if given is not None:
        return Scale(given, GIVEN, f"pixel size given: {given:.4g} µm/px")
    if slide.mpp is not None:
        return Scale(slide.mpp, FILE, f"pixel size from the file: {slide.mpp:.4g} µm/px")
    ignored = (f"the file's pixel size {slide.ignored_mpp:.4g} µm/px is implausible and was ignored; "
               if slide.ignored_mpp is not None else "")
    if model_mpp is None:
        return Scale(None, UNKNOWN, f"{ignored}pixel size unknown (the model has no µm scale)")
    from cellbridge.pipeline.scale import estimate_pixel_size

    estimated, note = estimate_pixel_size(_centre_region(slide, roi))
    if estimated is not None:
        log.warning("%s: %s%s (pass --pixel-size to set it)", slide.path.name, ignored, note)
        return Scale(estimated, ESTIMATED, f"{ignored}{note}")
    log.warning("%s: %s%s; assumed the model's %.4g µm/px", slide.path.name, ignored, note, model_mpp)
    return Scale(model_mpp, ASSUMED, f"{ignored}{note}; assumed the model's {model_mpp:.4g} µm/px "
                                     "(pass --pixel-size to set it)")


def _centre_region(slide: Slide, roi: BaseGeometry | None) -> Any:
    """Up to ESTIMATE_SIDE² level-0 pixels at the centre of the region of interest (else of the image)."""
    width, height = slide.dimensions
    x0, y0, x1, y1 = (0.0, 0.0, float(width), float(height))
    if roi is not None and not roi.is_empty:
        rx0, ry0, rx1, ry1 = roi.bounds
        x0, y0, x1, y1 = max(rx0, 0.0), max(ry0, 0.0), min(rx1, float(width)), min(ry1, float(height))
    side_x, side_y = min(x1 - x0, ESTIMATE_SIDE), min(y1 - y0, ESTIMATE_SIDE)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return slide.read_region(round(cx - side_x / 2), round(cy - side_y / 2), max(1, round(side_x)),
                             max(1, round(side_y)), 1.0)
