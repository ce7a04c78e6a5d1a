"""`cellbridge detect`: run a detector model over slides or images, write QuPath GeoJSON; the run over every input
that `cellbridge nuclei` shares."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cellbridge.pipeline.options import add_run_arguments


def add_model_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments `detect` and `nuclei` share: inputs, outputs, ROI, run options, overlay and classifier."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="slides or plain images")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="output QuPath GeoJSON (one input)")
    where.add_argument("--out-dir", help="output folder: <stem>.geojson per input")
    parser.add_argument("--roi", help="QuPath GeoJSON whose annotation polygons limit the region")
    add_run_arguments(parser, "device", "batch_size", "tile_size", "overlap", "pixel_size", "tissue", "threshold")
    parser.add_argument("--overlay", help="also write a PNG of the objects over a downsampled view (with "
                        "--out-dir: a folder for <stem>.png)")
    parser.add_argument("--classifier", help="classify objects after measuring: a reference-colour JSON "
                        "({\"classes\": {\"Positive\": [r,g,b], ...}}) or a classifier saved by CellBridge")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `detect` parser."""
    detect = subparsers.add_parser(
        "detect", help="detect objects (boxes or points) with a detector model",
        description="Run a model package over slides/images tile by tile (tissue only), merge across tile seams "
                    "and write QuPath GeoJSON detections with class and 'Detection probability'.")
    add_model_run_arguments(detect)
    detect.add_argument("--model", required=True, help="model folder or name (see `cellbridge models`)")
    detect.add_argument("--points", action="store_true", help="write box centres as points instead of boxes")
    detect.set_defaults(func=run, task="detect")


def run(args: argparse.Namespace) -> int:
    """Load the model once, run every input, print one JSON summary per input."""
    return run_model(args, {"output": "points"} if args.points else {})


def run_model(args: argparse.Namespace, engine: dict[str, Any], check: Callable[[Any], None] | None = None,
              regions: Callable[[Any], Any] | None = None) -> int:
    """Run `args.model` over every input with these engine options; print one JSON summary per input.

    `check(pipeline)` refuses a model the command cannot use; `regions(pipeline)` gives the per-region summaries
    of the command's runs (an object with `run(slide, out, roi, overlay) -> (result, extra)` and `finish()`),
    or None for plain runs."""
    from cellbridge.cli.options import load_roi
    from cellbridge.cli.outputs import planned_outputs, run_each
    from cellbridge.io.slides import open_slide
    from cellbridge.pipeline.run import Pipeline, RunOptions

    outputs = planned_outputs(args)  # every output checked before the model loads
    options = RunOptions.from_args(args, engine=engine, progress=True, classifier=args.classifier)
    pipeline = Pipeline(args.model, options)
    if check is not None:
        check(pipeline)
    roi = load_roi(args.roi) if args.roi else None
    region_run = regions(pipeline) if regions is not None else None
    summaries = []

    def run_one(source: str, out: Path, overlay: Path | None) -> None:
        with open_slide(source) as slide:
            if region_run is None:
                result = pipeline.run(slide, out, roi, overlay=overlay)
                extra = {}
            else:
                result, extra = region_run.run(slide, out, roi, overlay)
        summary = {"input": str(source), **result.summary(), **extra}
        if overlay:
            summary["overlay"] = str(overlay)
        summaries.append(summary)

    status = run_each(args.task, outputs, run_one)
    if region_run is not None:
        region_run.finish()
    if summaries:  # one JSON document: the summary of the one input, or a list with one per input
        print(json.dumps(summaries[0] if len(outputs) == 1 else summaries, indent=2, ensure_ascii=False))
    return status
