"""Synthetic colon-like glands with exact masks (one object per gland, lumen included).

A gland is an irregular closed outline with a lumen inside it; the ring between them is epithelium, with a row of
nuclei near its outer (basal) side. Glands sit on stroma (the H&E scene's stroma colour and fibre texture) with
scattered stromal nuclei, and never overlap; some pairs are placed nearly touching (1–3 px apart), the hard case
for instance segmentation.

Truth: `instances` (one id per gland, lumen included, as GlaS labels them) and `class_map`
(0 stroma, 1 epithelium, 2 lumen — the classes of `GLAND_CLASSES`). Everything follows from the config's seed.

    glands = build_glands(GlandConfig(width=512, height=512, seed=1))
    glands.rgb, glands.instances, glands.class_map, glands.truth_objects()
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import Polygon

from cellbridge.geometry import rasterize
from cellbridge.objects import PathClass, PathObject
from cellbridge.synth.render import STROMA_RGB, periodic_texture

GLAND_CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (("Epithelium", (160, 40, 160)),
                                                               ("Lumen", (250, 220, 120)))
GLAND_CLASS = ("Gland", (0, 150, 70))
EPITHELIUM_RGB = np.array([196, 128, 184], np.float32)
LUMEN_RGB = np.array([244, 232, 238], np.float32)
NUCLEUS_RGB = np.array([92, 48, 128], np.float32)
VERTICES = 72


@dataclass(frozen=True)
class GlandConfig:
    """What to generate: image size (px), gland radius range (px), how many glands, touching pairs."""

    width: int = 512
    height: int = 512
    seed: int = 0
    radius: tuple[float, float] = (16.0, 30.0)
    count: int = 12
    touching: float = 0.3       # fraction of glands placed next to an earlier one, 1–3 px apart
    lumen: tuple[float, float] = (0.35, 0.6)  # lumen size relative to the gland
    mpp: float = 1.0

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 32:
            raise ValueError(f"image size must be at least 32x32 pixels, got {self.width}x{self.height}")
        if not 3 <= self.radius[0] <= self.radius[1]:
            raise ValueError(f"gland radius must be a range (min, max) with min ≥ 3, got {self.radius}")


@dataclass
class Gland:
    """One gland: its outline (lumen included) and its lumen, in image pixels."""

    outline: Polygon
    lumen: Polygon


@dataclass
class Glands:
    """A generated image of glands with exact truth."""

    config: GlandConfig
    glands: list[Gland]
    rgb: np.ndarray = field(repr=False)
    instances: np.ndarray = field(repr=False)   # (H, W) int32, gland k → k + 1
    class_map: np.ndarray = field(repr=False)   # (H, W) uint8: 0 stroma, 1 epithelium, 2 lumen

    def truth_objects(self, object_type: str = "annotation") -> list[PathObject]:
        """Every gland as a `Gland` object (its generating outline, lumen included)."""
        klass = PathClass.of(*GLAND_CLASS)
        return [PathObject(g.outline, object_type, klass) for g in self.glands]

    def region_objects(self) -> list[PathObject]:
        """Epithelium rings and lumens as classified objects (for semantic training)."""
        epithelium, lumen = (PathClass.of(name, color) for name, color in GLAND_CLASSES)
        objects = []
        for g in self.glands:
            objects.append(PathObject(g.outline.difference(g.lumen), "annotation", epithelium))
            objects.append(PathObject(g.lumen, "annotation", lumen))
        return objects


def _blob(cx: float, cy: float, radius: float, rng: np.random.Generator, roughness: float = 0.08) -> Polygon:
    theta = np.linspace(0, 2 * np.pi, VERTICES, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 5):
        r += rng.uniform(0, roughness) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    aspect = rng.uniform(0.75, 1.0)
    angle = rng.uniform(0, np.pi)
    u, v = radius * r * np.cos(theta), radius * r * aspect * np.sin(theta)
    ca, sa = math.cos(angle), math.sin(angle)
    return Polygon(np.column_stack([cx + u * ca - v * sa, cy + u * sa + v * ca]))


def _place(config: GlandConfig, rng: np.random.Generator) -> list[Gland]:
    glands: list[Gland] = []
    margin = 2.0
    for _ in range(config.count * 60):
        if len(glands) >= config.count:
            break
        radius = rng.uniform(*config.radius)
        if glands and rng.uniform() < config.touching:   # next to an earlier gland, 1–3 px apart
            anchor = glands[int(rng.integers(len(glands)))].outline
            direction = rng.uniform(0, 2 * np.pi)
            reach = math.sqrt(anchor.area / math.pi) + radius
            cx = anchor.centroid.x + reach * math.cos(direction)
            cy = anchor.centroid.y + reach * math.sin(direction)
            outline = _blob(cx, cy, radius, rng)
            gap = outline.distance(anchor)
            if gap > 0 or outline.intersects(anchor):   # slide along the direction until 1–3 px apart
                target = rng.uniform(1.0, 3.0)
                for _step in range(12):
                    distance = outline.distance(anchor)
                    if outline.intersects(anchor):
                        shift = 2.0
                    elif abs(distance - target) < 0.5:
                        break
                    else:
                        shift = target - distance
                    outline = shapely.affinity.translate(outline, shift * math.cos(direction),
                                                         shift * math.sin(direction))
        else:
            cx = rng.uniform(radius + margin, config.width - radius - margin)
            cy = rng.uniform(radius + margin, config.height - radius - margin)
            outline = _blob(cx, cy, radius, rng)
        x0, y0, x1, y1 = outline.bounds
        if x0 < margin or y0 < margin or x1 > config.width - margin or y1 > config.height - margin:
            continue
        if any(outline.distance(g.outline) < 1.0 for g in glands):
            continue
        scale = rng.uniform(*config.lumen)
        centre = outline.centroid
        lumen = shapely.affinity.scale(_blob(centre.x, centre.y, radius, rng, 0.15), scale, scale, origin=centre)
        lumen = lumen.intersection(outline.buffer(-3.0))
        if lumen.is_empty or not isinstance(lumen, Polygon):
            continue
        glands.append(Gland(outline, lumen))
    return glands


def build_glands(config: GlandConfig) -> Glands:
    """Place and render the glands for `config` (deterministic for its seed)."""
    rng = np.random.default_rng([config.seed, 0x61A])
    glands = _place(config, rng)
    h, w = config.height, config.width
    instances = np.zeros((h, w), np.int32)
    class_map = np.zeros((h, w), np.uint8)
    for k, gland in enumerate(glands, start=1):
        outline = rasterize(gland.outline, (h, w))
        lumen = rasterize(gland.lumen, (h, w)) & outline
        instances[outline] = k
        class_map[outline] = 1
        class_map[lumen] = 2
    rgb = _render(config, glands, class_map, rng)
    return Glands(config, glands, rgb, instances, class_map)


def _render(config: GlandConfig, glands: list[Gland], class_map: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = class_map.shape
    rows, cols = np.arange(h) % 512, np.arange(w) % 512
    fibres = periodic_texture(config.seed, 7.0, 1.0)[rows][:, cols]
    grain = periodic_texture(config.seed + 1, 1.2, 1.2)[rows][:, cols]
    rgb = np.empty((h, w, 3), np.float32)
    rgb[:] = STROMA_RGB
    rgb += (fibres * 9.0 + grain * 4.0)[..., None] * np.array([1.0, 1.3, 0.8], np.float32)
    epithelium = class_map == 1
    rgb[epithelium] = EPITHELIUM_RGB + (grain[epithelium] * 6.0)[:, None]
    lumen = class_map == 2
    rgb[lumen] = LUMEN_RGB + (grain[lumen] * 3.0)[:, None]
    canvas = np.ascontiguousarray(rgb)
    for gland in glands:   # a row of nuclei near the basal (outer) side of the epithelium
        ring = gland.outline.exterior
        inner = gland.lumen.exterior
        count = max(6, int(ring.length / 6.0))
        for t in (np.arange(count) + rng.uniform(0, 1)) / count:
            outer_point = ring.interpolate(t, normalized=True)
            inner_point = inner.interpolate(t, normalized=True)
            depth = rng.uniform(0.25, 0.4)
            x = outer_point.x + (inner_point.x - outer_point.x) * depth
            y = outer_point.y + (inner_point.y - outer_point.y) * depth
            angle = math.degrees(math.atan2(inner_point.y - outer_point.y, inner_point.x - outer_point.x))
            colour = tuple(float(c) for c in NUCLEUS_RGB * rng.uniform(0.9, 1.1))
            cv2.ellipse(canvas, ((x - 0.5, y - 0.5), (rng.uniform(3.5, 5.0), rng.uniform(2.0, 2.8)), angle),
                        colour, -1, cv2.LINE_AA)
    stroma = class_map == 0
    n_stromal = int(stroma.mean() * w * h / 900)
    for _ in range(n_stromal):   # elongated stromal nuclei
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        if not stroma[min(int(y), h - 1), min(int(x), w - 1)]:
            continue
        colour = tuple(float(c) for c in NUCLEUS_RGB * rng.uniform(1.0, 1.2))
        cv2.ellipse(canvas, ((x, y), (rng.uniform(4.0, 6.0), rng.uniform(1.5, 2.2)), rng.uniform(0, 180)),
                    colour, -1, cv2.LINE_AA)
    canvas[lumen] = np.maximum(canvas[lumen], LUMEN_RGB - 8)   # nuclei never spill into the lumen
    return np.clip(cv2.GaussianBlur(canvas, (0, 0), 0.6) + 0.5, 0, 255).astype(np.uint8)


def gland_dataset(folder: str | Path, images: int, size: int = 192, seed: int = 0, **config: Any) -> Path:
    """`images` generated gland images of `size`² pixels as PNGs + a COCO JSON (one `Gland` polygon per gland);
    the JSON's path. Extra keyword arguments go to `GlandConfig`."""
    from cellbridge.synth.smear import write_synthetic_coco

    samples = []
    for i in range(images):
        glands = build_glands(GlandConfig(width=size, height=size, seed=seed * 100_003 + i, **config))
        samples.append((f"glands-{i:03d}", glands.rgb, glands.truth_objects()))
    return write_synthetic_coco(folder, samples, [GLAND_CLASS[0]], {GLAND_CLASS[0]: GLAND_CLASS[1]})
