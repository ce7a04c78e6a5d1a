"""The region (semantic) and gland (distance) U-Net engines on the CPU: NCHW against channels-last, as ratios
measured in one run.

For each engine, a U-Net of the size `train --task semantic|instance` trains by default (depth 3, width 16, random
weights: speed does not depend on them) runs `Engine.infer` on the same batch of 512² tiles with its weights and
inputs in NCHW order and in NHWC (channels-last, what the engines use on the CPU), timed in interleaved rounds. Also
the largest difference between the two outputs (float16 maps).

Usage: python benchmarks/unet_engines_cpu.py [--tiles 4] [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from timing import timed_together

from cellbridge.engines.instance import DistanceEngine
from cellbridge.engines.semantic import SemanticEngine
from cellbridge.models.package import ModelPackage, ModelSpec
from cellbridge.networks.unet import build_distance_unet, build_semantic_unet

ENGINES = (("regions (unet-semantic)", "unet-semantic", build_semantic_unet, SemanticEngine),
           ("glands (unet-distance)", "unet-distance", build_distance_unet, DistanceEngine))


def engine_in_layout(engine_class: type, spec: ModelSpec, module: torch.nn.Module, channels_last: bool):
    """An engine of `engine_class`, on its own copy of `module`, whose CPU path is NHWC (`channels_last`) or NCHW."""
    module = copy.deepcopy(module).to(memory_format=torch.contiguous_format)

    class Layout(engine_class):  # type: ignore[misc, valid-type]
        channels_last_on_cpu = channels_last

    return Layout(ModelPackage(spec, Path("."), module), torch.device("cpu"), {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = torch.rand(args.tiles, 3, 512, 512)
    print(f"{args.tiles} tiles of 512², {args.threads} threads, median of {args.repeat} interleaved rounds\n")
    print("| engine | NCHW s/tile | channels-last s/tile | × NCHW | max |Δp| |")
    print("|---|---|---|---|---|")
    for label, architecture, build, engine_class in ENGINES:
        spec = ModelSpec(name="bench", task="segment", architecture=architecture, in_channels=3,
                         classes=[{"name": "A", "color": [0, 0, 255]}, {"name": "B", "color": [0, 255, 0]}],
                         params={"depth": 3, "width": 16})
        module = build(spec).eval()
        plain = engine_in_layout(engine_class, spec, module, channels_last=False)
        plain_out = np.stack(plain.infer(batch)).astype(np.float32)
        nhwc = engine_in_layout(engine_class, spec, module, channels_last=True)
        nhwc_out = np.stack(nhwc.infer(batch)).astype(np.float32)

        seconds = timed_together([lambda: plain.infer(batch), lambda: nhwc.infer(batch)], args.repeat)
        per_tile = [s / args.tiles for s in seconds]
        print(f"| {label} | {per_tile[0]:.3f} | {per_tile[1]:.3f} | {per_tile[0] / per_tile[1]:.2f} | "
              f"{np.abs(plain_out - nhwc_out).max():.1e} |")


if __name__ == "__main__":
    main()
