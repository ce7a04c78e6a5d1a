"""Detector speed on this machine: per-tile latency and MP/s for 512×512 tiles, as ratios measured in one run.

Rows, each on the same tiles, at batch 1 and batch 4:
- the shipped `bccd-frcnn` (its architecture and trained weights, engine `infer` = forward + class-aware NMS);
- Faster R-CNN R50-FPN built by our `build_detector` (weights=None), which does not resize tiles;
- torchvision's stock `fasterrcnn_resnet50_fpn(weights=None)`, which resizes every tile to 800 px first.
Tiles are BCCD images resized to 512×512 when ../shared/data/bccd exists, else synthetic H&E tiles. MP/s is
given per tile pixel and per level-0 pixel: a model running at downsample d covers d² level-0 pixels per tile pixel.

Usage: python benchmarks/detector_speed.py [--threads 2] [--repeat 3] [--device cpu]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision
from cellbridge.device import resolve_device
from cellbridge.engines.registry import make_engine
from cellbridge.models.package import ModelPackage, ModelSpec, load_model
from cellbridge.models.preprocess import to_batch
from cellbridge.networks.detector import build_detector
from timing import timed

TILE = 512
BCCD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bccd" / "JPEGImages"


def tiles(count: int) -> tuple[list[np.ndarray], str]:
    """`count` RGB 512×512 tiles and where they come from."""
    if BCCD.is_dir():
        paths = sorted(BCCD.glob("*.jpg"))[:count]
        return [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (TILE, TILE)) for p in paths], \
            "BCCD images resized to 512x512"
    from cellbridge.synth import SynthConfig, build_scene, render_region

    scene = build_scene(SynthConfig(width=2048, height=2048, tissue_fraction=1.0, seed=9))
    return [render_region(scene, (i % 2) * TILE, (i // 2) * TILE, TILE, TILE) for i in range(count)], \
        "synthetic H&E tiles"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="bccd-frcnn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    ours = load_model(args.model)
    images, source = tiles(4)
    spec = ours.spec
    r50_spec = ModelSpec(name="r50", task="detect", architecture="fasterrcnn_resnet50_fpn", in_channels=3,
                         classes=spec.classes, preprocessing={"mode": "rgb"})
    r50 = make_engine(ModelPackage(r50_spec, Path("."), build_detector(r50_spec).eval()), device)
    stock = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=len(spec.classes) + 1).eval().to(device)
    engines = [(f"{spec.name} ({spec.architecture})", make_engine(ours, device), spec.preprocessing),
               ("fasterrcnn_resnet50_fpn, ours (no resize)", r50, {"mode": "rgb"}),
               ("fasterrcnn_resnet50_fpn, torchvision stock (resizes to 800)", None, {"mode": "rgb"})]
    rows = []
    for name, engine, preprocessing in engines:
        for size in (1, 4):
            batch = to_batch(images[:size], preprocessing).to(device)
            if engine is not None:
                def run(batch: torch.Tensor = batch, engine=engine) -> object:
                    return engine.infer(batch)
            else:
                def run(batch: torch.Tensor = batch) -> object:
                    with torch.inference_mode():
                        return stock(list(batch))
            seconds = timed(run, args.repeat) / size
            rows.append((name, size, seconds))
    params = {name: sum(p.numel() for p in module.parameters()) / 1e6 for name, module in
              [("ours", ours.module), ("r50", r50.module)]}
    print(f"device {device}, torch threads {args.threads}, torch {torch.__version__}, tiles: {source}; "
          f"parameters: {spec.name} {params['ours']:.2f} M, R50-FPN {params['r50']:.2f} M")
    print(f"| model | batch | ms / tile | MP/s (tile pixels) | MP/s (level 0) | × {spec.name} time |")
    print("|---|---|---|---|---|---|")
    base = {size: seconds for name, size, seconds in rows if name == engines[0][0]}
    for name, size, seconds in rows:
        downsample = spec.downsample if name == engines[0][0] else 1.0  # a tile covers (512·d)² level-0 pixels
        mp = TILE * TILE / 1e6 / seconds
        print(f"| {name} | {size} | {seconds * 1000:.0f} | {mp:.2f} | {mp * downsample ** 2:.2f} | "
              f"{seconds / base[size]:.1f} |")


if __name__ == "__main__":
    main()
