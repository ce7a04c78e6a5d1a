"""`cellbridge train`: train a model from COCO exports, Pascal VOC or QuPath annotations; export a package."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

TASKS = ("detect", "keypoints", "semantic", "instance")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser(
        "train", help="train a detector, nuclei, semantic or instance model and export the best epoch as a model "
                      "package",
        description="Train with checkpoints every epoch (--resume continues), validation each epoch, a metrics "
                    "log (metrics.jsonl) and plot (training.png); the best epoch is exported to OUT as a model "
                    "package (model.json + weights.pt) usable with `cellbridge detect/nuclei/segment --model OUT`.")
    parser.add_argument("--task", required=True, choices=TASKS,
                        help="detect: Faster R-CNN boxes; keypoints: nuclei U-Net (centres + outlines); semantic: "
                             "region U-Net (class per pixel); instance: glands (U-Net + distance, or Mask R-CNN)")
    parser.add_argument("--data", required=True, nargs="+",
                        help="COCO JSON(s) from `cellbridge export-coco`, or a Pascal VOC folder (detect); "
                        "keypoints also takes DSB-2018-style folders (images/, labels/ instance PNGs)")
    parser.add_argument("--out", required=True, help="output folder: the model package and checkpoints/")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per step (default 4)")
    parser.add_argument("--lr", type=float, help="learning rate (default: 0.005 SGD for detect and Mask R-CNN, "
                        "0.002 AdamW for the U-Nets)")
    parser.add_argument("--val-split", type=float, default=0.2, help="fraction held out for validation when the "
                        "data has no validation split (default 0.2)")
    parser.add_argument("--architecture", help="detect: fasterrcnn_mobilenet_v3_large_fpn (default), "
                        "fasterrcnn_resnet50_fpn, …; instance: unet-distance (default), maskrcnn_resnet50_fpn, "
                        "maskrcnn_mobilenet_v3_large_fpn, maskrcnn_small, maskrcnn_tiny")
    parser.add_argument("--preprocessing", default="rgb", choices=["rgb", "gray_unsharp"],
                        help="input: RGB, or grayscale + unsharp mask in one channel (seed 001)")
    parser.add_argument("--width", type=int, default=16, help="U-Nets: base width (default 16)")
    parser.add_argument("--depth", type=int, default=3, help="U-Nets: depth (default 3)")
    parser.add_argument("--crop", type=int, default=256, help="U-Nets, Mask R-CNN: random training crop (default 256)")
    parser.add_argument("--class-weights", default="inverse",
                        help="semantic: inverse (pixel frequency, default), none, or comma-separated weights "
                             "(background first)")
    parser.add_argument("--samples-per-epoch", type=int, help="semantic/instance: random crops per epoch, drawn "
                        "with replacement (default: each image once)")
    parser.add_argument("--no-augment", action="store_true", help="semantic/instance: no flips, scaling or colour "
                        "jitter")
    parser.add_argument("--tile-size", type=int, default=512, help="semantic/instance: tile size written to "
                        "model.json (default 512)")
    parser.add_argument("--mpp", type=float, help="pixel size (µm) of the training images, recorded in "
                        "model.json so inference rescales slides to it")
    parser.add_argument("--modality", help="keypoints: from DSB folders, only images whose manifest.csv modality "
                        "contains this text (e.g. histology)")
    parser.add_argument("--single-class", metavar="NAME", help="keypoints: relabel every nucleus as NAME (to mix "
                        "class-less DSB nuclei with classed data; gives a one-class model)")
    parser.add_argument("--scale-range", default="0.8,1.25", help="keypoints: augmentation rescale factors "
                        "LOW,HIGH (default 0.8,1.25; 0.5,2 for scale robustness)")
    parser.add_argument("--stain-jitter", default="mild", choices=["mild", "strong"],
                        help="keypoints: colour / HED stain augmentation strength (default mild)")
    parser.add_argument("--init", help="keypoints: start from this nuclei model's weights where shapes match "
                        "(e.g. nuclei-he; the head is new when the class count differs)")
    parser.add_argument("--max-object-size", type=float, help="keypoints: largest nucleus diameter in model pixels, "
                        "recorded in model.json postprocessing (sets the tile overlap)")
    parser.add_argument("--split", default="train", choices=["train", "test", "all"],
                        help="keypoints, point folders (images/ + points/): the fixed split to train on (test = "
                             "numeric ids divisible by 5; default train, so the test images stay unseen)")
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="cosine",
                        help="keypoints: learning rate constant, or cosine decay to 1%% over the epochs "
                             "(default cosine)")
    parser.add_argument("--name", help="model name in model.json (default: the output folder's name)")
    parser.add_argument("--steps-per-epoch", type=int, default=0, help="cap on steps per epoch (0: all data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--downsample", type=float, default=1.0, help="detect: train (and later run) at this "
                        "downsample of the images (default 1)")
    parser.add_argument("--step-size", type=int, help="detect: StepLR period in epochs (default 3, seed 001)")
    parser.add_argument("--weight-decay", type=float, help="detect: SGD weight decay (default 5e-4)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.set_defaults(func=run)


def _pair(text: str, option: str) -> tuple[float, float]:
    """'LOW,HIGH' → (low, high), with an error naming the option."""
    from cellbridge.errors import CellBridgeError

    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise CellBridgeError(f"{option} must be LOW,HIGH (two numbers), got {text!r}") from None
    if not 0 < low <= high:
        raise CellBridgeError(f"{option} must satisfy 0 < LOW <= HIGH, got {text!r}")
    return low, high


def run(args: argparse.Namespace) -> int:
    """Build the task, train, print a JSON summary."""
    from pathlib import Path

    from cellbridge.train.loop import TrainConfig, fit

    name = args.name or Path(args.out).name
    if args.task == "keypoints":
        from cellbridge.train.keypoints import nuclei_task

        task = nuclei_task([*args.data], val_split=args.val_split, preprocessing=args.preprocessing,
                           params={"depth": args.depth, "width": args.width}, batch_size=args.batch_size,
                           crop=args.crop, seed=args.seed, workers=args.workers, name=name, mpp=args.mpp,
                           modality=args.modality, single_class=args.single_class,
                           scale=_pair(args.scale_range, "--scale-range"), stain=args.stain_jitter, init=args.init,
                           postprocessing={"max_object_size": args.max_object_size} if args.max_object_size else None,
                           split=args.split)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or 0.002,
                             optimizer="adamw", weight_decay=1e-4, step_size=0, seed=args.seed, device=args.device,
                             max_steps_per_epoch=args.steps_per_epoch,
                             schedule="cosine" if args.schedule == "cosine" else "step")
    elif args.task in ("semantic", "instance"):
        task = _segmentation_task(args, name)
        unet = args.task == "semantic" or task.architecture == "unet-distance"
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr or (0.002 if unet else 0.005), optimizer="adamw" if unet else "sgd",
                             weight_decay=1e-4 if unet else 5e-4, step_size=0 if unet else 3, seed=args.seed,
                             device=args.device, max_steps_per_epoch=args.steps_per_epoch)
    else:
        from cellbridge.train.detect import detection_task

        if len(args.data) != 1:
            from cellbridge.errors import CellBridgeError
            raise CellBridgeError("detect training takes one --data (a COCO JSON or a VOC folder)")
        kwargs = {"architecture": args.architecture} if args.architecture else {}
        task = detection_task(args.data[0], val_split=args.val_split, preprocessing=args.preprocessing,
                              batch_size=args.batch_size, seed=args.seed, workers=args.workers,
                              downsample=args.downsample, name=name, **kwargs)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or 0.005, seed=args.seed,
                             device=args.device, max_steps_per_epoch=args.steps_per_epoch,
                             step_size=3 if args.step_size is None else args.step_size,
                             weight_decay=5e-4 if args.weight_decay is None else args.weight_decay)
    command = "cellbridge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = fit(task, config, args.out, resume=args.resume, progress=True, command=command)
    print(json.dumps({"model": str(result.out_dir), "best_epoch": result.best_epoch,
                      "best_metrics": result.best_metrics, "epochs_run": result.epochs_run,
                      "seconds": round(result.seconds, 1), "device": result.device}, indent=2))
    return 0


def _segmentation_task(args: argparse.Namespace, name: str):
    """The semantic or instance training task the arguments describe."""
    from cellbridge.errors import CellBridgeError

    common = {"val_split": args.val_split, "preprocessing": args.preprocessing, "batch_size": args.batch_size,
              "crop": args.crop, "samples_per_epoch": args.samples_per_epoch, "seed": args.seed,
              "workers": args.workers, "augment": not args.no_augment, "name": name, "mpp": args.mpp,
              "tile_size": args.tile_size}
    if args.task == "semantic":
        from cellbridge.train.semantic import semantic_task

        weights = args.class_weights
        if weights not in ("inverse", "none"):
            try:
                weights = [float(v) for v in weights.split(",")]
            except ValueError:
                raise CellBridgeError(f"--class-weights must be inverse, none or comma-separated numbers, got "
                                      f"{args.class_weights!r}") from None
        return semantic_task([*args.data], params={"depth": args.depth, "width": args.width},
                             class_weights=weights, **common)
    from cellbridge.train.instance import instance_task

    architecture = args.architecture or "unet-distance"
    params = {"depth": args.depth, "width": args.width} if architecture == "unet-distance" else None
    return instance_task([*args.data], architecture=architecture, params=params, **common)
