"""Whole-slide speed and memory of `nuclei-he`, as ratios measured in one run on this machine.

Rows:
1. end-to-end `Pipeline.run` on a synthetic slide vs the pure model forward on the same number of tiles
   (target ≥ 0.9: reading, post-processing and merging hidden behind compute);
2. a 20%-tissue slide vs a full-tissue slide of the same size (target ≤ 0.3× the time);
3. peak RSS of a run on growing slides (target < 2 GiB and flat as the slide grows), each in its own process;
   (RSS of the main process; "all processes": the PSS of it and its post-processing workers together);
4. post-processing (watershed, polygons, measurements) on 1 thread vs 2 threads vs 2 worker processes.

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
from cellbridge.device import autocast
from cellbridge.io.slides import open_slide
from cellbridge.models.preprocess import to_batch
from cellbridge.pipeline.run import Pipeline, RunOptions
from cellbridge.process_settings import apply_process_settings
from cellbridge.synth import SynthConfig, generate_slide, render_region
from shapely.geometry import box

RSS_CHILD = """
import json, sys, threading, time, psutil
from cellbridge.process_settings import apply_process_settings
apply_process_settings(int(sys.argv[3]))  # as the command line does: large freed buffers go back to the system
from cellbridge.io.slides import open_slide
from cellbridge.pipeline.run import Pipeline, RunOptions
me, peak_pss, running = psutil.Process(), [0], True

def sample():  # the memory of this process and its post-processing workers (PSS: shared pages counted once)
    while running:
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_full_info().pss
            except psutil.Error:
                pass
        peak_pss[0] = max(peak_pss[0], total)
        time.sleep(0.2)

threading.Thread(target=sample, daemon=True).start()
pipeline = Pipeline("nuclei-he", RunOptions(device="cpu", batch_size=4))
with open_slide(sys.argv[1]) as slide:
    start = time.perf_counter()
    result = pipeline.run(slide, sys.argv[2])
running = False
# VmHWM, not ru_maxrss: a forked child inherits its parent's ru_maxrss, while exec starts a new VmHWM
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"tiles": result.tiles, "objects": result.objects, "seconds": time.perf_counter() - start,
                  "peak_rss_mib": peak / 1024, "peak_tree_pss_mib": peak_pss[0] / 2**20}))
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


def postprocess_speedup(tiles: int = 16) -> dict[str, float]:
    """Seconds to post-process (objects + measurements) `tiles` tiles on 1 and 2 threads and 2 processes."""
    from cellbridge.pipeline.postprocess import TilePostprocess, postprocess_pool
    from cellbridge.tiling.plan import Tile

    pipeline = Pipeline("nuclei-he", RunOptions(device="cpu", batch_size=tiles))
    rgbs = [render_region(pipeline_scene(), 512 * (i % 8), 0, 512, 512) for i in range(tiles)]
    with torch.inference_mode():
        raws = pipeline.engine.infer(to_batch(rgbs, pipeline.package.spec.preprocessing))
    infos = [Tile(i, 0, i, 512.0 * i, 0.0, 512, 1.0, (512 * i, 0, 512 * (i + 1), 512)) for i in range(tiles)]
    post = TilePostprocess(pipeline.engine.postprocessor(), mpp=0.5, compartment="Nucleus")
    times = {}
    for name, workers, processes in (("1 thread", 1, False), ("2 threads", 2, False), ("2 processes", 2, True)):
        with postprocess_pool(workers, processes) as pool:
            list(pool.map(post, raws[:workers], rgbs[:workers], infos[:workers]))  # start the workers
            start = time.perf_counter()
            list(pool.map(post, raws, rgbs, infos))
            times[name] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--rss-sizes", default="10000,20000,40000")
    parser.add_argument("--rss-tissue", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", help="folder for the generated slides (default: a temporary one)")
    args = parser.parse_args()
    apply_process_settings(args.threads)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        pipeline = Pipeline("nuclei-he", RunOptions(device="auto", batch_size=4))
        sparse, full = slide(work, args.size, 0.2), slide(work, args.size, 1.0)
        with open_slide(full) as s:  # warm-up (first-call allocations), not timed
            pipeline.run(s, roi=box(0, 0, 1536, 1536))
        r_sparse, r_full = run(pipeline, sparse), run(pipeline, full)
        fwd = forward_time(pipeline, r_full["tiles"])
        rows.append((f"end-to-end vs forward only, {args.size}² full tissue ({r_full['tiles']} tiles, "
                     f"{r_full['objects']} nuclei)", f"{r_full['seconds']:.1f} s vs {fwd:.1f} s",
                     f"{fwd / r_full['seconds']:.2f} (target ≥ 0.9)"))
        rows.append((f"20% tissue vs full tissue, {args.size}² ({r_sparse['tiles']} vs {r_full['tiles']} tiles)",
                     f"{r_sparse['seconds']:.1f} s vs {r_full['seconds']:.1f} s",
                     f"{r_sparse['seconds'] / r_full['seconds']:.2f} (target ≤ 0.3)"))
        post = postprocess_speedup()
        one = post["1 thread"]
        for name in ("2 threads", "2 processes"):
            rows.append((f"post-processing 16 tiles, 1 thread vs {name}", f"{one:.2f} s vs {post[name]:.2f} s",
                         f"{one / post[name]:.2f}× speed-up"))
        rss = []
        for size in [int(s) for s in args.rss_sizes.split(",") if s]:
            path = slide(work, size, args.rss_tissue)
            done = subprocess.run([sys.executable, "-c", RSS_CHILD, str(path), str(work / f"out-{size}.geojson"),
                                   str(args.threads)], capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rss.append((size, result))
            rows.append((f"peak memory, {size}² slide, {args.rss_tissue:.0%} tissue ({result['tiles']} tiles, "
                         f"{result['objects']} nuclei, {result['seconds']:.0f} s)",
                         f"RSS {result['peak_rss_mib']:.0f} MiB, all processes {result['peak_tree_pss_mib']:.0f} MiB",
                         f"{result['peak_tree_pss_mib'] / rss[0][1]['peak_tree_pss_mib']:.2f}× the smallest"))
    print(f"device: {pipeline.device}, torch threads: {args.threads}, "
          f"CPU cores: {len(__import__('os').sched_getaffinity(0))}, peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'values':<22}  ratio")
    for name, values, ratio in rows:
        print(f"{name:<{width}}  {values:<22}  {ratio}")


if __name__ == "__main__":
    main()
