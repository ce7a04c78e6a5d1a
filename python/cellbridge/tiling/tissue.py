"""Tissue detection on a low-resolution view, so empty glass is never read at full resolution.

Brightfield (glass is bright): tissue is where colour saturation or optical density is high (Otsu on the
saturation, kept within a sane band so that an all-glass or all-tissue slide is still handled), cleaned
by morphology. Dark-field / fluorescence (background is dark): Otsu on intensity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from skimage import morphology

from cellbridge.io.slides import Slide

MIN_SATURATION = 12  # 0-255: glass with a faint colour cast stays background
MAX_SATURATION = 40  # pale stroma has saturation above this; Otsu above it would split tissue in two
MIN_OPTICAL_DENSITY = 0.15  # grey or dark tissue (mean RGB optical density) counts as tissue too
DARK_BACKGROUND = 60  # median intensity below this means fluorescence / dark field


@dataclass(frozen=True)
class TissueMask:
    """A boolean tissue mask of the whole slide at `downsample`, queried with level-0 rectangles."""

    mask: np.ndarray
    downsample: float

    def __post_init__(self) -> None:
        integral = cv2.integral(self.mask.astype(np.uint8), sdepth=cv2.CV_64F)
        object.__setattr__(self, "_integral", integral)

    @property
    def fraction(self) -> float:
        """Fraction of the slide area covered by tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def _cells(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        h, w = self.mask.shape
        d = self.downsample
        c0 = min(max(math.floor(x0 / d), 0), w)
        r0 = min(max(math.floor(y0 / d), 0), h)
        c1 = min(max(math.ceil(x1 / d), 0), w)
        r1 = min(max(math.ceil(y1 / d), 0), h)
        return c0, r0, c1, r1

    def tissue_pixels(self, x0: float, y0: float, x1: float, y1: float) -> float:
        """Number of mask pixels with tissue that the level-0 rectangle touches."""
        c0, r0, c1, r1 = self._cells(x0, y0, x1, y1)
        if c1 <= c0 or r1 <= r0:
            return 0.0
        s = self._integral  # type: ignore[attr-defined]
        return float(s[r1, c1] - s[r0, c1] - s[r1, c0] + s[r0, c0])

    def any_in(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """True when the level-0 rectangle touches any tissue."""
        return self.tissue_pixels(x0, y0, x1, y1) > 0


def tissue_mask_from_rgb(rgb: np.ndarray, min_area_px: int = 16, margin_px: int = 2) -> np.ndarray:
    """Boolean tissue mask of an RGB uint8 image (a slide thumbnail).

    `min_area_px` drops specks smaller than that many pixels; `margin_px` dilates the mask so that the
    edge of the tissue (where the thumbnail blurs it) is kept.
    """
    rgb = cv2.medianBlur(np.ascontiguousarray(rgb), 3)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if np.median(gray) < DARK_BACKGROUND:
        threshold, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        mask = gray > max(threshold, 10)
    else:
        saturation = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[:, :, 1]
        otsu, _ = cv2.threshold(saturation, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        threshold = min(max(otsu, MIN_SATURATION), MAX_SATURATION)
        optical_density = -np.log((rgb.astype(np.float32) + 1) / 256).mean(axis=2)
        mask = (saturation > threshold) | (optical_density > MIN_OPTICAL_DENSITY)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, _disk(2)).astype(bool)
    mask = morphology.remove_small_objects(mask, max_size=min_area_px)
    mask = morphology.remove_small_holes(mask, max_size=min_area_px * 4)
    if margin_px > 0:
        mask = cv2.dilate(mask.astype(np.uint8), _disk(margin_px)).astype(bool)
    return mask


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def detect_tissue(slide: Slide, max_side: int = 2048, min_area_px: int = 16, margin_px: int = 2) -> TissueMask:
    """Tissue mask of a whole slide from a thumbnail of at most `max_side` pixels per side."""
    thumbnail, downsample = slide.thumbnail(max_side)
    return TissueMask(tissue_mask_from_rgb(thumbnail, min_area_px, margin_px), downsample)
