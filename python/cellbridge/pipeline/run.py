"""The hot path: tile plan → reader threads → batched model on the device → per-tile post-processing in
worker threads → seam-free merge → QuPath GeoJSON streamed to the output.

Readers fetch and preprocess the next tiles while the model runs on the current batch; post-processing of a
batch overlaps the next forward pass. Objects leave the merger as soon as they are final, so the whole slide's
objects are never held in memory.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from cellbridge.engines.base import Engine
from cellbridge.engines.classify import load_classifier
from cellbridge.engines.device import AdaptiveBatcher, autocast, available_cores, resolve_device, to_device
from cellbridge.engines.preprocess import preprocess_image
from cellbridge.engines.registry import make_engine
from cellbridge.errors import CellBridgeError, SlideError
from cellbridge.io.qupath_geojson import GeoJSONWriter
from cellbridge.io.slides import Slide, fluorescence_evidence
from cellbridge.merge.seams import SeamMerger
from cellbridge.models.package import ModelPackage, load_model
from cellbridge.objects import PathObject
from cellbridge.pipeline.memory import release_large_buffers
from cellbridge.pipeline.overlay import OverlayDrawer
from cellbridge.pipeline.postprocess import (
    PROCESS_MIN_TILES,
    TilePostprocess,
    postprocess_pool,
    processes_by_default,
)
from cellbridge.tiling import detect_tissue, plan_tiles
from cellbridge.tiling.plan import Tile, TilePlan


class Cancelled(CellBridgeError):
    """The run was cancelled; nothing was written."""


@dataclass
class RunOptions:
    """How to run a model over a slide (None: the model package's own value)."""

    device: str = "auto"
    batch_size: int = 4
    tile_size: int | None = None
    overlap: int | None = None
    readers: int = 2
    postprocess_workers: int = 2
    postprocess_processes: bool | None = None  # worker processes (None: on Linux, for runs of ≥ 48 tiles)
    tissue: bool = True
    pixel_size: float | None = None          # µm/px of the input when the slide does not say
    estimate_scale: bool = False             # neither known: estimate µm/px from the nuclei (pipeline.scale)
    cell_expansion: float = 0.0              # µm (px when the pixel size is unknown); nuclei engines only
    engine: dict[str, Any] = field(default_factory=dict)   # engine options (thresholds, cell expansion…)
    measure: bool = True
    classifier: str | Path | None = None     # a classifier file (reference colours or trained) applied after measuring
    stain_vectors: Any = None                # cellbridge.ihc.StainVectors: score DAB positivity per object (IHC)
    positivity: tuple[float, ...] = (0.2, 0.4, 0.6)  # DAB OD thresholds: one (Positive/Negative) or three (1+/2+/3+)
    derive_classes: bool = False             # IHC: keep the model's class as parent (e.g. "Tumor: 2+")
    progress: bool = False


@dataclass
class RunResult:
    """What a run produced."""

    objects: int
    class_counts: dict[str, int]
    tiles: int
    full_scan_tiles: int
    downsample: float
    seconds: float
    device: str
    output: Path | None = None
    scale_note: str = ""

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"objects": self.objects, "classes": self.class_counts, "tiles": self.tiles,
                "full_scan_tiles": self.full_scan_tiles, "downsample": round(self.downsample, 4),
                "seconds": round(self.seconds, 2), "device": self.device,
                "output": None if self.output is None else str(self.output), "scale": self.scale_note}


def model_downsample(slide: Slide, package: ModelPackage, pixel_size: float | None,
                     estimate: bool = False) -> tuple[float, str]:
    """The downsample that brings the slide to the model's pixel size, and a note saying how it was chosen
    (`estimate`: when neither the slide nor the caller gives the pixel size, guess it from the nuclei)."""
    spec = package.spec
    slide_mpp = slide.mpp or pixel_size
    if spec.mpp and not slide_mpp and estimate:
        from cellbridge.pipeline.scale import estimate_pixel_size

        width, height = slide.dimensions
        side_x, side_y = min(width, 2048), min(height, 2048)  # the centre of the image, at full resolution
        x0, y0 = (width - side_x) // 2, (height - side_y) // 2
        estimated, note = estimate_pixel_size(slide.read_region(x0, y0, side_x, side_y, 1.0))
        if estimated is not None:
            return spec.mpp / estimated, f"{note} → model {spec.mpp:.4g} µm/px"
    if spec.mpp and slide_mpp:
        return spec.mpp / slide_mpp, f"slide {slide_mpp:.4g} µm/px → model {spec.mpp:.4g} µm/px"
    if spec.mpp and not slide_mpp:
        return float(spec.downsample), (f"slide pixel size unknown: assumed the model's {spec.mpp:.4g} µm/px "
                                        "(pass --pixel-size to set it)")
    return float(spec.downsample), f"model downsample {spec.downsample:g}"


class Pipeline:
    """One model loaded on one device, ready to run over any number of slides."""

    def __init__(self, model: str | Path | ModelPackage, options: RunOptions | None = None) -> None:
        self.options = options or RunOptions()
        release_large_buffers()  # a whole slide's peak memory stays flat (pipeline/memory.py)
        self.package = model if isinstance(model, ModelPackage) else load_model(model)
        self.device = resolve_device(self.options.device)
        self.engine: Engine = make_engine(self.package, self.device, self.options.engine)
        self.batcher = AdaptiveBatcher(self.options.batch_size, self.device)
        self.classifier = load_classifier(self.options.classifier) if self.options.classifier else None
        if self.classifier is not None and not self.options.measure:
            raise CellBridgeError("a classifier needs measurements; do not turn measuring off")

    def plan(self, slide: Slide, roi: BaseGeometry | None = None) -> tuple[TilePlan, float, str]:
        """Tiles over ROI ∩ tissue at the model's scale. A brightfield model refuses a fluorescence slide."""
        spec = self.package.spec
        if spec.modality == "brightfield" and (evidence := fluorescence_evidence(slide)):
            raise SlideError(f"{slide.path}: {evidence}; model {spec.name!r} is for brightfield (H&E, IHC) images")
        downsample, note = model_downsample(slide, self.package, self.options.pixel_size,
                                            self.options.estimate_scale)
        tile_size = self.options.tile_size or spec.tile_size
        overlap = spec.overlap if self.options.overlap is None else self.options.overlap
        if overlap <= self.engine.object_size:
            overlap = min(int(self.engine.object_size) + 8, tile_size // 2 - 1)  # seams need whole objects
        tissue = detect_tissue(slide) if self.options.tissue else None
        plan = plan_tiles(*slide.dimensions, tile_size=tile_size, overlap=overlap, downsample=downsample,
                          roi=roi, tissue=tissue)
        return plan, downsample, note

    def objects(self, slide: Slide, roi: BaseGeometry | None = None,
                cancelled: Callable[[], bool] = lambda: False,
                on_progress: Callable[[int, int], None] | None = None) -> Iterator[PathObject]:
        """Merged objects of the slide (level-0 geometry), yielded as soon as each is final."""
        plan, downsample, _ = self.plan(slide, roi)
        self._set_cell_expansion(slide, downsample)
        yield from self._run_plan(slide, plan, roi, cancelled, on_progress)

    def _set_cell_expansion(self, slide: Slide, downsample: float) -> None:
        """Convert the cell expansion (µm, or px without a pixel size) into model pixels for this slide."""
        if self.options.cell_expansion <= 0:
            if "cell_expansion_px" in self.engine.options:
                self.engine.options["cell_expansion_px"] = 0.0
            return
        if "cell_expansion_px" not in self.engine.options:
            raise CellBridgeError(f"model {self.package.spec.name!r} ({self.package.spec.task}) does not grow "
                                  "cells; cell expansion needs a nuclei model")
        mpp = slide.mpp or self.options.pixel_size
        pixels = self.options.cell_expansion / mpp if mpp else self.options.cell_expansion
        self.engine.options["cell_expansion_px"] = pixels / downsample

    def _run_plan(self, slide: Slide, plan: TilePlan, roi: BaseGeometry | None, cancelled: Callable[[], bool],
                  on_progress: Callable[[int, int], None] | None) -> Iterator[PathObject]:
        mpp = slide.mpp or self.options.pixel_size
        # region engines (semantic) blend neighbouring tiles in a merger of their own; the rest merge objects
        make_merger = getattr(self.engine, "make_merger", None)
        merger = make_merger(plan, roi, mpp) if make_merger is not None else SeamMerger(plan, roi=roi)
        tiles = list(plan)
        batch = max(1, self.batcher.batch_size)
        preprocessing = self.package.spec.preprocessing

        def read(tile: Tile) -> tuple[Tile, np.ndarray, np.ndarray]:
            rgb = slide.read_region(tile.x, tile.y, tile.extent, tile.extent, tile.downsample)
            return tile, rgb, preprocess_image(rgb, preprocessing)

        engine_post = self.engine.postprocessor()
        processes = self.options.postprocess_processes
        if processes is None:  # auto: processes for whole slides, when the engine's post-processing allows it
            processes = (engine_post is not None and len(tiles) >= PROCESS_MIN_TILES and available_cores() > 1
                         and processes_by_default())
        elif processes and engine_post is None:
            raise CellBridgeError(f"model {self.package.spec.name!r} ({self.package.spec.task}): its "
                                  "post-processing cannot run in worker processes; use threads")
        post = TilePostprocess(
            engine_post if processes else self.engine.postprocess,
            measure=make_merger is None and self.options.measure,  # regions are measured by their merger
            mpp=mpp, compartment=self.engine.compartment, classifier=self.classifier,
            stain_vectors=self.options.stain_vectors, positivity=self.options.positivity,
            derive_classes=self.options.derive_classes)

        done = 0
        # the post-processing pool first: worker processes are forked before the reader threads start
        with postprocess_pool(self.options.postprocess_workers, processes) as posts, \
                ThreadPoolExecutor(self.options.readers, thread_name_prefix="cellbridge-read") as readers:
            ahead = max(2 * batch, self.options.readers * 2)
            pending_reads: deque[Future] = deque(readers.submit(read, t) for t in tiles[:ahead])
            next_tile = len(pending_reads)
            pending_posts: deque[Future] = deque()
            while pending_reads:
                if cancelled():
                    for future in [*pending_reads, *pending_posts]:
                        future.cancel()
                    raise Cancelled("run cancelled")
                current = [pending_reads.popleft().result() for _ in range(min(batch, len(pending_reads)))]
                while next_tile < len(tiles) and len(pending_reads) < ahead:
                    pending_reads.append(readers.submit(read, tiles[next_tile]))
                    next_tile += 1
                raws = self.batcher.run(current, self._forward)
                for (tile, rgb, _), raw in zip(current, raws):
                    pending_posts.append(posts.submit(post, raw, rgb, tile))
                while pending_posts and (pending_posts[0].done() or len(pending_posts) > 2 * batch):
                    tile, objects = pending_posts.popleft().result()
                    yield from merger.add(tile, objects)
                    done += 1
                    if on_progress:
                        on_progress(done, len(tiles))
            while pending_posts:
                if cancelled():
                    for future in pending_posts:
                        future.cancel()
                    raise Cancelled("run cancelled")
                tile, objects = pending_posts.popleft().result()
                yield from merger.add(tile, objects)
                done += 1
                if on_progress:
                    on_progress(done, len(tiles))
        yield from merger.finish()

    def _forward(self, items: list[tuple[Tile, np.ndarray, np.ndarray]]) -> list[Any]:
        batch = to_device(torch.from_numpy(np.stack([item[2] for item in items])), self.device)
        with torch.inference_mode(), autocast(self.device):
            return self.engine.infer(batch)

    def run(self, slide: Slide, out: str | Path | None = None, roi: BaseGeometry | None = None,
            cancelled: Callable[[], bool] = lambda: False, overlay: str | Path | None = None,
            on_object: Callable[[PathObject], None] | None = None,
            on_progress: Callable[[int, int], None] | None = None,
            trailer: Callable[[], Iterable[PathObject]] | None = None) -> RunResult:
        """Run over the slide; stream the objects to `out` (QuPath GeoJSON, atomic) and/or `on_object`.

        `trailer` gives objects written after the run, before the file is closed (e.g. annotations carrying
        per-region summaries)."""
        started = time.perf_counter()
        plan, downsample, note = self.plan(slide, roi)
        self._set_cell_expansion(slide, downsample)
        counts: Counter = Counter()
        drawer = OverlayDrawer(slide, classes=self.package.spec.class_names) if overlay else None
        bar = tqdm(total=len(plan), desc=slide.path.name, unit="tile", disable=not self.options.progress)

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)
            bar.set_postfix(objects=sum(counts.values()))
            if on_progress is not None:
                on_progress(done, total)

        def consume(objects: Iterator[PathObject], writer: GeoJSONWriter | None) -> None:
            for obj in objects:
                counts[obj.class_name or "Unclassified"] += 1
                if writer is not None:
                    writer.write(obj)
                if drawer is not None:
                    drawer.draw(obj)
                if on_object is not None:
                    on_object(obj)

        stream = self._run_plan(slide, plan, roi, cancelled, progress)
        try:
            if out is not None:
                with GeoJSONWriter(out) as writer:
                    consume(stream, writer)
                    if trailer is not None:
                        writer.write_many(trailer())
                    if drawer is not None:  # before the GeoJSON is renamed: a failing overlay keeps the old --out
                        drawer.save(overlay)
            else:
                consume(stream, None)
                if drawer is not None:
                    drawer.save(overlay)
        finally:
            bar.close()
        return RunResult(sum(counts.values()), dict(sorted(counts.items())), len(plan), plan.grid_tiles, downsample,
                         time.perf_counter() - started, str(self.device), None if out is None else Path(out), note)


def run_slide(slide: Slide, model: str | Path | ModelPackage, out: str | Path | None = None,
              roi: BaseGeometry | None = None, options: RunOptions | None = None, **kwargs: Any) -> RunResult:
    """One-call form: load the model and run it over `slide`."""
    return Pipeline(model, options).run(slide, out, roi, **kwargs)

