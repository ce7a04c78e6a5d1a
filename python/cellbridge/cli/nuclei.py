"""`cellbridge nuclei`: segment nuclei (optionally cells) with a nuclei model over slides or images, write QuPath
GeoJSON; with regions or IHC scoring, counts per class and per mm² per region, a CSV and a PNG report."""

from __future__ import annotations

import argparse

from cellbridge.cli.detect import add_model_run_arguments, run_model
from cellbridge.models import DEFAULT_NUCLEI_MODEL
from cellbridge.pipeline.options import add_run_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `nuclei` parser."""
    nuclei = subparsers.add_parser(
        "nuclei", help="detect and segment nuclei (optionally cells) with the nuclei model",
        description="Keypoint U-Net + seeded watershed: one polygon per nucleus, classified and measured, "
                    "written as QuPath detections (or cells with --cell-expansion).")
    add_model_run_arguments(nuclei)
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


def run(args: argparse.Namespace) -> int:
    """Load the model once, run every input, print one JSON summary per input (with its regions when asked)."""
    from cellbridge.errors import CellBridgeError

    def check(pipeline) -> None:
        if pipeline.package.spec.task != "nuclei":
            raise CellBridgeError(f"model {args.model!r} is a {pipeline.package.spec.task} model; `nuclei` needs a "
                                  "nuclei model (use `cellbridge detect` for detectors)")

    scoring = args.stain == "ihc-dab"
    wants_regions = any(getattr(args, name, None) for name in ("annotations", "summary", "report"))

    def regions(pipeline) -> RegionRun | None:
        return RegionRun(args, pipeline, scoring) if scoring or wants_regions else None

    return run_model(args, {"foreground": args.foreground} if args.foreground else {}, check, regions)


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
