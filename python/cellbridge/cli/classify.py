"""`cellbridge classify`: classify the detections of a QuPath GeoJSON file with a saved classifier (what QuPath's
Extensions > CellBridge > Classify detections runs)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `classify` parser."""
    classify = subparsers.add_parser(
        "classify", help="classify the detections of a QuPath GeoJSON file with a saved classifier",
        description="Read the detections and cells of a QuPath GeoJSON file, classify them with a classifier JSON "
                    "(reference colours, or a trained measurement classifier) and write them, with their class and "
                    "'Class probability: <class>' measurements, to a new GeoJSON file (ids kept). QuPath's "
                    "Extensions > CellBridge > Classify detections runs this.")
    classify.add_argument("objects", help="QuPath GeoJSON with detections or cells (with their measurements)")
    classify.add_argument("--classifier", required=True, help="classifier JSON file")
    classify.add_argument("--out", required=True, help="output QuPath GeoJSON")
    classify.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Classify the objects of one file; print the counts per class as JSON."""
    from cellbridge.features.classify_geojson import classify_file

    counts = classify_file(args.objects, args.classifier, args.out)
    print(json.dumps({"output": args.out, "objects": sum(counts.values()), "classes": counts}, indent=2))
    return 0
