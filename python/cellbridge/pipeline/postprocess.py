"""Per-tile post-processing beside the forward pass: the engine's objects, then measurements, a classifier and
IHC positivity — in worker threads, or in worker processes when the engine's post-processing is picklable.

Threads do not add up across cores here: scikit-image's watershed and shapely hold the GIL for much of their work.
Worker processes do. On Linux they are forked from the running process when the pool is made, before the reader
threads start (PyTorch's DataLoader workers start the same way): no module is imported again, the model's memory
is shared copy-on-write, and a script needs no `if __name__ == "__main__"` guard. Elsewhere (macOS, Windows, where
fork is unsafe or missing) the pipeline uses threads unless asked for processes, which are then spawned.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from cellbridge.features.classifiers import apply_classifier
from cellbridge.features.measure import measure_objects
from cellbridge.tiling.plan import Tile

#: below this many tiles a run post-processes in threads: starting worker processes is not worth it
PROCESS_MIN_TILES = 48


@dataclass
class TilePostprocess:
    """Objects of one tile, measured, classified and scored. Picklable when `objects_of` is.

    `objects_of` is the engine's postprocessor; with `measure` off its items pass through untouched (the input of
    a merger that makes the objects itself)."""

    objects_of: Callable[[Any, np.ndarray, Tile], Any]
    measure: bool = True
    mpp: float | None = None               # µm/px of level 0, for measurements in µm
    compartment: str | None = None         # measurement prefix of non-cell objects ("Nucleus")
    classifier: Any = None                 # from features.classifiers.load_classifier
    stain_vectors: Any = None              # cellbridge.ihc.StainVectors: score DAB positivity
    positivity: tuple[float, ...] = (0.2, 0.4, 0.6)
    derive_classes: bool = False

    def __call__(self, raw: Any, rgb: np.ndarray, tile: Tile) -> tuple[Tile, Any]:
        objects = self.objects_of(raw, rgb, tile)
        if self.measure and objects:
            measure_objects(objects, rgb, (tile.x, tile.y), tile.downsample, self.mpp, self.compartment)
            if self.classifier is not None:
                apply_classifier(objects, self.classifier)
            if self.stain_vectors is not None:
                from cellbridge.ihc import score_objects, without_he_outputs

                without_he_outputs(objects)
                score_objects(objects, rgb, (tile.x, tile.y), tile.downsample, self.stain_vectors, self.positivity,
                              self.compartment or "Nucleus", derive=self.derive_classes)
        return tile, objects


def processes_by_default() -> bool:
    """Whether worker processes start cheaply and safely here (fork: Linux)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def postprocess_pool(workers: int, processes: bool) -> Executor:
    """`workers` post-processing threads, or worker processes: forked (Linux; all started now, so make the pool
    before starting other threads) or spawned elsewhere."""
    if not processes:
        return ThreadPoolExecutor(workers, thread_name_prefix="cellbridge-post")
    if processes_by_default():
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        pool.submit(int).result()  # a fork pool starts all its workers at the first task: do it now
        return pool
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
