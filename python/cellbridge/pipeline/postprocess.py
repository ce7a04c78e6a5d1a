"""Per-tile post-processing beside the forward pass: the engine's objects, then measurements, a classifier and
IHC positivity — in worker threads, or in worker processes when the engine's post-processing needs no torch.

Threads do not add up across cores here: scikit-image's watershed and shapely hold the GIL for much of their work.
Worker processes do. They start with the `forkserver` method: each worker forks from a small server process that
imported numpy, scikit-image, shapely and the post-processing modules, never torch (about 100 MB per worker
instead of the 560 MB a torch import costs). This module imports no torch either.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from cellbridge.engines.classify import apply_classifier
from cellbridge.engines.measure import measure_objects
from cellbridge.objects import PathObject
from cellbridge.tiling.plan import Tile

#: below this many tiles a run post-processes in threads: starting worker processes is not worth it
PROCESS_MIN_TILES = 48
#: what the forkserver imports once, so that each worker starts ready; "__main__" as multiprocessing's default
#: (a script's top-level imports run once in the server, not again in every worker)
PRELOAD = ["__main__", "cellbridge.pipeline.postprocess", "cellbridge.engines.nuclei_objects",
           "cellbridge.engines.classical_objects", "cellbridge.ihc"]


@dataclass
class TilePostprocess:
    """Objects of one tile, measured, classified and scored. Picklable when `objects_of` is."""

    objects_of: Callable[[Any, np.ndarray, Tile], list[PathObject]]
    measure: bool = True
    mpp: float | None = None               # µm/px of level 0, for measurements in µm
    compartment: str | None = None         # measurement prefix of non-cell objects ("Nucleus")
    classifier: Any = None                 # from engines.classify.load_classifier
    stain_vectors: Any = None              # cellbridge.ihc.StainVectors: score DAB positivity
    positivity: tuple[float, ...] = (0.2, 0.4, 0.6)
    derive_classes: bool = False

    def __call__(self, raw: Any, rgb: np.ndarray, tile: Tile) -> tuple[Tile, list[PathObject]]:
        objects = self.objects_of(raw, rgb, tile)
        if self.measure and objects:
            measure_objects(objects, rgb, (tile.x, tile.y), tile.downsample, self.mpp, self.compartment)
            if self.classifier is not None:
                apply_classifier(objects, self.classifier)
            if self.stain_vectors is not None:
                from cellbridge.ihc import score_objects

                score_objects(objects, rgb, (tile.x, tile.y), tile.downsample, self.stain_vectors, self.positivity,
                              self.compartment or "Nucleus", derive=self.derive_classes)
        return tile, objects


def postprocess_pool(workers: int, processes: bool) -> Executor:
    """`workers` post-processing threads, or worker processes (forkserver where there is one, else spawn)."""
    if not processes:
        return ThreadPoolExecutor(workers, thread_name_prefix="cellbridge-post")
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)  # takes effect when this process first starts its forkserver
    else:
        context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context)
