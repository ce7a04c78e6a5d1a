"""`cellbridge train`: train a model from COCO exports, Pascal VOC or QuPath annotations; export a package."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from cellbridge.cli.argtypes import in_range, source_pixel_size
from cellbridge.networks import TRAINABLE_PARTS

TASKS = ("detect", "nuclei", "semantic", "instance")
TASK_ALIASES = {"keypoints": "nuclei"}   # the nuclei model is a keypoint U-Net; older commands say keypoints
# options a recipe may set, with the value used when neither the command line nor a recipe gives one
DEFAULTS: dict[str, Any] = {
    "task": None, "epochs": 10, "batch_size": 4, "lr": None, "val_split": 0.2, "architecture": None,
    "preprocessing": "rgb", "width": 16, "depth": 3, "crop": 256, "class_weights": "inverse",
    "samples_per_epoch": None, "tile_size": 512, "mpp": None, "single_class": None, "scale_range": "0.8,1.25",
    "stain_jitter": "mild", "init": None, "max_object_size": None, "steps_per_epoch": 0, "seed": 0,
    "downsample": 1.0, "step_size": None, "weight_decay": None, "schedule": None, "distance_map": False,
    "choose_thresholds": False, "trainable": "all", "sigma": 2.0, "ema": 0.0,
    # settings of model.json's training.config that have no option of their own
    "optimizer": None, "momentum": None, "gamma": None, "params": None,
}
NOT_FROM_RECORDED_COMMAND = ("task", "data", "out", "resume", "name", "modality", "recipe", "device", "workers")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser(
        "train", help="train a detector, nuclei, semantic or instance model and export the best epoch as a model "
                      "package",
        description="Train with checkpoints every epoch (--resume continues), validation each epoch, a metrics "
                    "log (metrics.jsonl) and plot (training.png); the best epoch is exported to OUT as a model "
                    "package (model.json + weights.pt) usable with `cellbridge detect/nuclei/segment --model OUT`. "
                    "An estimate of the time left is printed after the first steps and after every epoch. "
                    "--recipe NAME trains as the built-in model NAME was trained (its model.json); options given "
                    "here override the recipe's.")
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `cellbridge train` (also used to read the command recorded in a recipe)."""
    parser.add_argument("--task", choices=[*TASKS, *TASK_ALIASES],
                        help="detect: Faster R-CNN boxes; nuclei (alias keypoints): nuclei U-Net (centres + "
                             "outlines; needs outlined nuclei, not points); semantic: region U-Net (class per "
                             "pixel); instance: glands (U-Net + distance, or Mask R-CNN). Required unless --recipe "
                             "gives it")
    parser.add_argument("--recipe", metavar="MODEL",
                        help="train as this built-in model was trained (e.g. bccd-frcnn, nuclei-he): its task, "
                             "architecture, scale and optimisation settings, read from its model.json")
    parser.add_argument("--data", required=True, nargs="+",
                        help="COCO JSON(s) from `cellbridge export-coco`, or a Pascal VOC folder (detect); "
                        "nuclei also takes DSB-2018-style folders (images/, labels/ instance PNGs)")
    parser.add_argument("--out", required=True, help="output folder: the model package and checkpoints/")
    parser.add_argument("--epochs", type=int, help="epochs (default 10)")
    parser.add_argument("--batch-size", type=int, help="images per step (default 4)")
    parser.add_argument("--lr", type=float, help="learning rate (default: 0.005 SGD for detect and Mask R-CNN, "
                        "0.002 AdamW for the U-Nets)")
    parser.add_argument("--val-split", type=float, help="fraction held out for validation when the "
                        "data has no validation split (default 0.2)")
    parser.add_argument("--architecture", help="detect: fasterrcnn_mobilenet_v3_large_fpn (default), "
                        "fasterrcnn_resnet50_fpn, fasterrcnn_small, …; instance: unet-distance (default), "
                        "maskrcnn_resnet50_fpn, maskrcnn_mobilenet_v3_large_fpn, maskrcnn_small, maskrcnn_tiny")
    parser.add_argument("--preprocessing", choices=["rgb", "gray_unsharp"],
                        help="input: RGB (default), or grayscale + unsharp mask in one channel (stain-independent)")
    parser.add_argument("--width", type=int, help="U-Nets: base width (default 16)")
    parser.add_argument("--depth", type=int, help="U-Nets: depth (default 3)")
    parser.add_argument("--distance-map", action="store_const", const=True,
                        help="nuclei: also learn each nucleus's normalised distance to its border (a third map "
                             "that places one seed per nucleus and the split between touching nuclei)")
    parser.add_argument("--choose-thresholds", action="store_const", const=True,
                        help="nuclei: after training, choose the post-processing thresholds (peak, minimum "
                             "distance, peak prominence, foreground) that score best on the validation images, "
                             "and write them into model.json")
    parser.add_argument("--crop", type=int, help="U-Nets, Mask R-CNN: random training crop (default 256)")
    parser.add_argument("--class-weights",
                        help="semantic: inverse (pixel frequency, default), none, or comma-separated weights "
                             "(background first)")
    parser.add_argument("--samples-per-epoch", type=int, help="semantic/instance: random crops per epoch, drawn "
                        "with replacement (default: each image once)")
    parser.add_argument("--no-augment", action="store_true", help="semantic/instance: no flips, scaling or colour "
                        "jitter")
    parser.add_argument("--tile-size", type=int, help="semantic/instance: tile size written to "
                        "model.json (default 512)")
    parser.add_argument("--mpp", type=float, help="pixel size (µm) of the training images, recorded in "
                        "model.json so inference rescales slides to it (default: none; the model then runs "
                        "every slide at its training downsample, whatever the slide's pixel size). Nuclei with "
                        "--init: the model keeps the init model's pixel size and the images are rescaled to it "
                        "(from --mpp, or from the pixel size estimated from their nuclei)")
    parser.add_argument("--source-mpp", type=source_pixel_size, action="append", metavar="SOURCE=UM",
                        help="nuclei: pixel size (µm) of the images of one --data source that carry none, e.g. a "
                             "points folder of tiles cut at 0.5 µm/px (repeat for several sources). Without it they "
                             "are rescaled by the pixel size estimated from their nuclei, image by image")
    parser.add_argument("--modality", help="nuclei: from DSB folders, only images whose manifest.csv modality "
                        "contains this text (e.g. histology)")
    parser.add_argument("--single-class", metavar="NAME", help="nuclei: relabel every nucleus as NAME (to mix "
                        "class-less DSB nuclei with classed data; gives a one-class model)")
    parser.add_argument("--scale-range", help="nuclei: augmentation rescale factors "
                        "LOW,HIGH (default 0.8,1.25; 0.5,2 for scale robustness)")
    parser.add_argument("--stain-jitter", choices=["mild", "strong"],
                        help="nuclei: colour / HED stain augmentation strength (default mild)")
    parser.add_argument("--init", help="nuclei: start from this nuclei model's weights where shapes match "
                        "(e.g. nuclei-he; the head is new when the class count differs)")
    parser.add_argument("--trainable", choices=TRAINABLE_PARTS,
                        help="nuclei, with --init: the part of the U-Net that learns (default all); the rest keeps "
                             "the init model's weights and batch-norm statistics. head (the output layer only) "
                             "suits a few images of tissue like the model's own")
    parser.add_argument("--sigma", type=in_range(0.5, 8.0),
                        help="nuclei: width σ, in model pixels, of the Gaussian each nucleus centre is taught as "
                             "(default 2; smaller keeps the peaks of crowded small nuclei apart)")
    parser.add_argument("--max-object-size", type=float, help="nuclei: largest nucleus diameter in model pixels, "
                        "recorded in model.json postprocessing (sets the tile overlap)")
    parser.add_argument("--split", default="train", choices=["train", "test", "all"],
                        help="nuclei, point folders (images/ + points/): the fixed split to train on (test = "
                             "numeric ids divisible by 5; default train, so the test images stay unseen)")
    parser.add_argument("--schedule", choices=["constant", "cosine"],
                        help="nuclei: learning rate constant, or cosine decay to 1%% over the epochs "
                             "(default cosine)")
    parser.add_argument("--ema", type=in_range(0.0, 0.9999), metavar="DECAY",
                        help="validate and export an exponential moving average of the weights, updated after every "
                             "step with this decay (e.g. 0.995: about the last 200 steps), instead of the weights as "
                             "trained; it evens out the step-to-step noise of small batches (default 0: off)")
    parser.add_argument("--name", help="model name in model.json (default: the output folder's name)")
    parser.add_argument("--steps-per-epoch", type=int, help="cap on steps per epoch (default 0: all data)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--downsample", type=float, help="detect: train (and later run) at this "
                        "downsample of the images (default 1)")
    parser.add_argument("--step-size", type=int, help="detect: divide the learning rate by 10 every this many "
                        "epochs (default 3)")
    parser.add_argument("--weight-decay", type=float, help="detect: SGD weight decay (default 5e-4)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")


def recipe_options(name: str) -> dict[str, Any]:
    """The training options of model `name` (a built-in, or any package folder), from its model.json: the model's
    architecture, parameters, preprocessing and scale, `training.config` (epochs, batch size, optimiser and
    schedule), `training.augmentation` and `training.init`, and, when the recorded `training.command` is a
    `cellbridge train` command, every option it gives (crop, validation split, …) except the data, the output and
    the device."""
    from cellbridge.errors import CellBridgeError
    from cellbridge.models.package import read_spec, resolve_model_dir

    spec = read_spec(resolve_model_dir(name))
    training = spec.training or {}
    config = training.get("config")
    if not isinstance(config, dict):
        raise CellBridgeError(f"model {name!r} records no training settings (training.config in its model.json); "
                              "it has no recipe")
    options: dict[str, Any] = {"task": spec.task, "preprocessing": spec.preprocessing.get("mode", "rgb"),
                               "mpp": spec.mpp}
    if spec.task in ("detect", "instance"):
        options["architecture"] = spec.architecture
    if spec.task == "detect":
        options.update(params=dict(spec.params), downsample=spec.downsample)
    elif "width" in spec.params:
        options.update(width=spec.params["width"], depth=spec.params.get("depth", DEFAULTS["depth"]))
    if spec.params.get("distance_map"):
        options["distance_map"] = True
    if spec.task in ("semantic", "instance"):
        options["tile_size"] = spec.tile_size
    if spec.postprocessing.get("max_object_size") and spec.task == "nuclei":
        options["max_object_size"] = spec.postprocessing["max_object_size"]
    for option, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"), ("optimizer", "optimizer"),
                        ("weight_decay", "weight_decay"), ("step_size", "step_size"), ("momentum", "momentum"),
                        ("gamma", "gamma"), ("seed", "seed"), ("steps_per_epoch", "max_steps_per_epoch"),
                        ("ema", "ema")):
        if config.get(key) is not None:
            options[option] = config[key]
    if spec.task == "nuclei":   # the loop's "step" schedule with the recorded step size (0: constant)
        options["schedule"] = "cosine" if config.get("schedule") == "cosine" else "constant"
    augmentation = training.get("augmentation") or {}
    if augmentation.get("scale"):
        options["scale_range"] = ",".join(str(v) for v in augmentation["scale"])
    if augmentation.get("stain"):
        options["stain_jitter"] = augmentation["stain"]
    if training.get("init"):
        options["init"] = training["init"]
    if spec.task == "nuclei" and training.get("sigma"):
        options["sigma"] = training["sigma"]
    options.update(_recorded_command_options(str(training.get("command") or "")))
    return options


def _recorded_command_options(command: str) -> dict[str, Any]:
    """The options a recorded `cellbridge train …` command gives explicitly (none for any other command)."""
    words = shlex.split(command, comments=True) if command.startswith("cellbridge train ") else []
    if not words:
        return {}
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_arguments(parser)
    try:
        recorded = parser.parse_args(words[2:])
    except (argparse.ArgumentError, SystemExit):
        return {}
    return {k: v for k, v in vars(recorded).items()
            if k in DEFAULTS and k not in NOT_FROM_RECORDED_COMMAND and v is not None}


def resolve_options(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options not given on the command line from the recipe, then from `DEFAULTS`; check the task."""
    from cellbridge.errors import CellBridgeError

    recipe = recipe_options(args.recipe) if args.recipe else {}
    given_task = TASK_ALIASES.get(args.task, args.task)
    if given_task and recipe.get("task") and given_task != recipe["task"]:
        raise CellBridgeError(f"--task {args.task} does not match recipe {args.recipe!r}, a {recipe['task']} model")
    for option, default in DEFAULTS.items():
        if getattr(args, option, None) is None:
            setattr(args, option, recipe.get(option, default))
    args.task = TASK_ALIASES.get(args.task, args.task)
    if args.task is None:
        raise CellBridgeError("--task is required (detect, nuclei, semantic or instance), or --recipe MODEL")
    return args


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

    from cellbridge.train.loop import fit

    args = resolve_options(args)
    _check_paths(args)
    name = args.name or Path(args.out).name
    if args.trainable != "all" and args.task != "nuclei":
        from cellbridge.errors import CellBridgeError
        raise CellBridgeError(f"--trainable is for nuclei models (--task nuclei), not {args.task}")
    if args.task == "nuclei":
        from cellbridge.train.keypoints import nuclei_task

        task = nuclei_task([*args.data], val_split=args.val_split, preprocessing=args.preprocessing,
                           params={"depth": args.depth, "width": args.width,
                                   **({"distance_map": True} if args.distance_map else {})},
                           batch_size=args.batch_size, sigma=args.sigma,
                           crop=args.crop, seed=args.seed, workers=args.workers, name=name, mpp=args.mpp,
                           modality=args.modality, single_class=args.single_class,
                           scale=_pair(args.scale_range, "--scale-range"), stain=args.stain_jitter, init=args.init,
                           postprocessing={"max_object_size": args.max_object_size} if args.max_object_size else None,
                           split=args.split, trainable=args.trainable, source_mpp=dict(args.source_mpp or ()))
        config = _config(args, lr=0.002, optimizer="adamw", weight_decay=1e-4, step_size=0,
                         schedule="cosine" if (args.schedule or "cosine") == "cosine" else "step")
    elif args.task in ("semantic", "instance"):
        task = _segmentation_task(args, name)
        unet = args.task == "semantic" or task.architecture == "unet-distance"
        config = _config(args, lr=0.002 if unet else 0.005, optimizer="adamw" if unet else "sgd",
                         weight_decay=1e-4 if unet else 5e-4, step_size=0 if unet else 3)
    else:
        from cellbridge.train.detect import detection_task

        if len(args.data) != 1:
            from cellbridge.errors import CellBridgeError
            raise CellBridgeError("detect training takes one --data (a COCO JSON or a VOC folder)")
        kwargs = {"architecture": args.architecture} if args.architecture else {}
        task = detection_task(args.data[0], val_split=args.val_split, preprocessing=args.preprocessing,
                              batch_size=args.batch_size, seed=args.seed, workers=args.workers,
                              downsample=args.downsample, name=name, params=args.params, **kwargs)
        config = _config(args, lr=0.005, optimizer="sgd", weight_decay=5e-4, step_size=3)
    command = "cellbridge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = fit(task, config, args.out, resume=args.resume, progress=True, command=command)
    if args.task == "nuclei" and args.choose_thresholds:
        from cellbridge.train.keypoints import choose_postprocessing

        chosen = choose_postprocessing(task, result.out_dir)
        print(f"cellbridge train: thresholds chosen on {chosen['on']}: {chosen['chosen']} (validation score "
              f"{chosen['score_before']} with the previous ones, {chosen['score_after']} now)", file=sys.stderr)
    print(json.dumps({"model": str(result.out_dir), "best_epoch": result.best_epoch,
                      "best_metrics": result.best_metrics, "epochs_run": result.epochs_run,
                      "seconds": round(result.seconds, 1), "device": result.device}, indent=2))
    return 0


def _config(args: argparse.Namespace, schedule: str = "step", **task_defaults: Any):
    """The optimisation settings: the options (or the recipe's), else the task's defaults; `schedule`: the loop's
    learning-rate schedule ("step", or "cosine")."""
    from cellbridge.train.loop import TrainConfig

    chosen = {key: getattr(args, key) if getattr(args, key) is not None else default
              for key, default in task_defaults.items()}
    extra = {key: getattr(args, key) for key in ("momentum", "gamma") if getattr(args, key) is not None}
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, device=args.device,
                       max_steps_per_epoch=args.steps_per_epoch, schedule=schedule, ema=args.ema, **chosen, **extra)


def _check_paths(args: argparse.Namespace) -> None:
    """Before any training: --out must be a folder (or not exist yet), and every image a COCO file names must
    exist and look like an image (a wrong path otherwise fails minutes later, in the first epoch)."""
    from pathlib import Path

    import cv2

    from cellbridge.datasets.coco import read_coco
    from cellbridge.errors import CellBridgeError

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CellBridgeError(f"{out}: is a file; --out is the folder for the model package and checkpoints")
    for data in args.data:
        path = Path(data)
        if not path.exists():
            raise CellBridgeError(f"{path}: no such file or folder")
        if path.is_dir() or path.suffix.lower() != ".json":
            continue
        for index, image in enumerate(read_coco(path).images):
            if not image.path.is_file():
                raise CellBridgeError(f"{path}: image {index} ({image.path}) does not exist")
            if not cv2.haveImageReader(str(image.path)):
                raise CellBridgeError(f"{path}: image {index} ({image.path}) is not an image file OpenCV can read")


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
