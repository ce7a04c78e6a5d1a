"""`cellbridge sample`: the main job end to end on a built-in synthetic slide (no downloads, no arguments)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SAMPLE_SIZE = 4096
SAMPLE_TISSUE = 0.25


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser(
        "sample", help="run the pipeline end to end on a built-in synthetic slide",
        description="Generate a synthetic H&E slide with known nuclei, plan tiles over its tissue, export "
                    "training tiles as COCO, and print where every output is.")
    parser.add_argument("--out-dir", default="sample-output", help="where outputs go (default ./sample-output)")
    parser.add_argument("--size", type=int, default=SAMPLE_SIZE, help=f"slide side in pixels (default {SAMPLE_SIZE})")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic slide (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate, tile, export; print a JSON summary with the output paths."""
    from cellbridge.datasets.tile_export import export_coco_tiles
    from cellbridge.io.atomic import atomic_write
    from cellbridge.io.qupath_geojson import read_objects
    from cellbridge.io.slides import open_slide
    from cellbridge.synth import SynthConfig, generate_slide
    from cellbridge.tiling import detect_tissue, plan_tiles

    out = Path(args.out_dir)
    config = SynthConfig(width=args.size, height=args.size, tissue_fraction=SAMPLE_TISSUE, seed=args.seed)
    synth = generate_slide(out / "sample-slide.tif", config, out / "sample-truth.geojson", progress=True)
    with open_slide(synth.path) as slide:
        tissue = detect_tissue(slide)
        plan = plan_tiles(*slide.dimensions, tile_size=512, overlap=64, tissue=tissue)
        plan_path = out / "tile-plan.json"
        with atomic_write(plan_path) as handle:
            json.dump({"tiles": len(plan), "full_scan_tiles": plan.grid_tiles,
                       "tissue_fraction": round(tissue.fraction, 4),
                       "tile_list": [{"index": t.index, "bounds": t.bounds, "core": t.core} for t in plan]}, handle)
        export = export_coco_tiles(slide, read_objects(synth.truth_path), out / "coco", tile_size=1024,
                                   overlap=128, progress=True)
    summary = {
        "slide": str(synth.path), "truth": str(synth.truth_path), "nuclei": len(synth.scene),
        "classes": synth.class_counts, "tile_plan": str(plan_path),
        "tiles_read": len(plan), "full_scan_tiles": plan.grid_tiles,
        "coco": str(export.json_path), "coco_images": export.images, "coco_annotations": export.annotations,
    }
    print(json.dumps(summary, indent=2))
    print(f"Outputs are in {out.resolve()}")
    return 0
