"""IHC scoring: stain vectors and colour deconvolution, per-object DAB positivity with QuPath's intensity classes,
per-region summaries (positive %, H-score, positive cells per mm²) as annotation measurements, CSV and a PNG report.

    stains = estimate_stains_from_slide(slide)                       # or StainVectors.default("ihc-dab")
    summary = SlideSummary(slide.path.name, annotations, image_size=slide.dimensions, mpp=slide.mpp)
    score_objects(tile_objects, tile_rgb, (tile.x, tile.y), tile.downsample, stains)   # per tile
    summary.add(obj)                                                 # per merged object
    summary.apply(); write_summary_csv(summary.rows(), "summary.csv")
"""

from cellbridge.ihc.positivity import (
    DEFAULT_THRESHOLDS,
    INTENSITY_CLASSES,
    intensity_class,
    od_name,
    parse_positivity,
    parse_thresholds,
    score_objects,
    without_he_outputs,
)
from cellbridge.ihc.report import ReportImage
from cellbridge.ihc.stains import (
    StainError,
    StainVectors,
    angle_between,
    eosin_share,
    estimate_stains,
    estimate_stains_from_slide,
    load_stains,
    stains_for_slide,
)
from cellbridge.ihc.summary import CSV_COLUMNS, RegionSummary, SlideSummary, write_summary_csv

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_THRESHOLDS",
    "INTENSITY_CLASSES",
    "RegionSummary",
    "ReportImage",
    "SlideSummary",
    "StainError",
    "StainVectors",
    "angle_between",
    "eosin_share",
    "estimate_stains",
    "estimate_stains_from_slide",
    "intensity_class",
    "load_stains",
    "od_name",
    "parse_positivity",
    "parse_thresholds",
    "score_objects",
    "stains_for_slide",
    "without_he_outputs",
    "write_summary_csv",
]
