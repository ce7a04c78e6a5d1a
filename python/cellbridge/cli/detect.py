"""`cellbridge detect` and `cellbridge nuclei`: run a model over slides or images, write QuPath GeoJSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cellbridge.models import DEFAULT_NUCLEI_MODEL
from cellbridge.pipeline.options import add_run_arguments


def _common(parser: argparse.ArgumentParser) -> None:
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
    """Add the `detect` and `nuclei` parsers."""
    detect = subparsers.add_parser(
        "detect", help="detect objects (boxes or points) with a detector model",
        description="Run a model package over slides/images tile by tile (tissue only), merge across tile seams "
                    "and write QuPath GeoJSON detections with class and 'Detection probability'.")
    _common(detect)
    detect.add_argument("--model", required=True, help="model folder or name (see `cellbridge models`)")
    detect.add_argument("--points", action="store_true", help="write box centres as points instead of boxes")
    detect.set_defaults(func=run, task="detect")
    nuclei = subparsers.add_parser(
        "nuclei", help="detect and segment nuclei (optionally cells) with the nuclei model",
        description="Keypoint U-Net + seeded watershed: one polygon per nucleus, classified and measured, "
                    "written as QuPath detections (or cells with --cell-expansion).")
    _common(nuclei)
    nuclei.add_argument("--model", default=DEFAULT_NUCLEI_MODEL, help=f"default {DEFAULT_NUCLEI_MODEL}")
    add_run_arguments(nuclei, "cell_expansion", "tta")
    nuclei.add_argument("--foreground", choices=["model", "otsu"], help="nucleus foreground: the model's "
                        "(default) or Otsu on hematoxylin")
    ihc = nuclei.add_argument_group("IHC scoring (QuPath's positive cell detection conventions; OD = optical "
                                    "density, -log10 of the transmitted light: 0 clear glass, ~1 dark stain)")
    ihc.add_argument("--stain", choices=["he", "ihc-dab"], default="he",
                     help="ihc-dab: score each nucleus's DAB optical density and summarise per region")
    ihc.add_argument("--stain-vectors", default="estimate",
                     help="estimate (Macenko: the stain colours read from the slide's own stained pixels, per "
                          "slide; falls back to QuPath's defaults), default, or a JSON file")
    ihc.add_argument("--positivity", default="0.2,0.4,0.6",
                     help="DAB OD thresholds: three for Negative/1+/2+/3+, one for Positive/Negative, or a JSON "
                          "of reference colours (a colour classifier) (default 0.2,0.4,0.6)")
    ihc.add_argument("--keep-classes", action="store_true", help="keep the model's class as parent (Tumor: 2+)")
    regions = nuclei.add_argument_group(
        "Regions (any stain: counts per class and per mm²; with --stain ihc-dab also positive %, H-score)")
    regions.add_argument("--annotations", help="QuPath GeoJSON whose annotations are the regions to summarise, "
                         "each named by its 'name' property (default: the whole image); written back with the "
                         "summary measurements, clipped to each image")
    regions.add_argument("--summary", help="CSV with one row per image × region")
    regions.add_argument("--report", help="folder for a PNG report per image (objects, regions, numbers)")
    nuclei.set_defaults(func=run, task="nuclei")


OVERLAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def _outputs(args: argparse.Namespace) -> list[tuple[str, Path, Path | None]]:
    """(input, GeoJSON output, overlay or None) per input, every output checked before any work starts."""
    from cellbridge.errors import CellBridgeError

    if args.out and len(args.inputs) > 1:
        raise CellBridgeError("--out takes one input; use --out-dir for several")
    result = []
    for item in args.inputs:
        stem = Path(item).stem
        out = Path(args.out) if args.out else Path(args.out_dir) / f"{stem}.geojson"
        overlay = None
        if args.overlay:
            overlay = Path(args.overlay) if args.out else Path(args.overlay) / f"{stem}.png"
        result.append((item, out, overlay))
    from cellbridge.cli.outputs import check_outputs

    check_outputs([item for item, _, _ in result], [p for _, out, overlay in result for p in (out, overlay) if p])
    for _, _, overlay in result:
        if overlay is not None and overlay.suffix.lower() not in OVERLAY_SUFFIXES:
            raise CellBridgeError(f"{overlay}: the overlay must be {', '.join(OVERLAY_SUFFIXES)}")
    return result


def run(args: argparse.Namespace) -> int:
    """Load the model once, run every input, print one JSON summary per input."""
    from cellbridge.cli.options import load_roi
    from cellbridge.errors import CellBridgeError
    from cellbridge.io.slides import open_slide
    from cellbridge.pipeline.run import Pipeline, RunOptions

    outputs = _outputs(args)  # every output checked before the model loads
    engine: dict = {}
    if args.task == "detect" and args.points:
        engine["output"] = "points"
    if args.task == "nuclei" and args.foreground:
        engine["foreground"] = args.foreground
    options = RunOptions.from_args(args, engine=engine, progress=True, classifier=args.classifier)
    pipeline = Pipeline(args.model, options)
    if args.task == "nuclei" and pipeline.package.spec.task != "nuclei":
        raise CellBridgeError(f"model {args.model!r} is a {pipeline.package.spec.task} model; `nuclei` needs a "
                              "nuclei model (use `cellbridge detect` for detectors)")
    roi = load_roi(args.roi) if args.roi else None
    scoring = getattr(args, "stain", "he") == "ihc-dab"
    wants_regions = any(getattr(args, name, None) for name in ("annotations", "summary", "report"))
    regions = RegionRun(args, pipeline, scoring) if scoring or wants_regions else None
    summaries = []

    def run_one(source: str, out: Path, overlay: Path | None) -> None:
        with open_slide(source) as slide:
            if regions is None:
                result = pipeline.run(slide, out, roi, overlay=overlay)
                extra = {}
            else:
                result, extra = regions.run(slide, out, roi, overlay)
        summary = {"input": str(source), **result.summary(), **extra}
        if overlay:
            summary["overlay"] = str(overlay)
        summaries.append(summary)

    from cellbridge.cli.outputs import run_each

    status = run_each(args.task, outputs, run_one)
    if regions is not None:
        regions.finish()
    if summaries:  # one JSON document: the summary of the one input, or a list with one per input
        print(json.dumps(summaries[0] if len(outputs) == 1 else summaries, indent=2, ensure_ascii=False))
    return status


class RegionRun:
    """Per-slide regions (counts per class and density; with IHC scoring also the stain vectors and positivity),
    the report image, and the CSV over every input."""

    def __init__(self, args: argparse.Namespace, pipeline, scoring: bool) -> None:
        from pathlib import Path

        from cellbridge.ihc import parse_positivity
        from cellbridge.io.qupath_geojson import read_objects

        self.args, self.pipeline, self.scoring = args, pipeline, scoring
        self.thresholds: tuple[float, ...] | None = None
        self.options = pipeline.options  # this command's runs: the pipeline's options with the IHC ones
        if scoring:
            positivity = parse_positivity(args.positivity)
            if isinstance(positivity, Path):
                self.options = self.options.with_changes(classifier=positivity)
            else:
                self.thresholds = tuple(positivity)
                self.options = self.options.with_changes(positivity=self.thresholds)
            self.options = self.options.with_changes(derive_classes=args.keep_classes)
        self.regions = [o for o in read_objects(args.annotations) if o.object_type == "annotation"] \
            if args.annotations else []
        if args.annotations and not self.regions:
            from cellbridge.errors import CellBridgeError
            raise CellBridgeError(f"{args.annotations}: no annotations to use as regions")
        self.rows: list[dict] = []

    def run(self, slide, out, roi, overlay):
        import sys
        from pathlib import Path

        from cellbridge.ihc import ReportImage, SlideSummary, stains_for_slide

        options = self.options
        mpp = options.pixel_size or slide.mpp
        if self.scoring:
            stains, note = stains_for_slide(self.args.stain_vectors, slide)
            if self.thresholds is not None:
                options = options.with_changes(stain_vectors=stains)
            summary = SlideSummary(slide.path.name, [_copy(r) for r in self.regions], image_size=slide.dimensions,
                                   whole_image=roi, mpp=mpp,
                                   graded=self.thresholds is not None and len(self.thresholds) == 3,
                                   extra={"Stain vectors": stains.to_qupath(), "Thresholds": self.args.positivity})
        else:
            summary = SlideSummary(slide.path.name, [_copy(r) for r in self.regions], image_size=slide.dimensions,
                                   whole_image=roi, mpp=mpp, scored=False,
                                   classes=self.pipeline.package.spec.class_names)
        for note in summary.notes:
            print(f"cellbridge {self.args.task}: {slide.path.name}: region {note}", file=sys.stderr)
        report = ReportImage.from_slide(slide, classes=self.pipeline.package.spec.class_names) \
            if self.args.report else None

        def each(obj) -> None:
            summary.add(obj)
            if report is not None:
                report.draw(obj)

        result = self.pipeline.run(slide, out, roi, overlay=overlay, on_object=each, trailer=summary.apply,
                                   options=options)
        extra = {"stain_vectors": stains.to_json(), "stain_note": note} if self.scoring else {}
        extra["regions"] = [r.row() for r in summary.regions]
        if report is not None:
            suffix = "ihc" if self.scoring else "regions"
            path = Path(self.args.report) / f"{Path(slide.path).stem}-{suffix}.png"
            report.save(path, summary, title=slide.path.name)
            extra["report"] = str(path)
        self.rows += summary.rows()
        return result, extra

    def finish(self) -> None:
        if self.args.summary:
            from cellbridge.ihc.summary import COUNT_COLUMNS, CSV_COLUMNS, write_summary_csv
            write_summary_csv(self.rows, self.args.summary, CSV_COLUMNS if self.scoring else COUNT_COLUMNS)


def _copy(annotation):
    """A fresh copy of a region annotation for one slide's summary (measurements are per slide)."""
    import copy
    return copy.deepcopy(annotation)
