"""`cellbridge evaluate`: score a model on labelled data (nuclei: instance F1 / PQ / centre F1; detect: COCO AP)."""

from __future__ import annotations

import argparse
import json

from cellbridge.pipeline.options import add_run_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser(
        "evaluate", help="score a model on labelled images",
        description="nuclei: F1 at IoU 0.5, precision, recall, mean matched IoU, panoptic quality (PQ = that F1 × "
                    "the mean IoU of the matched nuclei: finding them and outlining them in one number, 0-1) and "
                    "centre F1 at 4/8 px, overall and per image, on a DSB-2018-style folder (images/, labels/, "
                    "points/); centre F1 only on a folder of images with centre points (images/, "
                    "points/<id>.json, EndoNuke). "
                    "detect: COCO AP, AP50, AR100 and per-class AP50 on a VOC folder or COCO JSON.")
    parser.add_argument("--task", required=True, choices=["nuclei", "keypoints", "instance", "detect"],
                        help="nuclei (alias keypoints, as in train), instance (glands: adds GlaS object F1 / Dice / Hausdorff "
                             "on the same folder layout) or detect")
    parser.add_argument("--model", required=True, help="model folder or name")
    parser.add_argument("--data", required=True, help="labelled data (see above)")
    parser.add_argument("--split", help="detect on VOC: the split to score (default test); nuclei: test (the "
                        "images held out by id: numeric id mod 5 == 0), train (the others) or all (default)")
    parser.add_argument("--only", help="nuclei: comma-separated image ids to score")
    parser.add_argument("--modality", help="nuclei: only images whose manifest modality contains this text")
    add_run_arguments(parser, "pixel_size", "device", "tta",
                      help={"pixel_size": "µm per pixel of the images, or 'estimate' (the default: per image from "
                                          "its nuclei)"})
    parser.add_argument("--json", dest="json_out", help="also write the full result (per image too) here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the overall scores as JSON."""
    from cellbridge.io.atomic import atomic_write

    if args.task == "detect":
        from cellbridge.train.detect import evaluate_detector

        result = evaluate_detector(args.model, args.data, split=args.split or "test", device=args.device,
                                   progress=True)
        shown = result
    else:
        from cellbridge.evaluate.nuclei import evaluate_nuclei, read_nuclei_truth
        from cellbridge.pipeline.run import Pipeline, RunOptions

        only = [s.strip() for s in args.only.split(",")] if args.only else None
        images = read_nuclei_truth(args.data, only=only, modality=args.modality, split=args.split or "all")
        options = RunOptions.from_args(args, tissue=False, measure=False)
        result = evaluate_nuclei(Pipeline(args.model, options), images, pixel_size=options.pixel_size,
                                 glas=args.task == "instance")
        shown = result["overall"]
    if args.json_out:
        with atomic_write(args.json_out) as handle:
            json.dump(result, handle, indent=2)
    print(json.dumps(shown, indent=2))
    return 0
