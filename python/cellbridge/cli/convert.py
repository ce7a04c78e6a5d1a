"""`cellbridge convert`: Pascal VOC or COCO into COCO JSON or QuPath GeoJSON (one file per image)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cellbridge.datasets import Dataset, read_coco, read_voc, write_coco
from cellbridge.datasets.records import ImageRecord, sorted_classes
from cellbridge.errors import DatasetError
from cellbridge.objects import PathClass, PathObject


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser(
        "convert", help="convert a Pascal VOC or COCO dataset to COCO JSON or QuPath GeoJSON",
        description="Read Pascal VOC (a folder with Annotations/ and JPEGImages/) or COCO JSON into one dataset "
                    "and write it as COCO JSON (image paths relative to the JSON) or as one QuPath GeoJSON per "
                    "image whose labels are annotations (editable in QuPath: File > Import objects, then correct "
                    "them and export-coco again).")
    parser.add_argument("source", help="VOC folder or COCO .json file")
    parser.add_argument("out", help="output .json file (--to coco) or folder (--to geojson)")
    parser.add_argument("--from", dest="source_format", choices=["auto", "voc", "coco"], default="auto",
                        help="input format (default: VOC for folders, COCO for .json files)")
    parser.add_argument("--to", dest="target_format", choices=["coco", "geojson"], default="coco",
                        help="output format (default coco)")
    parser.add_argument("--split", help="VOC split from ImageSets/Main (e.g. train, val, test)")
    parser.add_argument("--images", help="COCO: folder that image file names are relative to")
    parser.add_argument("--classes", help="comma-separated class order for category ids (default: sorted)")
    parser.set_defaults(func=run)


def read_dataset(source: str, source_format: str = "auto", split: str | None = None,
                 images: str | None = None, classes: list[str] | None = None) -> Dataset:
    """Read a VOC folder or COCO file (format guessed from the path when 'auto')."""
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if source_format == "auto":
        source_format = "voc" if path.is_dir() else "coco"
    if source_format == "voc":
        return read_voc(path, split=split, classes=classes)
    if split:
        raise DatasetError("--split applies to Pascal VOC only")
    dataset = read_coco(path, image_dir=images)
    if classes:
        dataset.classes = sorted_classes(dataset.classes, classes)
    return dataset


def image_objects(image: ImageRecord, dataset: Dataset) -> list[PathObject]:
    """A dataset image's labels as QuPath annotations (outline when known, else the box), which QuPath lets users
    edit (detections it does not)."""
    from shapely.geometry import box

    objects = []
    for a in image.annotations:
        geometry = a.geometry if a.geometry is not None else box(*a.bbox)
        objects.append(PathObject(geometry, "annotation", PathClass.of(a.label, dataset.colors.get(a.label))))
    return objects


def run(args: argparse.Namespace) -> int:
    """Convert and print a JSON summary."""
    from cellbridge.cli.outputs import same_file_key

    if same_file_key(Path(args.out)) == same_file_key(Path(args.source)):
        raise DatasetError(f"{args.out}: the output is the input; choose another output path")
    if args.target_format == "coco" and Path(args.out).is_dir():
        raise DatasetError(f"{args.out}: is a folder; --to coco writes one .json file")
    if args.target_format == "geojson" and Path(args.out).exists() and not Path(args.out).is_dir():
        raise DatasetError(f"{args.out}: is a file; --to geojson writes one .geojson per image into a folder")
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    dataset = read_dataset(args.source, args.source_format, args.split, args.images, classes)
    if args.target_format == "coco":
        write_coco(dataset, args.out)
    else:
        from cellbridge.io.qupath_geojson import write_objects

        for image in dataset.images:
            write_objects(image_objects(image, dataset), Path(args.out) / f"{image.name}.geojson")
    print(json.dumps({"out": args.out, "images": len(dataset.images), "classes": dataset.classes,
                      "per_class": dataset.counts()}, indent=2))
    return 0
