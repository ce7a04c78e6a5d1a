"""`cellbridge train`: train a model from COCO exports, Pascal VOC or QuPath annotations; export a package."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

TASKS = ("detect", "keypoints")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser(
        "train", help="train a detector or a nuclei model and export the best epoch as a model package",
        description="Train with checkpoints every epoch (--resume continues), validation each epoch, a metrics "
                    "log (metrics.jsonl) and plot (training.png); the best epoch is exported to OUT as a model "
                    "package (model.json + weights.pt) usable with `cellbridge detect/nuclei --model OUT`.")
    parser.add_argument("--task", required=True, choices=TASKS,
                        help="detect: Faster R-CNN boxes; keypoints: nuclei U-Net (centres + outlines)")
    parser.add_argument("--data", required=True, nargs="+",
                        help="COCO JSON(s) from `cellbridge export-coco`, or a Pascal VOC folder (detect)")
    parser.add_argument("--out", required=True, help="output folder: the model package and checkpoints/")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per step (default 4)")
    parser.add_argument("--lr", type=float, help="learning rate (default: 0.005 SGD for detect, 0.002 AdamW "
                        "for keypoints)")
    parser.add_argument("--val-split", type=float, default=0.2, help="fraction held out for validation when the "
                        "data has no validation split (default 0.2)")
    parser.add_argument("--architecture", help="detect: fasterrcnn_mobilenet_v3_large_fpn (default), "
                        "fasterrcnn_resnet50_fpn, …")
    parser.add_argument("--preprocessing", default="rgb", choices=["rgb", "gray_unsharp"],
                        help="input: RGB, or grayscale + unsharp mask in one channel (seed 001)")
    parser.add_argument("--width", type=int, default=16, help="keypoints: U-Net base width (default 16)")
    parser.add_argument("--depth", type=int, default=3, help="keypoints: U-Net depth (default 3)")
    parser.add_argument("--crop", type=int, default=256, help="keypoints: random training crop (default 256)")
    parser.add_argument("--mpp", type=float, help="pixel size (µm) of the training images, recorded in "
                        "model.json so inference rescales slides to it")
    parser.add_argument("--name", help="model name in model.json (default: the output folder's name)")
    parser.add_argument("--steps-per-epoch", type=int, default=0, help="cap on steps per epoch (0: all data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the task, train, print a JSON summary."""
    from pathlib import Path

    from cellbridge.train.loop import TrainConfig, fit

    name = args.name or Path(args.out).name
    if args.task == "keypoints":
        from cellbridge.train.keypoints import nuclei_task

        task = nuclei_task([*args.data], val_split=args.val_split, preprocessing=args.preprocessing,
                           params={"depth": args.depth, "width": args.width}, batch_size=args.batch_size,
                           crop=args.crop, seed=args.seed, workers=args.workers, name=name, mpp=args.mpp)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or 0.002,
                             optimizer="adamw", weight_decay=1e-4, step_size=0, seed=args.seed, device=args.device,
                             max_steps_per_epoch=args.steps_per_epoch)
    else:
        from cellbridge.train.detect import detection_task

        if len(args.data) != 1:
            from cellbridge.errors import CellBridgeError
            raise CellBridgeError("detect training takes one --data (a COCO JSON or a VOC folder)")
        kwargs = {"architecture": args.architecture} if args.architecture else {}
        task = detection_task(args.data[0], val_split=args.val_split, preprocessing=args.preprocessing,
                              batch_size=args.batch_size, seed=args.seed, workers=args.workers, **kwargs)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or 0.005, seed=args.seed,
                             device=args.device, max_steps_per_epoch=args.steps_per_epoch)
    command = "cellbridge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = fit(task, config, args.out, resume=args.resume, progress=True, command=command)
    print(json.dumps({"model": str(result.out_dir), "best_epoch": result.best_epoch,
                      "best_metrics": result.best_metrics, "epochs_run": result.epochs_run,
                      "seconds": round(result.seconds, 1), "device": result.device}, indent=2))
    return 0
