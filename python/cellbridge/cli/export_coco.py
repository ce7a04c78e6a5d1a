"""`cellbridge export-coco`: training tiles (PNG) + COCO JSON from a slide and its QuPath annotations."""

from __future__ import annotations

import argparse
import json
import math

from cellbridge.cli.argtypes import non_negative_int, positive_int
from cellbridge.datasets.tile_export import TRAINING_AREA


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser(
        "export-coco", help="export training tiles and a COCO JSON from QuPath annotations",
        description="Tile the annotated region of a slide, write tile PNGs and a COCO JSON (annotations.json). "
                    f"The region is the {TRAINING_AREA!r} annotations (minus 'Ignore*'), else the unclassified "
                    "annotations, else the bounding box of the labelled objects.")
    parser.add_argument("slide", help="slide or image file")
    parser.add_argument("annotations", help="QuPath GeoJSON with classified objects (points, polygons, boxes)")
    parser.add_argument("out_dir", help="output folder (images/ and annotations.json)")
    parser.add_argument("--tile", type=positive_int, default=1024, help="tile size in output pixels (default 1024)")
    parser.add_argument("--overlap", type=non_negative_int, default=128,
                        help="overlap between tiles in pixels (default 128)")
    parser.add_argument("--downsample", default="1",
                        help="downsample(s) to export, comma-separated for several pyramid levels (default 1)")
    parser.add_argument("--point-box", default="24",
                        help="box size in level-0 pixels for point annotations: one number, or per class "
                             "like 'RBC=24,WBC=48,*=30' (default 24)")
    parser.add_argument("--region-class", default=TRAINING_AREA,
                        help=f"class of the annotations that mark fully annotated areas (default {TRAINING_AREA!r})")
    parser.add_argument("--classes", help="comma-separated class order for category ids (default: sorted names)")
    parser.add_argument("--keep-empty", action="store_true", help="also write tiles without any object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and print a JSON summary."""
    from pathlib import Path

    from cellbridge.datasets.tile_export import export_coco_tiles, parse_point_box
    from cellbridge.errors import CellBridgeError
    from cellbridge.io.qupath_geojson import read_objects
    from cellbridge.io.slides import open_slide

    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise CellBridgeError(f"{args.out_dir}: is a file; export-coco writes a folder (images/ and annotations.json)")
    try:
        downsamples = [float(d) for d in args.downsample.split(",")]
    except ValueError:
        downsamples = []
    if not downsamples or not all(math.isfinite(d) and d > 0 for d in downsamples):
        raise CellBridgeError(f"--downsample {args.downsample!r}: expected positive numbers, comma-separated")
    point_box = parse_point_box(args.point_box)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    objects = read_objects(args.annotations)
    with open_slide(args.slide) as slide:
        result = export_coco_tiles(slide, objects, args.out_dir, tile_size=args.tile, overlap=args.overlap,
                                   downsamples=downsamples, point_box=point_box,
                                   region_class=args.region_class, keep_empty=args.keep_empty,
                                   classes=classes, progress=True)
    print(json.dumps({"coco": str(result.json_path), "images": result.images, "annotations": result.annotations,
                      "per_class": result.per_class, "region": result.region_source,
                      "skipped": dict(result.skipped)}, indent=2))
    return 0
