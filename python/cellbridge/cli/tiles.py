"""`cellbridge tiles`: plan tiles over ROI ∩ tissue and print the plan as JSON."""

from __future__ import annotations

import argparse
import json

from cellbridge.cli.options import add_tiling_options, load_roi
from cellbridge.io.slides import open_slide
from cellbridge.tiling import detect_tissue, plan_tiles


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser("tiles", help="plan tiles over a slide and print tile count and tissue fraction",
                                   description="Plan the tiles a run would read (ROI ∩ tissue) and print a JSON "
                                               "summary: tiles kept, tiles of a full scan, tissue fraction.")
    parser.add_argument("slide", help="slide or image file")
    add_tiling_options(parser, tile=512, overlap=64)
    parser.add_argument("--roi", help="QuPath GeoJSON whose annotation polygons limit the region")
    parser.add_argument("--no-tissue", action="store_true", help="plan every tile, without tissue detection")
    parser.add_argument("--list", action="store_true", help="also print every tile's bounds and core")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Plan and print."""
    with open_slide(args.slide) as slide:
        roi = load_roi(args.roi) if args.roi else None
        tissue = None if args.no_tissue else detect_tissue(slide)
        plan = plan_tiles(*slide.dimensions, tile_size=args.tile, overlap=args.overlap,
                          downsample=args.downsample, roi=roi, tissue=tissue)
        summary = {
            "slide": str(slide.path), "backend": slide.backend, "width": slide.dimensions[0],
            "height": slide.dimensions[1], "mpp": slide.mpp, "tile": args.tile, "overlap": args.overlap,
            "downsample": args.downsample, "tiles": len(plan), "full_scan_tiles": plan.grid_tiles,
            "kept_fraction": round(plan.kept_fraction, 4),
            "tissue_fraction": None if tissue is None else round(tissue.fraction, 4),
        }
        if args.list:
            summary["tile_list"] = [{"index": t.index, "bounds": t.bounds, "core": t.core} for t in plan]
    print(json.dumps(summary, indent=2))
    return 0
