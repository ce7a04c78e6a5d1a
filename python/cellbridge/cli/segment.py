"""`cellbridge segment`: run a region (semantic) or instance (gland) model over slides, write QuPath GeoJSON."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from cellbridge.cli.argtypes import non_negative_float
from cellbridge.pipeline.options import add_run_arguments

TASKS = ("semantic", "instance")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser(
        "segment", help="segment regions (semantic U-Net) or glands (instance models) into QuPath objects",
        description="Run a semantic or instance model package over slides/images tile by tile. Semantic models: "
                    "class probabilities blended across tile overlaps, one polygon per connected region and class "
                    "(holes kept, small pieces dropped). Instance models (U-Net + distance watershed, Mask R-CNN): "
                    "one polygon per object, merged across tile seams. Objects carry their class and area.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="slides or plain images")
    parser.add_argument("--model", required=True, help="model folder or name (see `cellbridge models`)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="output QuPath GeoJSON (one input)")
    where.add_argument("--out-dir", help="output folder: <stem>.geojson per input")
    parser.add_argument("--as", dest="object_type", choices=["annotation", "detection"], default="annotation",
                        help="write regions/objects as QuPath annotations (default) or detections")
    parser.add_argument("--overlay", help="also write a PNG of the objects over a downsampled view (with "
                        "--out-dir: a folder for <stem>.png)")
    parser.add_argument("--roi", help="QuPath GeoJSON whose annotation polygons limit the region")
    parser.add_argument("--min-area", type=non_negative_float, help="drop regions/objects smaller than this many "
                        "model pixels² (default: the model's)")
    add_run_arguments(parser, "device", "batch_size", "tile_size", "overlap", "pixel_size", "tissue",
                      help={"tissue": "process every tile, not only tissue (e.g. pale blood smears)"})
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model once, run every input, print one JSON summary per input (with the area per class)."""
    from cellbridge.cli.options import load_roi
    from cellbridge.cli.outputs import planned_outputs, run_each
    from cellbridge.errors import CellBridgeError
    from cellbridge.features.measure import shape_name
    from cellbridge.io.slides import open_slide
    from cellbridge.models.package import load_model
    from cellbridge.pipeline.run import Pipeline, RunOptions

    outputs = planned_outputs(args)  # every output checked before the model loads
    package = load_model(args.model)
    task = package.spec.task
    if task not in TASKS:
        raise CellBridgeError(f"model {args.model!r} is a {task} model; `segment` needs a semantic or instance "
                              "model (use `cellbridge detect` or `cellbridge nuclei`)")
    engine = {"object_type": args.object_type}
    if args.min_area is not None:
        engine["min_area"] = args.min_area
    options = RunOptions.from_args(args, engine=engine, progress=True)
    pipeline = Pipeline(package, options)
    roi = load_roi(args.roi) if args.roi else None
    summaries = []

    def run_one(source: str, out, overlay) -> None:
        with open_slide(source) as slide:
            area_name = shape_name("Area", options.pixel_size or slide.mpp)
            areas: dict[str, float] = defaultdict(float)

            def add_area(obj) -> None:
                areas[obj.class_name or "Unclassified"] += float(obj.measurements.get(area_name, 0.0))

            result = pipeline.run(slide, out, roi, overlay=overlay, on_object=add_area)
        summary = {"input": str(source), "task": task, **result.summary(),
                   "area": {"unit": area_name.split(" ", 1)[1], **{k: round(v, 2) for k, v in sorted(areas.items())}}}
        if overlay:
            summary["overlay"] = str(overlay)
        summaries.append(summary)

    status = run_each("segment", outputs, run_one)
    if summaries:  # one JSON document: the summary of the one input, or a list with one per input
        print(json.dumps(summaries[0] if len(outputs) == 1 else summaries, indent=2, ensure_ascii=False))
    return status
