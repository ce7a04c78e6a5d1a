"""`cellbridge batch`: run a model over every image of QuPath projects or slide files, without QuPath (resumable)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cellbridge.cli.argtypes import positive_int
from cellbridge.models import DEFAULT_NUCLEI_MODEL
from cellbridge.pipeline.options import add_run_arguments

EXIT_SOME_FAILED = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `batch` parser."""
    parser = subparsers.add_parser(
        "batch", help="run a model over every image of QuPath projects or slide files (GeoJSON per image + "
                      "counts CSV), here or on Dask workers",
        description="Read QuPath projects (project.qpproj; with paquo when it finds a QuPath installation, else "
                    "the JSON directly) and slide files, run the model over every image, and write one QuPath "
                    "GeoJSON per image (File > Import objects in QuPath) and counts.csv with the objects per "
                    "class per image. Resumable: images already done with the same model and parameters are "
                    "skipped. A failing image is reported and the batch goes on; the exit code is 1 when any "
                    "image failed. With --scheduler, every image is one Dask task: 'local' starts workers on "
                    "this machine, an address (tcp://HOST:8786) uses a running Dask cluster whose workers see "
                    "the same files; each worker loads the model once, and an image whose worker dies is run "
                    "again on another.")
    parser.add_argument("projects", nargs="+", metavar="PROJECT_OR_SLIDE",
                        help="project.qpproj files, the project folders holding them, or slide files")
    parser.add_argument("--model", default=DEFAULT_NUCLEI_MODEL, help=f"model folder or name (default {DEFAULT_NUCLEI_MODEL}; "
                        "see `cellbridge models`)")
    parser.add_argument("--out-dir", required=True, help="output folder: counts.csv and <project>/<id>-<image>.geojson")
    add_run_arguments(parser, "device", "batch_size", "tile_size", "overlap", "cell_expansion", "threshold",
                      "pixel_size", "tissue", "tta")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", dest="resume", action="store_true", default=True,
                        help="skip images already done with the same model and parameters (default)")
    resume.add_argument("--no-resume", dest="resume", action="store_false", help="run every image again")
    parser.add_argument("--reader", choices=["auto", "json", "paquo"], default="auto",
                        help="how to read projects: paquo when it finds QuPath (auto, default), or the JSON")
    parser.add_argument("--scheduler", help="run each image as a Dask task: 'local' (a cluster on this machine) "
                        "or a scheduler address such as tcp://HOST:8786 (default: one image after another here)")
    parser.add_argument("--workers", type=positive_int, help="worker processes of --scheduler local (default: one "
                        "per GPU, else one per two cores, at most 4)")
    parser.add_argument("--threads", type=positive_int, help="torch threads per image (default: the host's cores "
                        "shared among its workers; all cores without --scheduler)")
    parser.add_argument("--write-to-project", action="store_true",
                        help="also put each image's objects into its QuPath project (replacing those of an earlier "
                        "CellBridge write; annotations and other objects stay); needs paquo "
                        "(pip install 'cellbridge[qupath]') and a QuPath installation")
    parser.add_argument("--csv", default="counts.csv", help="name of the counts table in --out-dir "
                        "(default counts.csv)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the batch, print a JSON summary; exit 1 when any image failed."""
    from cellbridge.batch.runner import BatchOptions, run_batch
    from cellbridge.pipeline.options import RunOptions

    options = BatchOptions(model=args.model, out_dir=Path(args.out_dir), run=RunOptions.from_args(args),
                           resume=args.resume, reader=args.reader, progress=True, csv_name=args.csv,
                           scheduler=args.scheduler, workers=args.workers, threads=args.threads,
                           write_to_project=args.write_to_project)
    summary = run_batch(args.projects, options)
    for failure in summary.failures:
        where = f"{failure.project}: {failure.image} (id {failure.image_id})" if failure.image else failure.project
        print(f"cellbridge batch: {where}: {failure.error}", file=sys.stderr)
    print(json.dumps(summary.to_json(), indent=2))
    return EXIT_SOME_FAILED if summary.failures else 0
