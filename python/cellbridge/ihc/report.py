"""A small PNG report per image: a downsampled view with nuclei dotted in the overlay's display colours (which
stand out from H&E and DAB; `cellbridge.pipeline.overlay`), the regions outlined and numbered, and a table of each
region's numbers drawn below it (OpenCV, ASCII text).

Objects are drawn as they stream past (`ReportImage.draw`), so nothing is held; `save` writes atomically.

    report = ReportImage.from_slide(slide)
    pipeline.run(slide, on_object=lambda o: (summary.add(o), report.draw(o)))
    report.save("slide-report.png", summary, title="slide.svs - Ki-67")
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cellbridge.errors import CellBridgeError
from cellbridge.geometry import polygons_of
from cellbridge.ihc.positivity import INTENSITY_CLASSES, POSITIVE
from cellbridge.ihc.summary import RegionSummary, SlideSummary
from cellbridge.io.atomic import atomic_path
from cellbridge.objects import PathObject
from cellbridge.pipeline.overlay import overlay_colour

__all__ = ["ReportImage"]

FONT = cv2.FONT_HERSHEY_SIMPLEX
REGION_COLOUR = (20, 20, 20)
LINE_HEIGHT = 22  # pixels from one text line of the table to the next


class ReportImage:
    """A canvas holding a downsampled image; objects are drawn onto it, then it is saved with the numbers."""

    def __init__(self, rgb: np.ndarray, downsample: float, classes: Sequence[str] = ()) -> None:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"the report image must be 8-bit RGB (H, W, 3), not {rgb.dtype} {rgb.shape}")
        if not (math.isfinite(downsample) and downsample > 0):
            raise ValueError(f"downsample must be a positive number, not {downsample!r}")
        self.canvas = np.ascontiguousarray(rgb).copy()
        self.downsample = float(downsample)
        self.classes = list(classes)   # the model's classes, in the order that picks their display colours
        self.colours: dict[str, tuple[int, int, int]] = {}   # class name → the colour it was drawn in

    @classmethod
    def from_slide(cls, slide: Any, max_side: int = 1600, classes: Sequence[str] = ()) -> ReportImage:
        """The whole slide (`cellbridge.io.slides.Slide`) at a downsample that fits `max_side` pixels."""
        rgb, downsample = slide.thumbnail(max_side)
        return cls(rgb, downsample, classes)

    def draw(self, obj: PathObject) -> None:
        """A dot (or, when large enough on the canvas, a filled outline) in the object's class colour."""
        if obj.object_type == "annotation":
            return
        colour = overlay_colour(obj.class_name, self.classes)
        if obj.path_class is not None:
            self.colours.setdefault(obj.path_class.name, colour)
        geometry = obj.locating_geometry
        polygons = polygons_of(geometry)
        scale = 1.0 / self.downsample
        if polygons and math.sqrt(geometry.area) * scale >= 4:
            for polygon in polygons:
                ring = np.round(np.asarray(polygon.exterior.coords) * scale * 4).astype(np.int32)
                cv2.fillPoly(self.canvas, [ring], colour, lineType=cv2.LINE_AA, shift=2)
            return
        c = geometry.centroid
        radius = max(1, round(math.sqrt(max(geometry.area, 1.0) / math.pi) * scale))
        cv2.circle(self.canvas, (int(c.x * scale), int(c.y * scale)), radius, colour, -1, lineType=cv2.LINE_AA)

    def render(self, summary: SlideSummary | Sequence[RegionSummary], title: str = "") -> np.ndarray:
        """The report as RGB: the canvas with the regions outlined and numbered, above a table of their numbers."""
        regions = summary.regions if isinstance(summary, SlideSummary) else list(summary)
        image = self.canvas.copy()
        _outline_regions(image, regions, 1.0 / self.downsample)
        table = _table(regions, title, max(image.shape[1], 760), self.colours)
        out = np.full((image.shape[0] + table.shape[0], table.shape[1], 3), 255, np.uint8)
        out[:image.shape[0], :image.shape[1]] = image
        out[image.shape[0]:] = table
        return out

    def save(self, path: str | os.PathLike[str], summary: SlideSummary | Sequence[RegionSummary],
             title: str = "") -> Path:
        """Write `render` as PNG (or JPEG by the suffix), atomically; returns the path."""
        path = Path(path)
        image = cv2.cvtColor(self.render(summary, title), cv2.COLOR_RGB2BGR)
        try:
            ok, data = cv2.imencode(path.suffix or ".png", image)
        except cv2.error:
            ok = False
        if not ok:
            raise CellBridgeError(f"{path}: cannot encode the report image (use .png or .jpg)")
        with atomic_path(path) as tmp:
            tmp.write_bytes(data.tobytes())
        return path


def _outline_regions(canvas: np.ndarray, regions: Sequence[RegionSummary], scale: float) -> None:
    """Each annotation region's outline, numbered as in the table."""
    for number, region in enumerate(regions, start=1):
        if region.annotation is None or region.geometry is None:
            continue
        polygons = polygons_of(region.geometry)
        for polygon in polygons:
            ring = np.round(np.asarray(polygon.exterior.coords) * scale * 4).astype(np.int32)
            cv2.polylines(canvas, [ring], True, REGION_COLOUR, 2, lineType=cv2.LINE_AA, shift=2)
        if polygons:  # the number just above the outline's topmost point
            ring = np.asarray(polygons[0].exterior.coords)
            x, y = ring[int(np.argmin(ring[:, 1]))] * scale
            _text(canvas, str(number), (int(x) + 2, max(int(y) - 6, 14)), 0.6, REGION_COLOUR, 2)


def _table(regions: Sequence[RegionSummary], title: str, width: int,
           colours: dict[str, tuple[int, int, int]] | None = None) -> np.ndarray:
    """A white panel: the title, a legend of class colours, then one line per region."""
    if regions and not any(r.scored for r in regions):
        return _count_table(regions, title, width, colours)
    graded = any(r.graded for r in regions)
    labels = INTENSITY_CLASSES if graded else ("Negative", POSITIVE)
    panel, y = _legend_panel(len(regions), title, width, labels, {})

    def heading(region: RegionSummary) -> str:
        counts = "  ".join(f"{label} {region.count(label)}" for label in labels)
        return f"{region.name}: {region.detections} nuclei  ({counts})"

    def details(region: RegionSummary) -> list[str]:
        density = region.positive_per_mm2
        parts = [f"Positive {_number(region.positive_percent, '%')}"]
        if region.graded:
            parts.append(f"H-score {_number(region.h_score)}")
        parts.append(f"{_number(density)} positive/mm2" if not math.isnan(density) else "density n/a (no pixel size)")
        return parts + _area(region)

    return _region_lines(panel, y, regions, heading, details)


def _legend_panel(rows: int, title: str, width: int, labels: Sequence[str],
                  colours: dict[str, tuple[int, int, int]]) -> tuple[np.ndarray, int]:
    """A white panel with room for two lines per region, the title and a legend of `labels` in their colours
    (`colours`, else the overlay's); returns it and the legend line's y."""
    panel = np.full((LINE_HEIGHT * (3 + 2 * rows) + 10, width, 3), 255, np.uint8)
    y = LINE_HEIGHT
    if title:
        _text(panel, _ascii(title), (8, y), 0.6, (0, 0, 0), 2)
    y += LINE_HEIGHT
    x = 8
    for label in labels:
        cv2.rectangle(panel, (x, y - 12), (x + 14, y + 2), colours.get(label) or overlay_colour(label, ()), -1)
        _text(panel, _ascii(label), (x + 20, y), 0.5, (0, 0, 0), 1)
        x += 30 + 12 * len(label) + 20
    return panel, y


def _area(region: RegionSummary) -> list[str]:
    """The region's area for the panel: in mm² when the pixel size is known, else in px²; none when unknown."""
    if not math.isnan(region.area_um2):
        return [f"area {region.area_um2 / 1e6:.3g} mm2"]
    if not math.isnan(region.area_px):
        return [f"area {region.area_px:.3g} px2"]
    return []


def _count_table(regions: Sequence[RegionSummary], title: str, width: int,
                 colours: dict[str, tuple[int, int, int]] | None = None) -> np.ndarray:
    """The panel of an unscored run: the title, a legend of the classes, one line of counts and density per
    region."""
    labels = sorted({c for r in regions for c in r.class_counts})
    panel, y = _legend_panel(len(regions), title, width, labels, colours or {})

    def heading(region: RegionSummary) -> str:
        counts = "  ".join(f"{label} {region.class_counts.get(label, 0)}" for label in labels)
        return f"{region.name}: {region.detections} objects  ({counts})"

    def details(region: RegionSummary) -> list[str]:
        density = region.detections_per_mm2
        parts = [f"{_number(density)} objects/mm2" if not math.isnan(density) else "density n/a (no pixel size)"]
        parts += _area(region)
        if region.clip_note:
            parts.append(region.clip_note)
        return parts

    return _region_lines(panel, y, regions, heading, details)


def _region_lines(panel: np.ndarray, y: int, regions: Sequence[RegionSummary],
                  heading: Callable[[RegionSummary], str],
                  details: Callable[[RegionSummary], list[str]]) -> np.ndarray:
    """Write two lines per region below the legend line `y` of `panel`: its number and `heading`, then its
    indented `details`; returns the panel."""
    for number, region in enumerate(regions, start=1):
        y += LINE_HEIGHT
        _text(panel, _ascii(f"{number}. {heading(region)}"), (8, y), 0.5, (0, 0, 0), 1)
        y += LINE_HEIGHT
        _text(panel, _ascii("    " + "   ".join(details(region))), (8, y), 0.5, (40, 40, 40), 1)
    return panel


def _number(value: float, suffix: str = "") -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}{suffix}"


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only."""
    return text.replace("\u00b5", "u").replace("\u00b2", "2").encode("ascii", "replace").decode("ascii")


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour: tuple[int, int, int],
          thickness: int) -> None:
    cv2.putText(image, text, origin, FONT, scale, colour, thickness, lineType=cv2.LINE_AA)
