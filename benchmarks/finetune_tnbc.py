"""Fine-tuning a nucleus model on a lab's own few images, shown on TNBC: train on 5 images, score the other 5.

    .venv/bin/python benchmarks/finetune_tnbc.py [--model nuclei-brightfield] [--trainable all|decoder|head]
                                               [--fold 1|2] [--out /tmp/tnbc-finetune]

Prints one table (F1 at IoU 0.5, precision, recall, mean matched IoU, PQ on the 5 held-out images) before and after
fine-tuning, the training time and the exact command. The 5 training images are the first five ids in sorted order
(fold 1) or the last five (fold 2), scored on the other five; they are linked into a folder of their own, as a
lab's folder of annotated images would be. Needs
../shared/data/tnbc (real 40x H&E, CC BY 4.0); nothing is copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cellbridge.networks import TRAINABLE_PARTS

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tnbc"
RECIPE = ["--epochs", "40", "--batch-size", "2", "--crop", "192", "--lr", "0.0005",
          "--val-split", "0.2", "--scale-range", "0.8,1.25", "--stain-jitter", "strong", "--schedule", "cosine"]


def cellbridge(*args: str) -> str:
    """Run the CLI, return its standard output (fail loudly with its error)."""
    done = subprocess.run([sys.executable, "-m", "cellbridge", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cellbridge {' '.join(args[:2])} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def score(model: str, ids: list[str]) -> dict:
    """Overall nuclei scores of `model` on the TNBC images `ids` (pixel size estimated, as with no flags)."""
    return json.loads(cellbridge("evaluate", "--task", "nuclei", "--model", model, "--data", str(DATA),
                                 "--only", ",".join(ids), "--pixel-size", "estimate"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nuclei-brightfield")
    parser.add_argument("--trainable", choices=TRAINABLE_PARTS, default="all",
                        help="the part of the U-Net that learns (train --trainable)")
    parser.add_argument("--fold", type=int, choices=[1, 2], default=1,
                        help="1: train on the first five images, score the last five; 2: the other way round")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="tnbc-finetune-")))
    args = parser.parse_args()
    if not (DATA / "images").is_dir():
        raise SystemExit(f"{DATA}: not found (needs ../shared/data/tnbc)")
    ids = sorted(p.stem for p in (DATA / "images").glob("*.png"))
    train_ids, test_ids = (ids[:5], ids[5:]) if args.fold == 1 else (ids[5:], ids[:5])
    folder = args.out / "train-images"
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for name in train_ids:
            link = folder / sub / f"{name}.png"
            if not link.exists():
                link.symlink_to((DATA / sub / f"{name}.png").resolve())
    before = score(args.model, test_ids)
    model_dir = args.out / "model"
    command = ["train", "--task", "nuclei", "--data", str(folder), "--init", args.model, "--out", str(model_dir),
               *RECIPE, "--trainable", args.trainable]
    started = time.perf_counter()
    cellbridge(*command)
    minutes = (time.perf_counter() - started) / 60
    after = score(str(model_dir), test_ids)
    keys = ["f1_iou50", "precision", "recall", "mean_matched_iou", "pq"]
    print(f"train: {', '.join(train_ids)}; score: {', '.join(test_ids)}")
    print("| model | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, result in ((args.model, before), (f"{args.model} fine-tuned", after)):
        print(f"| {name} | " + " | ".join(f"{result[k]:.3f}" for k in keys) + " |")
    print(f"training: {minutes:.1f} min; command: cellbridge {' '.join(command)}")


if __name__ == "__main__":
    main()
