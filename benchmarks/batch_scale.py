"""`cellbridge batch` over many slides: one after the other in one process vs one Dask task per slide on a
LocalCluster, measured in one run on this machine.

Rows: seconds for the same slides (a) in this process with all cores, (b) on a LocalCluster of `--workers`
single-threaded workers, each loading the model once; and the objects found, which must be equal.

Usage: python benchmarks/batch_scale.py [--slides 8] [--size 2048] [--workers 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", help="folder for the generated slides (default: a temporary one)")
    args = parser.parse_args()

    from cellbridge.batch import BatchOptions, run_batch
    from cellbridge.device import available_cores
    from cellbridge.pipeline.options import RunOptions
    from cellbridge.synth import SynthConfig, generate_slide

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        slides = []
        for i in range(args.slides):
            path = work / f"batch-{args.size}-{i}.tif"
            if not path.exists():
                generate_slide(path, SynthConfig(width=args.size, height=args.size, tissue_fraction=0.4, seed=300 + i))
            slides.append(path)
        rows = []
        for name, extra in (("in this process", {}),
                            (f"LocalCluster, {args.workers} workers", {"scheduler": "local",
                                                                      "workers": args.workers})):
            options = BatchOptions("nuclei-he", work / f"out-{len(rows)}", RunOptions(device="cpu"), resume=False,
                                   progress=False, **extra)
            start = time.perf_counter()
            summary = run_batch(slides, options)
            seconds = time.perf_counter() - start
            rows.append((name, seconds, summary.count("done"), sum(o.objects for o in summary.outcomes)))
    print(f"{args.slides} slides of {args.size}², 40% tissue, nuclei-he on the CPU ({available_cores()} cores); "
          "times include model loads and, for Dask, starting the cluster")
    print(f"{'how':<28} {'seconds':>8} {'done':>5} {'objects':>8} {'× in-process time':>18}")
    for name, seconds, done, objects in rows:
        print(f"{name:<28} {seconds:8.1f} {done:5d} {objects:8d} {seconds / rows[0][1]:18.2f}")


if __name__ == "__main__":
    main()
