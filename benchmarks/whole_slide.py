"""Whole-slide speed and memory of `nuclei-he`, as ratios measured in one run on this machine.

Rows:
1. end-to-end `Pipeline.run` on a synthetic slide vs the pure model forward on the same number of tiles
   (target ≥ 0.9: reading, post-processing and merging hidden behind compute);
2. a 20%-tissue slide vs a full-tissue slide of the same size (target ≤ 0.3× the time);
3. peak RSS of a run on growing slides (target < 2 GiB and flat as the slide grows), each in its own process;
4. post-processing (watershed, polygons, measurements) on 1 vs 2 worker threads.

Usage: python benchmarks/whole_slide.py [--size 8192] [--rss-sizes 10000,20000,40000] [--threads 2]
Slides are generated into a temporary folder (or --work DIR to keep them between runs).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from cellbridge.engines.device import autocast
from cellbridge.engines.preprocess import to_batch
from cellbridge.io.slides import open_slide
from cellbridge.pipeline.run import Pipeline, RunOptions
from cellbridge.synth import SynthConfig, generate_slide, render_region

RSS_CHILD = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from cellbridge.io.slides import open_slide
from cellbridge.pipeline.run import Pipeline, RunOptions
pipeline = Pipeline("nuclei-he", RunOptions(device="cpu", batch_size=4))
with open_slide(sys.argv[1]) as slide:
    start = time.perf_counter()
    result = pipeline.run(slide, sys.argv[2])
# VmHWM, not ru_maxrss: a forked child inherits its parent's ru_maxrss, while exec starts a new VmHWM
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"tiles": result.tiles, "objects": result.objects, "seconds": time.perf_counter() - start,
                  "peak_rss_mib": peak / 1024}))
"""


def slide(work: Path, size: int, tissue: float, seed: int = 5) -> Path:
    path = work / f"synth-{size}-{round(tissue * 100)}.tif"
    if not path.exists():
        generate_slide(path, SynthConfig(width=size, height=size, tissue_fraction=tissue, seed=seed))
    return path


def run(pipeline: Pipeline, path: Path) -> dict:
    with open_slide(path) as s:
        start = time.perf_counter()
        result = pipeline.run(s)
        return {"seconds": time.perf_counter() - start, "tiles": result.tiles, "objects": result.objects}


def forward_time(pipeline: Pipeline, tiles: int) -> float:
    """Seconds of the bare model forward over `tiles` tiles in the pipeline's batch size."""
    scene_tiles = [render_region(pipeline_scene(), 512 * i, 0, 512, 512) for i in range(pipeline.batcher.batch_size)]
    batch = to_batch(scene_tiles, pipeline.package.spec.preprocessing).to(pipeline.device)
    with torch.inference_mode(), autocast(pipeline.device):
        pipeline.engine.infer(batch)  # warm-up
        start = time.perf_counter()
        for _ in range(0, tiles, len(scene_tiles)):
            pipeline.engine.infer(batch)
    return time.perf_counter() - start


def pipeline_scene():
    from cellbridge.synth import build_scene
    return build_scene(SynthConfig(width=4096, height=512, tissue_fraction=1.0, seed=2))


def postprocess_speedup(tiles: int = 8) -> tuple[float, float]:
    """Seconds to post-process `tiles` tiles with 1 and with 2 worker threads."""
    from concurrent.futures import ThreadPoolExecutor

    from cellbridge.engines.measure import measure_objects
    from cellbridge.tiling.plan import Tile

    pipeline = Pipeline("nuclei-he", RunOptions(device="cpu", batch_size=tiles))
    rgbs = [render_region(pipeline_scene(), 512 * (i % 8), 0, 512, 512) for i in range(tiles)]
    raws = pipeline.engine.infer(to_batch(rgbs, pipeline.package.spec.preprocessing))
    infos = [Tile(i, 0, i, 512.0 * i, 0.0, 512, 1.0, (512 * i, 0, 512 * (i + 1), 512)) for i in range(tiles)]

    def post(i: int) -> None:
        objects = pipeline.engine.postprocess(raws[i], rgbs[i], infos[i])
        measure_objects(objects, rgbs[i], (infos[i].x, 0.0), 1.0, 0.5, "Nucleus")

    times = []
    for workers in (1, 2):
        with ThreadPoolExecutor(workers) as pool:
            start = time.perf_counter()
            list(pool.map(post, range(tiles)))
            times.append(time.perf_counter() - start)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--rss-sizes", default="10000,20000,40000")
    parser.add_argument("--rss-tissue", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", help="folder for the generated slides (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        pipeline = Pipeline("nuclei-he", RunOptions(device="auto", batch_size=4))
        sparse, full = slide(work, args.size, 0.2), slide(work, args.size, 1.0)
        r_sparse, r_full = run(pipeline, sparse), run(pipeline, full)
        fwd = forward_time(pipeline, r_full["tiles"])
        rows.append((f"end-to-end vs forward only, {args.size}² full tissue ({r_full['tiles']} tiles, "
                     f"{r_full['objects']} nuclei)", f"{r_full['seconds']:.1f} s vs {fwd:.1f} s",
                     f"{fwd / r_full['seconds']:.2f} (target ≥ 0.9)"))
        rows.append((f"20% tissue vs full tissue, {args.size}² ({r_sparse['tiles']} vs {r_full['tiles']} tiles)",
                     f"{r_sparse['seconds']:.1f} s vs {r_full['seconds']:.1f} s",
                     f"{r_sparse['seconds'] / r_full['seconds']:.2f} (target ≤ 0.3)"))
        one, two = postprocess_speedup()
        rows.append(("post-processing 8 tiles, 1 vs 2 threads", f"{one:.2f} s vs {two:.2f} s",
                     f"{one / two:.2f}× speed-up"))
        rss = []
        for size in [int(s) for s in args.rss_sizes.split(",") if s]:
            path = slide(work, size, args.rss_tissue)
            done = subprocess.run([sys.executable, "-c", RSS_CHILD, str(path), str(work / f"out-{size}.geojson"),
                                   str(args.threads)], capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rss.append((size, result))
            rows.append((f"peak RSS, {size}² slide, {args.rss_tissue:.0%} tissue ({result['tiles']} tiles, "
                         f"{result['objects']} nuclei)", f"{result['peak_rss_mib']:.0f} MiB",
                         f"{result['peak_rss_mib'] / rss[0][1]['peak_rss_mib']:.2f}× the smallest"))
    print(f"device: {pipeline.device}, torch threads: {args.threads}, "
          f"CPU cores: {len(__import__('os').sched_getaffinity(0))}, peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'values':<22}  ratio")
    for name, values, ratio in rows:
        print(f"{name:<{width}}  {values:<22}  {ratio}")


if __name__ == "__main__":
    main()
