"""Are a run's objects on a brightfield slide nuclei? Hematoxylin of each object against the slide's own tissue.

For a QuPath GeoJSON from `cellbridge nuclei` (or any detections) on a slide, measures each object's mean
hematoxylin OD inside its nucleus outline (colour deconvolution with the slide's own H&E vectors, Macenko, else
QuPath's defaults) and reports the share of objects below the nuclear range. The nuclear range starts, as in
QuPath's cell detection, `--contrast` (QuPath's default threshold, 0.1 OD) above the hematoxylin of the tissue
around the nuclei: the median over tissue pixels that lie in no object. Stroma or collagen outlined as a nucleus
falls below it.

Also writes a full-resolution overlay crop (PNG): objects in the nuclear range outlined green, those below it
yellow.

Usage:
  python benchmarks/slide_sanity.py SLIDE RUN.geojson --overlay crop.png [--crop X,Y,W,H] [--json out.json]
Prints the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from cellbridge.errors import CellBridgeError
from cellbridge.geometry import pixels_inside, polygons_of
from cellbridge.ihc import StainError, StainVectors, estimate_stains
from cellbridge.io.atomic import atomic_write
from cellbridge.io.qupath_geojson import read_objects
from cellbridge.io.slides import open_slide
from cellbridge.tiling import detect_tissue

QUPATH_THRESHOLD = 0.1   # WatershedCellDetection's default: nucleus pixels this far above the background
IN_RANGE, BELOW = (0, 200, 0), (255, 220, 0)


def hematoxylin_of_objects(rgb: np.ndarray, outlines: list, stains: StainVectors,
                           tissue: np.ndarray) -> tuple[np.ndarray, float]:
    """Mean hematoxylin OD per outline, and the median over tissue pixels inside no outline."""
    hematoxylin = stains.separate(rgb)[..., stains.index("Hematoxylin")].reshape(-1)
    covered = np.zeros(hematoxylin.size, bool)
    means = np.full(len(outlines), np.nan)
    for i, outline in enumerate(outlines):
        pixels = pixels_inside(outline, rgb.shape[:2], (0.0, 0.0), 1.0)
        if pixels is not None and pixels.size:
            means[i] = hematoxylin[pixels].mean()
            covered[pixels] = True
    free = tissue.reshape(-1) & ~covered
    return means, float(np.median(hematoxylin[free])) if free.any() else float("nan")


def draw_overlay(rgb: np.ndarray, outlines: list, below: np.ndarray, crop: tuple[int, int, int, int],
                 path: Path) -> None:
    """Outlines over the level-0 crop (x, y, w, h), green in range and yellow below, written to `path`."""
    x, y, w, h = crop
    view = np.ascontiguousarray(rgb[y:y + h, x:x + w])
    for outline, low in zip(outlines, below):
        for polygon in polygons_of(outline):
            ring = np.asarray(polygon.exterior.coords) - (x, y)
            if ring[:, 0].max() < 0 or ring[:, 1].max() < 0 or ring[:, 0].min() > w or ring[:, 1].min() > h:
                continue
            cv2.polylines(view, [np.round(ring).astype(np.int32)], True, BELOW if low else IN_RANGE, 1,
                          cv2.LINE_AA)
    ok, data = cv2.imencode(".png", cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
    if not ok:
        raise CellBridgeError(f"{path}: cannot encode the overlay")
    with atomic_write(path, "wb", encoding=None) as handle:
        handle.write(data.tobytes())


def sanity(slide_path: Path, run_path: Path, overlay: Path | None, crop: tuple[int, int, int, int] | None,
           contrast: float = QUPATH_THRESHOLD) -> dict:
    """The share of a run's objects below the slide's nuclear hematoxylin range (and the overlay crop)."""
    objects = [o for o in read_objects(run_path) if o.object_type in ("detection", "cell")]
    if not objects:
        raise CellBridgeError(f"{run_path}: no detections or cells")
    with open_slide(slide_path) as slide:
        width, height = slide.dimensions
        rgb = slide.read_region(0, 0, width, height)
        mask = detect_tissue(slide)
        tissue = cv2.resize(mask.mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    reference = StainVectors.default("he")
    try:
        stains, source = estimate_stains(rgb[tissue], reference), "estimated from the slide (Macenko)"
    except StainError as error:
        stains, source = reference, f"QuPath's H&E defaults ({error})"
    outlines = [o.locating_geometry for o in objects]
    means, tissue_level = hematoxylin_of_objects(rgb, outlines, stains, tissue)
    lower = tissue_level + contrast
    below = means < lower
    result = {"slide": str(slide_path), "run": str(run_path), "objects": len(objects),
              "below_nuclear_range": int(below.sum()), "share_below": round(float(below.mean()), 4),
              "nuclear_range_starts_at_od": round(lower, 4), "tissue_hematoxylin_od": round(tissue_level, 4),
              "object_hematoxylin_od_percentiles": {str(p): round(float(np.nanpercentile(means, p)), 4)
                                                    for p in (5, 25, 50, 75, 95)},
              "stain_vectors": source}
    if overlay is not None:
        crop = crop or (max(0, width // 2 - 512), max(0, height // 2 - 512), min(1024, width), min(1024, height))
        draw_overlay(rgb, outlines, below, crop, overlay)
        result.update(overlay=str(overlay), crop=list(crop))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("slide", type=Path)
    parser.add_argument("run", type=Path, help="the run's QuPath GeoJSON")
    parser.add_argument("--overlay", type=Path, help="write the full-resolution overlay crop here (PNG)")
    parser.add_argument("--crop", help="X,Y,W,H of the crop in level-0 pixels (default: 1024² at the centre)")
    parser.add_argument("--contrast", type=float, default=QUPATH_THRESHOLD,
                        help="OD above the tissue's hematoxylin where the nuclear range starts (default 0.1)")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    try:
        crop = tuple(int(v) for v in args.crop.split(",")) if args.crop else None
        if crop is not None and (len(crop) != 4 or crop[2] <= 0 or crop[3] <= 0):
            raise CellBridgeError(f"--crop must be X,Y,W,H with positive W and H, not {args.crop!r}")
        result = sanity(args.slide, args.run, args.overlay, crop, args.contrast)
    except (CellBridgeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json_out:
        with atomic_write(args.json_out) as handle:
            json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
