"""Per-region IHC summaries: counts per intensity class, positive %, H-score, positive cells per mm².

Objects are added one at a time (`SlideSummary.add`), so a whole-slide run streams its objects through and never
holds them. Each region is a parent annotation or, when there is none, the whole image. An object belongs to every
region whose outline contains its centroid (its nucleus's, for cells), as QuPath counts the detections of an
annotation (`PathObjectHierarchy.getAllDetectionsForROI`).

The numbers are QuPath's (`qupath.lib.gui.measure.measurements.DetectionPathClassCounts`, whose names its
measurement table shows for annotations): classes count by their last part, so ``Tumor: 2+`` counts as 2+;

=========================  ===================================================================================
``Num Detections``         every detection or cell added to the region, classified or not
``Num Negative``           ``Negative``; likewise ``Num 1+``, ``Num 2+``, ``Num 3+`` (graded scoring only)
``Num Positive``           ``Positive`` + ``1+`` + ``2+`` + ``3+``
``Positive %``             Num Positive / (Num Positive + Num Negative) × 100
``H-score``                (1×n1+ + 2×n2+ + 3×n3+) / (n1+ + n2+ + n3+ + nNegative) × 100 = 1×%1+ + 2×%2+ + 3×%3+,
                           0-300 (graded scoring only)
``Num Positive per mm^2``  Num Positive / region area in mm² (NaN, with a note, when the pixel size is unknown)
``Area µm^2``              the region's area (``Area px^2`` without a pixel size)
=========================  ===================================================================================

Percentages of an empty region are NaN, as in QuPath. `write_summary_csv` writes one row per image × region.

Without IHC scoring (`scored=False`, e.g. an H&E run) a region reports ``Num Detections``, ``Num <class>`` for each
class and ``Num Detections per mm^2`` instead (`COUNT_COLUMNS`). Regions are clipped to the image when its size is
known; the note says how much of a region lay outside.

    summary = SlideSummary("slide.svs", annotations, image_size=(w, h), mpp=0.25)
    pipeline.run(slide, on_object=summary.add)
    summary.apply()                                    # measurements onto the annotations
    write_summary_csv(summary.rows(), "summary.csv")
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from cellbridge.errors import CellBridgeError
from cellbridge.geometry import polygons_of
from cellbridge.ihc.positivity import INTENSITY_CLASSES, NEGATIVE, POSITIVE
from cellbridge.io.atomic import atomic_write
from cellbridge.objects import PathObject

__all__ = ["COUNT_COLUMNS", "CSV_COLUMNS", "RegionSummary", "SlideSummary", "write_summary_csv"]

GRADES = INTENSITY_CLASSES[1:]  # 1+, 2+, 3+
MICRON = "\u00b5m"
NO_PIXEL_SIZE_NOTE = "pixel size unknown: no density per mm^2; area in px^2"
CSV_COLUMNS: tuple[str, ...] = (
    "Image", "Region", "Region ID", "Num Detections", "Num Negative", "Num 1+", "Num 2+", "Num 3+", "Num Positive",
    "Positive %", "H-score", "Num Positive per mm^2", f"Area {MICRON}^2", "Area px^2", f"Pixel size {MICRON}", "Note",
)
COUNT_COLUMNS: tuple[str, ...] = (
    "Image", "Region", "Region ID", "Num Detections", "Num Detections per mm^2", f"Area {MICRON}^2", "Area px^2",
    f"Pixel size {MICRON}", "Note",
)
_COUNTED_TYPES = ("detection", "cell")


class RegionSummary:
    """The counts of one region (an annotation, or the whole image), updated by `add`."""

    def __init__(self, name: str, geometry: BaseGeometry | None = None, *, image: str = "",
                 annotation: PathObject | None = None, mpp: float | None = None, graded: bool = True,
                 scored: bool = True, classes: Iterable[str] = (), clip_note: str = "") -> None:
        """`scored`: IHC positivity numbers; else counts per class (`classes` always get a column, even at 0).
        `clip_note`: how the region was clipped to the image, for the note."""
        if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
            raise CellBridgeError(f"pixel size must be a positive number of µm, not {mpp!r}")
        self.name = name
        self.geometry = geometry
        self.image = image
        self.annotation = annotation
        self.mpp = mpp
        self.graded = graded and scored
        self.scored = scored
        self.counts: Counter[str] = Counter()
        self.class_counts: Counter[str] = Counter({c: 0 for c in classes})
        self.clip_note = clip_note
        self.detections = 0
        if geometry is not None:
            shapely.prepare(geometry)

    # ------------------------------------------------------------------------------------------------ adding

    def contains(self, obj: PathObject) -> bool:
        """Whether the object's centroid (its nucleus's, for cells) lies in the region."""
        if self.geometry is None:
            return True
        return bool(self.geometry.contains(obj.locating_geometry.centroid))

    def add(self, obj: PathObject, check: bool = True) -> bool:
        """Count a detection or cell when it lies in the region (`check=False`: the caller knows it does)."""
        if obj.object_type not in _COUNTED_TYPES or (check and not self.contains(obj)):
            return False
        self.detections += 1
        self.counts[_intensity_of(obj)] += 1
        if obj.path_class is not None:
            self.class_counts[obj.path_class.name] += 1
        return True

    # ------------------------------------------------------------------------------------------------ numbers

    def count(self, label: str) -> int:
        """Objects whose class ends in `label` ("Negative", "1+", "Positive", ...; "" for unclassified/other)."""
        return self.counts.get(label, 0)

    @property
    def positive(self) -> int:
        """Positive + 1+ + 2+ + 3+."""
        return self.count(POSITIVE) + sum(self.count(g) for g in GRADES)

    @property
    def negative(self) -> int:
        return self.count(NEGATIVE)

    @property
    def positive_percent(self) -> float:
        """Positive / (positive + negative) × 100 (NaN when neither)."""
        scored = self.positive + self.negative
        return self.positive / scored * 100.0 if scored else math.nan

    @property
    def h_score(self) -> float:
        """1×%1+ + 2×%2+ + 3×%3+ over Negative, 1+, 2+ and 3+ objects (NaN when none, or not graded)."""
        graded = [self.count(g) for g in GRADES]
        scored = sum(graded) + self.negative
        if not self.graded or not scored:
            return math.nan
        return (graded[0] + 2 * graded[1] + 3 * graded[2]) / scored * 100.0

    @property
    def area_px(self) -> float:
        """The region's area in level-0 px² (NaN for the whole image of unknown size)."""
        return float(self.geometry.area) if self.geometry is not None else math.nan

    @property
    def area_um2(self) -> float:
        """The region's area in µm² (NaN without a pixel size)."""
        return self.area_px * self.mpp * self.mpp if self.mpp is not None else math.nan

    @property
    def positive_per_mm2(self) -> float:
        """Positive objects per mm² of the region (NaN without a pixel size or an area)."""
        area_mm2 = self.area_um2 / 1e6
        return self.positive / area_mm2 if area_mm2 > 0 else math.nan

    @property
    def detections_per_mm2(self) -> float:
        """All detections per mm² of the region (NaN without a pixel size or an area)."""
        area_mm2 = self.area_um2 / 1e6
        return self.detections / area_mm2 if area_mm2 > 0 else math.nan

    @property
    def note(self) -> str:
        """Why a number is missing or differs from the annotation as given, or ""."""
        notes = [self.clip_note] if self.clip_note else []
        if self.mpp is None:
            notes.append(NO_PIXEL_SIZE_NOTE)
        if self.geometry is None:
            notes.append("image size unknown: no area")
        return "; ".join(notes)

    # ------------------------------------------------------------------------------------------------ output

    def measurements(self) -> dict[str, float]:
        """The region's numbers under QuPath's names, for the annotation's measurement list."""
        if not self.scored:
            counts = {"Num Detections": float(self.detections),
                      **{f"Num {c}": float(n) for c, n in sorted(self.class_counts.items())},
                      "Num Detections per mm^2": self.detections_per_mm2}
            return {**counts, **({f"Area {MICRON}^2": self.area_um2} if self.mpp is not None
                                 else {"Area px^2": self.area_px})}
        out: dict[str, float] = {"Num Detections": float(self.detections), "Num Negative": float(self.negative)}
        if self.graded:
            out.update({f"Num {g}": float(self.count(g)) for g in GRADES})
        out["Num Positive"] = float(self.positive)
        out["Positive %"] = self.positive_percent
        if self.graded:
            out["H-score"] = self.h_score
        out["Num Positive per mm^2"] = self.positive_per_mm2
        if self.mpp is not None:
            out[f"Area {MICRON}^2"] = self.area_um2
        else:
            out["Area px^2"] = self.area_px
        return out

    def apply(self) -> PathObject | None:
        """Write `measurements` onto the region's annotation (if it has one) and return it."""
        if self.annotation is not None:
            self.annotation.measurements.update(self.measurements())
        return self.annotation

    def row(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One CSV row (`CSV_COLUMNS`, or `COUNT_COLUMNS` and a column per class when not scored, then `extra`'s
        columns)."""
        if not self.scored:
            row = {"Image": self.image, "Region": self.name,
                   "Region ID": self.annotation.id if self.annotation is not None else "",
                   "Num Detections": self.detections, "Num Detections per mm^2": self.detections_per_mm2,
                   f"Area {MICRON}^2": self.area_um2, "Area px^2": self.area_px,
                   f"Pixel size {MICRON}": self.mpp if self.mpp is not None else math.nan, "Note": self.note,
                   **{f"Num {c}": n for c, n in sorted(self.class_counts.items())}}
            return {**row, **(extra or {})}
        graded = {g: self.count(g) if self.graded else math.nan for g in GRADES}
        row: dict[str, Any] = {
            "Image": self.image, "Region": self.name,
            "Region ID": self.annotation.id if self.annotation is not None else "",
            "Num Detections": self.detections, "Num Negative": self.negative,
            "Num 1+": graded["1+"], "Num 2+": graded["2+"], "Num 3+": graded["3+"],
            "Num Positive": self.positive, "Positive %": self.positive_percent, "H-score": self.h_score,
            "Num Positive per mm^2": self.positive_per_mm2, f"Area {MICRON}^2": self.area_um2,
            "Area px^2": self.area_px, f"Pixel size {MICRON}": self.mpp if self.mpp is not None else math.nan,
            "Note": self.note,
        }
        row.update(extra or {})
        return row

    def __repr__(self) -> str:
        return (f"RegionSummary({self.name!r}, detections={self.detections}, positive={self.positive}, "
                f"positive%={self.positive_percent:.2f}, H={self.h_score:.1f})")


class SlideSummary:
    """The regions of one image: each areal annotation given, or the whole image when there is none."""

    def __init__(self, image: str, annotations: Iterable[PathObject] = (), *,
                 image_size: tuple[int, int] | None = None, whole_image: BaseGeometry | None = None,
                 mpp: float | None = None, graded: bool = True, extra: Mapping[str, Any] | None = None,
                 scored: bool = True, classes: Iterable[str] = ()) -> None:
        """`image_size` (level-0 width, height) gives the whole image's area, and annotations are clipped to it
        (their geometry too, so the written annotation matches its numbers); `whole_image` replaces that
        rectangle (e.g. the analysed ROI or the tissue). `extra` adds columns to every CSV row (e.g. the stain
        vectors and thresholds used). `scored=False`: counts per class (`classes` listed even when absent)
        instead of IHC positivity."""
        self.image = image
        self.extra = dict(extra or {})
        self.regions: list[RegionSummary] = []
        classes = list(classes)
        frame = box(0, 0, image_size[0], image_size[1]) if image_size is not None else None
        for i, annotation in enumerate(annotations):
            polygons = polygons_of(annotation.geometry)
            if not polygons:
                continue  # points and lines have no inside
            geometry = shapely.union_all(polygons) if len(polygons) > 1 else polygons[0]
            name = annotation.name or annotation.class_name or f"Annotation {i + 1}"
            geometry, clip_note = _clipped(geometry, frame)
            if clip_note:
                annotation.geometry = geometry
            self.regions.append(RegionSummary(name, geometry, image=image, annotation=annotation, mpp=mpp,
                                              graded=graded, scored=scored, classes=classes, clip_note=clip_note))
        if not self.regions:
            if whole_image is None and frame is not None:
                whole_image = frame
            self.regions.append(RegionSummary("Image", whole_image, image=image, mpp=mpp, graded=graded,
                                              scored=scored, classes=classes))
        self._tree = shapely.STRtree([r.geometry if r.geometry is not None else box(-1e18, -1e18, 1e18, 1e18)
                                      for r in self.regions])

    def add(self, obj: PathObject) -> int:
        """Count a detection or cell in every region holding its centroid; returns how many regions took it."""
        if obj.object_type not in _COUNTED_TYPES:
            return 0
        hits = self._tree.query(obj.locating_geometry.centroid, predicate="within")
        for index in hits:
            self.regions[int(index)].add(obj, check=False)
        return len(hits)

    def add_many(self, objects: Iterable[PathObject]) -> None:
        """`add` for each object (vectorised over the centroids)."""
        counted = [o for o in objects if o.object_type in _COUNTED_TYPES]
        if not counted:
            return
        points = shapely.points(np.array([[c.x, c.y] for c in (o.locating_geometry.centroid for o in counted)]))
        objects_index, regions_index = self._tree.query(points, predicate="within")
        for o, r in zip(objects_index.tolist(), regions_index.tolist()):
            self.regions[r].add(counted[o], check=False)

    def apply(self) -> list[PathObject]:
        """Write each region's measurements onto its annotation; returns the annotations."""
        return [a for a in (r.apply() for r in self.regions) if a is not None]

    def rows(self) -> list[dict[str, Any]]:
        """One CSV row per region."""
        return [r.row(self.extra) for r in self.regions]

    @property
    def notes(self) -> list[str]:
        """The regions clipped to the image, as "name: how" (for a message to the user)."""
        return [f"{r.name}: {r.clip_note}" for r in self.regions if r.clip_note]


def _clipped(geometry: BaseGeometry, frame: BaseGeometry | None) -> tuple[BaseGeometry, str]:
    """The region inside the image, and a note when part of it lay outside ("" when none did)."""
    if frame is None or frame.covers(geometry):
        return geometry, ""
    inside = geometry.intersection(frame)
    outside = 1.0 - inside.area / geometry.area if geometry.area > 0 else 1.0
    if inside.is_empty or inside.area <= 0:
        return inside, "outside the image: nothing counted"
    x1, y1 = frame.bounds[2:]
    return inside, f"clipped to the image ({x1:.0f}×{y1:.0f} px): {outside * 100:.0f}% of the region lay outside"


def write_summary_csv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike[str],
                      columns: Iterable[str] = CSV_COLUMNS) -> int:
    """Write summary rows (e.g. of every image of a batch) as one CSV, atomically; returns the row count.

    Columns are `columns` (`CSV_COLUMNS`, or `COUNT_COLUMNS` for unscored counts) then any extra columns in order
    of first appearance; numbers are written with 6 significant digits in plain decimals (no exponent), NaN as
    "NaN" (as QuPath's exported tables do).
    """
    rows = list(rows)
    columns = list(columns)
    for row in rows:
        columns += [key for key in row if key not in columns]
    with atomic_write(path, "w", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(column, "")) for column in columns])
    return len(rows)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "NaN" if math.isnan(value) else _decimal(float(value))
    return str(value)


def _decimal(value: float, digits: int = 6) -> str:
    """`value` in plain decimals with `digits` significant digits, whole numbers kept whole:
    2097152.0 → "2097152", 38.43217 → "38.4322", 0.000123456789 → "0.000123457"."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _intensity_of(obj: PathObject) -> str:
    """The intensity part of an object's class: its last name when that is an intensity class, else ""."""
    if obj.path_class is None:
        return ""
    last = obj.path_class.names[-1]
    return last if last in (*INTENSITY_CLASSES, POSITIVE) else ""
