"""Write a synthetic scene (H&E or IHC) as a pyramidal tiled BigTIFF plus its ground truth as QuPath GeoJSON."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
from tqdm import tqdm

from cellbridge.errors import CellBridgeError
from cellbridge.io.atomic import atomic_path
from cellbridge.io.qupath_geojson import write_objects
from cellbridge.objects import PathClass, PathObject, class_color
from cellbridge.synth.render import render_region
from cellbridge.synth.scene import Scene, SynthConfig, build_scene

PYRAMID_FACTOR = 4
COMPRESSIONS = ("jpeg", "deflate", "zstd", "none")


@dataclass
class SynthResult:
    """What `generate_slide` wrote and what the scene holds."""

    path: Path
    truth_path: Path | None
    scene: Scene
    levels: list[tuple[int, int]]
    seconds: float

    @property
    def class_counts(self) -> dict[str, int]:
        """Nuclei per truth class name (intensity classes Negative / 1+ / 2+ / 3+ on IHC)."""
        names = self.scene.class_names
        counts = np.bincount(self.scene.truth_labels, minlength=len(names))
        return {name: int(n) for name, n in zip(names, counts)}

    @property
    def ihc_scores(self) -> dict[str, float] | None:
        """IHC only: the true positive % (Ki-67 index) and H-score of all nuclei; None on H&E."""
        return ihc_scores(self.scene)


def ihc_scores(scene: Scene) -> dict[str, float] | None:
    """The true positive % and H-score (1×%1+ + 2×%2+ + 3×%3+) of an IHC scene's nuclei; None on H&E."""
    if not scene.config.ihc:
        return None
    counts = np.bincount(scene.dab_class, minlength=4).astype(float)
    total = counts.sum()
    if total == 0:
        return {"positive_percent": math.nan, "h_score": math.nan}
    percent = counts / total * 100.0
    return {"positive_percent": float(percent[1:].sum()), "h_score": float(percent @ np.arange(4))}


def truth_objects(scene: Scene) -> Iterator[PathObject]:
    """Every nucleus as a classified QuPath detection with its centre and shape as measurements.

    On IHC the class is the true intensity class (Negative, 1+, 2+, 3+) and "True DAB OD" holds the DAB optical
    density the nucleus was rendered with (in the scene's own DAB units).
    """
    classes = {name: PathClass.of(name, class_color(name)) for name in scene.class_names}
    for i in range(len(scene)):
        (cx, cy), (a, b) = scene.centres[i], scene.axes[i]
        measurements = {
            "Centre X px": round(float(cx), 3), "Centre Y px": round(float(cy), 3),
            "Major axis px": round(float(2 * a), 3), "Minor axis px": round(float(2 * b), 3),
            "Angle deg": round(math.degrees(float(scene.angles[i])) % 180, 2),
        }
        if scene.config.ihc:
            measurements["True DAB OD"] = round(float(scene.dab_level[i]), 4)
        yield PathObject(scene.polygon(i), "detection", classes[scene.class_name(i)], measurements)


def generate_slide(path: str | os.PathLike[str], config: SynthConfig, truth_path: str | os.PathLike[str] | None = None,
                   tile: int = 512, compression: str = "jpeg", quality: int = 90, progress: bool = False,
                   cancelled: Callable[[], bool] | None = None) -> SynthResult:
    """Render `config` into a pyramidal tiled TIFF at `path` (and the truth GeoJSON), strip by strip.

    Level 0 is rendered one row of tiles at a time and streamed to tifffile; each lower level (÷4) is built from
    the one above through a temporary memory map, so memory stays flat however large the slide.
    """
    if tile % 16 or tile < 64:
        raise CellBridgeError(f"tile size must be a multiple of 16 and at least 64, got {tile}")
    if compression not in COMPRESSIONS:
        raise CellBridgeError(f"unknown compression {compression!r}; expected one of {', '.join(COMPRESSIONS)}")
    start = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scene = build_scene(config)
    levels = pyramid_levels(config.width, config.height, tile)
    bar = tqdm(total=math.ceil(config.height / tile), desc="rendering", unit="row", disable=not progress)
    with tempfile.TemporaryDirectory(prefix="cellbridge-synth-", dir=path.parent) as scratch, \
            atomic_path(path) as tmp:
        below = np.lib.format.open_memmap(Path(scratch) / "level1.npy", "w+", np.uint8,
                                          (levels[1][1], levels[1][0], 3)) if len(levels) > 1 else None
        options = _tiff_options(config, tile, compression, quality)
        with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
            tif.write(_level0_tiles(scene, tile, below, bar, cancelled), shape=(config.height, config.width, 3),
                      dtype=np.uint8, subfiletype=0, **options)
            previous = below
            for k in range(1, len(levels)):
                nxt = None
                if k + 1 < len(levels):
                    nxt = np.lib.format.open_memmap(Path(scratch) / f"level{k + 1}.npy", "w+", np.uint8,
                                                    (levels[k + 1][1], levels[k + 1][0], 3))
                    _downsample_into(previous, nxt, tile)
                level_options = dict(options, resolution=(options["resolution"][0] / PYRAMID_FACTOR ** k,
                                                          options["resolution"][1] / PYRAMID_FACTOR ** k))
                tif.write(previous, subfiletype=1, **level_options)
                previous = nxt
    bar.close()
    if truth_path is not None:
        write_objects(truth_objects(scene), truth_path)
    return SynthResult(path, None if truth_path is None else Path(truth_path), scene, levels,
                       time.perf_counter() - start)


def pyramid_levels(width: int, height: int, tile: int) -> list[tuple[int, int]]:
    """Level sizes, each ÷4 of the one above, down to the first that fits in one tile."""
    levels = [(width, height)]
    while max(levels[-1]) > tile:
        w, h = levels[-1]
        levels.append((math.ceil(w / PYRAMID_FACTOR), math.ceil(h / PYRAMID_FACTOR)))
    return levels


def _tiff_options(config: SynthConfig, tile: int, compression: str, quality: int) -> dict:
    per_cm = 10_000.0 / config.mpp
    options: dict = {"tile": (tile, tile), "photometric": "rgb", "resolution": (per_cm, per_cm),
                     "resolutionunit": "CENTIMETER", "metadata": None,
                     "description": f"CellBridge synthetic {'IHC (H-DAB)' if config.ihc else 'H&E'} slide "
                                    f"seed={config.seed} mpp={config.mpp}"}
    if compression == "jpeg":
        options.update(compression="jpeg", compressionargs={"level": quality})
    elif compression != "none":
        options.update(compression=compression)
    return options


def _level0_tiles(scene: Scene, tile: int, below: np.ndarray | None, bar: tqdm,
                  cancelled: Callable[[], bool] | None) -> Iterator[np.ndarray]:
    """Level-0 tiles in row-major order (edge tiles padded), filling the ÷4 level as each row is done."""
    width, height = scene.config.width, scene.config.height
    for y in range(0, height, tile):
        if cancelled is not None and cancelled():
            raise CellBridgeError("synthetic slide generation cancelled")
        h = min(tile, height - y)
        strip = np.empty((h, width, 3), np.uint8)
        for x in range(0, width, tile):
            strip[:, x:x + tile] = render_region(scene, x, y, min(tile, width - x), h)
        if below is not None:
            rows = slice(y // PYRAMID_FACTOR, min(math.ceil((y + h) / PYRAMID_FACTOR), below.shape[0]))
            below[rows] = cv2.resize(strip, (below.shape[1], rows.stop - rows.start), interpolation=cv2.INTER_AREA)
        for x in range(0, width, tile):
            block = np.full((tile, tile, 3), 255, np.uint8)
            part = strip[:, x:x + tile]
            block[:part.shape[0], :part.shape[1]] = part
            yield block
        bar.update(1)


def _downsample_into(source: np.ndarray, target: np.ndarray, tile: int) -> None:
    """Area-downsample `source` into `target` (÷4) one strip at a time."""
    step = tile * PYRAMID_FACTOR
    for y in range(0, source.shape[0], step):
        part = np.asarray(source[y:y + step])
        rows = slice(y // PYRAMID_FACTOR, min(math.ceil((y + part.shape[0]) / PYRAMID_FACTOR), target.shape[0]))
        target[rows] = cv2.resize(part, (target.shape[1], rows.stop - rows.start), interpolation=cv2.INTER_AREA)
