"""The hot path: tile plan → reader threads → batched model on the device → per-tile post-processing in
worker threads → seam-free merge → QuPath GeoJSON streamed to the output.

Readers fetch and preprocess the next tiles while the model runs on the current batch; post-processing of a
batch overlaps the next forward pass. Objects leave the merger as soon as they are final, so the whole slide's
objects are never held in memory.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from cellbridge.device import AdaptiveBatcher, autocast, available_cores, resolve_device, to_device
from cellbridge.engines.base import Engine
from cellbridge.engines.registry import engine_class, make_engine
from cellbridge.errors import CellBridgeError, SlideError
from cellbridge.features.classifiers import load_classifier
from cellbridge.io.qupath_geojson import GeoJSONWriter
from cellbridge.io.slides import Slide, fluorescence_evidence
from cellbridge.models.package import ModelPackage, load_model
from cellbridge.models.preprocess import preprocess_image
from cellbridge.objects import PathObject
from cellbridge.pipeline.image_scale import Scale, find_scale
from cellbridge.pipeline.options import RunOptions
from cellbridge.pipeline.overlay import OverlayDrawer
from cellbridge.pipeline.postprocess import (
    PROCESS_MIN_TILES,
    TilePostprocess,
    postprocess_pool,
    processes_by_default,
)
from cellbridge.tiling import detect_tissue, plan_tiles
from cellbridge.tiling.plan import Tile, TilePlan, check_tile_count

log = logging.getLogger(__name__)


class Cancelled(CellBridgeError):
    """The run was cancelled; nothing was written."""


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
    scale: Scale | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"objects": self.objects, "classes": self.class_counts, "tiles": self.tiles,
                "full_scan_tiles": self.full_scan_tiles, "downsample": round(self.downsample, 4),
                "seconds": round(self.seconds, 2), "device": self.device,
                "output": None if self.output is None else str(self.output),
                "scale": None if self.scale is None else self.scale.to_json()}


@dataclass(frozen=True)
class RunPlan:
    """Everything one run over one image is set up with: its options, scale, engine and tiles."""

    options: RunOptions
    scale: Scale
    downsample: float
    engine: Engine
    tiles: TilePlan


def model_downsample(scale: Scale, package: ModelPackage) -> float:
    """The downsample that brings an image of `scale` to the model's pixel size (the model's own downsample when
    either is unknown)."""
    spec = package.spec
    if spec.mpp and scale.pixel_size:
        return spec.mpp / scale.pixel_size
    return float(spec.downsample)


class Pipeline:
    """One model loaded on one device, ready to run over any number of images.

    The loaded model is shared by every run and never changed by one: each run takes its own `RunOptions`
    (`options=`; default: those the pipeline was made with), merged with the model's defaults for that run only.
    `device` and `batch_size` belong to the loaded model and are taken from the pipeline's options."""

    def __init__(self, model: str | Path | ModelPackage, options: RunOptions | None = None) -> None:
        self.options = options or RunOptions()
        self.package = model if isinstance(model, ModelPackage) else load_model(model)
        self.device = resolve_device(self.options.device)
        self.engine: Engine = self.make_engine(self.options)  # checks the options (and model.json's) now
        self.batcher = AdaptiveBatcher(self.options.batch_size, self.device)
        self.check(self.options)

    def check(self, options: RunOptions) -> None:
        """Refuse options this model cannot run with."""
        if options.classifier is not None and not options.measure:
            raise CellBridgeError("a classifier needs measurements; do not turn measuring off")
        if options.cell_expansion > 0 and "cell_expansion_px" not in engine_class(self.package.spec).DEFAULTS:
            raise CellBridgeError(f"model {self.package.spec.name!r} ({self.package.spec.task}) does not grow "
                                  "cells; cell expansion needs a nuclei model")
        self.make_engine(options)  # unknown engine options, a threshold the model does not have, ...

    def make_engine(self, options: RunOptions, cell_expansion_px: float | None = None) -> Engine:
        """An engine for one run: model.json's options, then the run's (`threshold`, `engine`, cell expansion)."""
        spec = self.package.spec
        kind = engine_class(spec)
        overrides = dict(options.engine)
        if options.threshold is not None:
            if kind.threshold_option is None:
                raise CellBridgeError(f"model {spec.name!r} ({spec.task}) has no threshold to set")
            overrides[kind.threshold_option] = options.threshold
        if cell_expansion_px is not None and "cell_expansion_px" in kind.DEFAULTS:
            overrides["cell_expansion_px"] = cell_expansion_px
        if options.tta:
            if not kind.flip_tta:
                raise CellBridgeError(f"model {spec.name!r} ({spec.architecture}) has no test-time augmentation; "
                                      "--tta is for nuclei network models")
            overrides["tta"] = True
        return make_engine(self.package, self.device, overrides)

    def prepare(self, slide: Slide, roi: BaseGeometry | None = None, options: RunOptions | None = None) -> RunPlan:
        """Scale, engine and tiles over ROI ∩ tissue for one run; refuses a plan of runaway size before any
        tissue detection or reading."""
        options = options or self.options
        self.check(options)
        spec = self.package.spec
        if spec.modality == "brightfield" and (evidence := fluorescence_evidence(slide)):
            raise SlideError(f"{slide.path}: {evidence}; model {spec.name!r} is for brightfield (H&E, IHC) images")
        scale = find_scale(slide, options.pixel_size, spec.mpp, roi)
        downsample = model_downsample(scale, self.package)
        expansion = options.cell_expansion / scale.pixel_size if scale.calibrated else options.cell_expansion
        engine = self.make_engine(options, expansion / downsample)
        tile_size = options.tile_size or spec.tile_size
        overlap = spec.overlap if options.overlap is None else options.overlap
        if overlap <= engine.object_size:
            overlap = min(int(engine.object_size) + 8, tile_size // 2 - 1)  # seams need whole objects
        check_tile_count(*slide.dimensions, tile_size=tile_size, overlap=overlap, downsample=downsample, roi=roi,
                         what=f"{slide.path.name} at {scale.note}")
        if options.stain == "ihc-dab" and options.stain_vectors is None and options.classifier is None:
            options = options.with_changes(stain_vectors=self.slide_stains(slide, options))
        tissue = detect_tissue(slide) if options.tissue else None
        tiles = plan_tiles(*slide.dimensions, tile_size=tile_size, overlap=overlap, downsample=downsample,
                           roi=roi, tissue=tissue)
        return RunPlan(options, scale, downsample, engine, tiles)

    @staticmethod
    def slide_stains(slide: Slide, options: RunOptions) -> Any:
        """The stain vectors an IHC run scores `slide` with (`options.stains`: estimated, default or given),
        their source logged."""
        from cellbridge.ihc import stains_for_slide

        stains, note = stains_for_slide(options.stains, slide)
        log.info("%s: stain vectors %s", slide.path.name, note)
        return stains

    def plan(self, slide: Slide, roi: BaseGeometry | None = None,
             options: RunOptions | None = None) -> tuple[TilePlan, float, Scale]:
        """Tiles over ROI ∩ tissue at the model's scale, the downsample and the scale found."""
        prepared = self.prepare(slide, roi, options)
        return prepared.tiles, prepared.downsample, prepared.scale

    def objects(self, slide: Slide, roi: BaseGeometry | None = None,
                cancelled: Callable[[], bool] = lambda: False,
                on_progress: Callable[[int, int], None] | None = None,
                options: RunOptions | None = None,
                on_plan: Callable[[RunPlan], None] | None = None) -> Iterator[PathObject]:
        """Merged objects of the slide (level-0 geometry), yielded as soon as each is final (`on_plan`: told
        the run's plan first)."""
        prepared = self.prepare(slide, roi, options)
        if on_plan is not None:
            on_plan(prepared)
        yield from self._run_plan(slide, prepared, roi, cancelled, on_progress)

    def _run_plan(self, slide: Slide, run: RunPlan, roi: BaseGeometry | None, cancelled: Callable[[], bool],
                  on_progress: Callable[[int, int], None] | None) -> Iterator[PathObject]:
        options, engine, plan = run.options, run.engine, run.tiles
        mpp = run.scale.pixel_size if run.scale.calibrated else None  # µm measurements only when known
        merger = engine.make_merger(plan, roi, mpp)
        tiles = list(plan)
        batch = max(1, self.batcher.batch_size)
        preprocessing = self.package.spec.preprocessing
        classifier = load_classifier(options.classifier) if options.classifier else None

        def read(tile: Tile) -> tuple[Tile, np.ndarray, np.ndarray]:
            rgb = slide.read_region(tile.x, tile.y, tile.extent, tile.extent, tile.downsample)
            return tile, rgb, preprocess_image(rgb, preprocessing)

        def forward(items: list[tuple[Tile, np.ndarray, np.ndarray]]) -> list[Any]:
            stacked = to_device(torch.from_numpy(np.stack([item[2] for item in items])), self.device)
            with torch.inference_mode(), autocast(self.device):
                return engine.infer(stacked)

        processes = options.postprocess_processes
        if processes is None:  # auto: processes for whole slides, when the engine's post-processing allows it
            processes = (engine.process_safe and len(tiles) >= PROCESS_MIN_TILES and available_cores() > 1
                         and processes_by_default())
        elif processes and not engine.process_safe:
            raise CellBridgeError(f"model {self.package.spec.name!r} ({self.package.spec.task}): its "
                                  "post-processing cannot run in worker processes; use threads")
        post = TilePostprocess(
            engine.postprocessor(),
            measure=engine.objects_per_tile and options.measure,  # otherwise the merger measures what it makes
            mpp=mpp, compartment=engine.compartment, classifier=classifier,
            stain_vectors=options.stain_vectors, positivity=options.positivity,
            derive_classes=options.derive_classes)

        done = 0
        # the post-processing pool first: worker processes are forked before the reader threads start
        with postprocess_pool(options.postprocess_workers, processes) as posts, \
                ThreadPoolExecutor(options.readers, thread_name_prefix="cellbridge-read") as readers:
            ahead = max(2 * batch, options.readers * 2)
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
                raws = self.batcher.run(current, forward)
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

    def run(self, slide: Slide, out: str | Path | None = None, roi: BaseGeometry | None = None,
            cancelled: Callable[[], bool] = lambda: False, overlay: str | Path | None = None,
            on_object: Callable[[PathObject], None] | None = None,
            on_progress: Callable[[int, int], None] | None = None,
            trailer: Callable[[], Iterable[PathObject]] | None = None,
            options: RunOptions | None = None, on_plan: Callable[[RunPlan], None] | None = None) -> RunResult:
        """Run over the slide; stream the objects to `out` (QuPath GeoJSON, atomic) and/or `on_object`.

        `options`: this run's options (default: the pipeline's). `trailer` gives objects written after the run,
        before the file is closed (e.g. annotations carrying per-region summaries). `on_plan` is told the run's
        plan (scale, tiles) before any tile is read."""
        started = time.perf_counter()
        prepared = self.prepare(slide, roi, options)
        if on_plan is not None:
            on_plan(prepared)
        counts: Counter = Counter()
        drawer = OverlayDrawer(slide, classes=self.package.spec.class_names) if overlay else None
        bar = tqdm(total=len(prepared.tiles), desc=slide.path.name, unit="tile",
                   disable=not prepared.options.progress)

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

        stream = self._run_plan(slide, prepared, roi, cancelled, progress)
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
        plan = prepared.tiles
        return RunResult(sum(counts.values()), dict(sorted(counts.items())), len(plan), plan.grid_tiles,
                         prepared.downsample, time.perf_counter() - started, str(self.device),
                         None if out is None else Path(out), prepared.scale)


__all__ = ["Cancelled", "OverlayDrawer", "Pipeline", "RunOptions", "RunPlan", "RunResult", "model_downsample"]

