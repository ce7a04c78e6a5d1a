"""Nuclei engine speed on this machine, as ratios measured in one run.

Rows: per-512²-tile latency and MP/s of
- `nuclei-he` forward pass only, and forward + post-processing (peaks, watershed, polygons, measurements);
- torchvision Faster R-CNN R50-FPN and Mask R-CNN R50-FPN (weights=None) forwards on the same tiles, for reference;
- the end-to-end pipeline (`Pipeline.run` on a synthetic slide: reading, tissue, merge, GeoJSON) against the
  pure forward time of the same number of tiles (the share of the run that is model compute).

Usage: python benchmarks/nuclei_speed.py [--size 4096] [--threads 2] [--repeat 3] [--device auto]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torchvision
from cellbridge.device import autocast, resolve_device
from cellbridge.io.slides import open_slide
from cellbridge.models.preprocess import to_batch
from cellbridge.pipeline.run import Pipeline, RunOptions
from cellbridge.synth import SynthConfig, generate_slide, render_region
from cellbridge.tiling.plan import Tile
from timing import timed

TILE = 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    pipeline = Pipeline("nuclei-he", RunOptions(device=str(device), batch_size=args.batch))
    engine = pipeline.engine
    config = SynthConfig(width=args.size, height=args.size, tissue_fraction=0.3, seed=9)
    from cellbridge.synth import build_scene
    scene = build_scene(SynthConfig(width=2048, height=2048, tissue_fraction=1.0, seed=9))
    tiles = [render_region(scene, x, y, TILE, TILE) for x, y in [(0, 0), (512, 0), (0, 512), (512, 512)]][:args.batch]
    batch = to_batch(tiles, pipeline.package.spec.preprocessing).to(device)
    tile_info = [Tile(i, 0, i, float(i * TILE), 0.0, TILE, 1.0, (i * TILE, 0, (i + 1) * TILE, TILE))
                 for i in range(len(tiles))]
    rows = []

    def forward():
        with torch.inference_mode(), autocast(device):
            return engine.infer(batch)

    t_forward = timed(forward, args.repeat) / len(tiles)
    raws = forward()

    def post():
        from cellbridge.features.measure import measure_objects
        for raw, rgb, tile in zip(raws, tiles, tile_info):
            objects = engine.postprocessor()(raw, rgb, tile)
            measure_objects(objects, rgb, (tile.x, tile.y), 1.0, 0.5, engine.compartment)

    t_post = timed(post, args.repeat) / len(tiles)
    rcnn = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                               min_size=TILE, max_size=TILE).eval().to(device)
    images = [torch.from_numpy(t).permute(2, 0, 1).float().div(255).to(device) for t in tiles]

    def rcnn_forward():
        with torch.inference_mode(), autocast(device):
            return rcnn(images)

    t_rcnn = timed(rcnn_forward, max(1, args.repeat - 1)) / len(tiles)
    mask_rcnn = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                                  min_size=TILE, max_size=TILE).eval().to(device)

    def mask_rcnn_forward():
        with torch.inference_mode(), autocast(device):
            return mask_rcnn(images)

    t_mask = timed(mask_rcnn_forward, max(1, args.repeat - 1)) / len(tiles)
    mp = TILE * TILE / 1e6
    rows.append(("nuclei-he forward", t_forward, mp / t_forward))
    rows.append(("nuclei-he post-processing (CPU, one thread)", t_post, mp / t_post))
    rows.append(("nuclei-he forward + post-processing", t_forward + t_post, mp / (t_forward + t_post)))
    rows.append(("torchvision Faster R-CNN R50-FPN forward", t_rcnn, mp / t_rcnn))
    rows.append(("torchvision Mask R-CNN R50-FPN forward", t_mask, mp / t_mask))

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "slide.tif"
        generate_slide(path, config)
        with open_slide(path) as slide:
            result = pipeline.run(slide)
        e2e_per_tile = result.seconds / result.tiles
        rows.append((f"end-to-end {args.size}² slide, 30% tissue ({result.tiles} tiles, {result.objects} nuclei)",
                     e2e_per_tile, mp / e2e_per_tile))
    print(f"device: {device}, torch threads: {args.threads}, tile {TILE}², batch {len(tiles)}")
    print(f"{'what':<76} {'s/tile':>8} {'MP/s':>7} {'× forward':>10}")
    for name, seconds, mps in rows:
        print(f"{name:<76} {seconds:8.3f} {mps:7.2f} {seconds / t_forward:10.2f}")
    print("× forward: this row's time per tile over nuclei-he's forward time per tile (end-to-end: the target "
          "is close to 1, i.e. reading, post-processing and merging hidden behind the model)")


if __name__ == "__main__":
    main()
