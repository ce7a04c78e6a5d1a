"""Synthetic blood-smear-like scenes with several cell classes and exact masks (smears composed from
single-cell crops).

Each cell is drawn first as a crop of its own (`cell_crop`: colour, and the exact mask of the pixels whose centres
lie inside its outline), then pasted without overlap onto a pale plasma background. The class map holds 0 for
background and `k + 1` for a pixel of class `SMEAR_CLASSES[k]`; the instance label image holds one id per cell.
Everything follows from the config's seed.

    smear = build_smear(SmearConfig(width=96, height=96, seed=3))
    smear.rgb, smear.class_map, smear.instances, smear.instance_classes
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cellbridge.datasets.coco import write_coco
from cellbridge.datasets.records import Annotation, Dataset, ImageRecord
from cellbridge.geometry import label_polygons
from cellbridge.objects import RGB, PathClass, PathObject
from cellbridge.synth.render import periodic_texture

PLASMA_RGB = (236, 226, 222)


@dataclass(frozen=True)
class CellClass:
    """How one cell type looks: radius in µm, cytoplasm and nucleus colours, nucleus shape, share of cells."""

    name: str
    radius_um: tuple[float, float]
    cytoplasm: RGB
    nucleus: RGB | None
    nucleus_shape: str      # "none", "round", "lobed", "kidney", "bilobed"
    granules: float         # strength of a granular cytoplasm texture
    share: float            # fraction of cells by count
    color: RGB              # the class colour shown in QuPath


SMEAR_CLASSES: tuple[CellClass, ...] = (
    CellClass("Erythrocyte", (3.4, 4.0), (214, 118, 124), None, "none", 0.0, 0.58, (220, 60, 60)),
    CellClass("Platelet", (0.9, 1.4), (150, 92, 172), None, "none", 0.3, 0.14, (120, 60, 200)),
    CellClass("Neutrophil", (5.2, 6.2), (226, 204, 218), (104, 48, 138), "lobed", 0.1, 0.08, (60, 140, 220)),
    CellClass("Lymphocyte", (3.6, 4.4), (170, 186, 228), (76, 38, 118), "round", 0.0, 0.08, (40, 180, 90)),
    CellClass("Monocyte", (6.4, 7.6), (190, 192, 214), (126, 76, 156), "kidney", 0.05, 0.06, (230, 160, 40)),
    CellClass("Eosinophil", (5.4, 6.2), (238, 150, 104), (112, 58, 140), "bilobed", 0.45, 0.06, (240, 110, 30)),
)


@dataclass(frozen=True)
class SmearConfig:
    """What to generate: size in pixels, pixel size (µm), cell density (fraction of the area covered by cells)."""

    width: int = 256
    height: int = 256
    seed: int = 0
    mpp: float = 0.5
    coverage: float = 0.45
    classes: tuple[CellClass, ...] = SMEAR_CLASSES

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"smear size must be at least 16x16 pixels, got {self.width}x{self.height}")
        if not 0 < self.coverage < 0.9:
            raise ValueError(f"coverage must be within (0, 0.9), got {self.coverage}")
        if not self.mpp > 0:
            raise ValueError(f"pixel size must be positive, got {self.mpp}")


@dataclass
class CellCrop:
    """One cell drawn alone: RGB float (h, w, 3), its exact mask and the crop's centre offset."""

    rgb: np.ndarray
    mask: np.ndarray
    centre: tuple[float, float]


@dataclass
class Smear:
    """A generated smear with exact truth."""

    config: SmearConfig
    rgb: np.ndarray              # (H, W, 3) uint8
    class_map: np.ndarray        # (H, W) uint8: 0 background, k + 1 for class k
    instances: np.ndarray        # (H, W) int32: 0 background, one id per cell
    instance_classes: dict[int, int]  # instance id → class index

    @property
    def class_names(self) -> list[str]:
        """Class names, index k ↔ class map value k + 1."""
        return [c.name for c in self.config.classes]

    def truth_objects(self, object_type: str = "detection") -> list[PathObject]:
        """Every cell as a classified object (pixel-edge outline)."""
        classes = [PathClass.of(c.name, c.color) for c in self.config.classes]
        return [PathObject(polygon, object_type, classes[self.instance_classes[label]])
                for label, polygon in label_polygons(self.instances).items()]


def _outline_radius(theta: np.ndarray, radius: float, harmonics: np.ndarray) -> np.ndarray:
    """A slightly irregular radius r(θ) = R (1 + Σ a_k cos(kθ + φ_k))."""
    out = np.ones_like(theta)
    for k, (amplitude, phase) in enumerate(harmonics, start=2):
        out += amplitude * np.cos(k * theta + phase)
    return radius * out


def cell_crop(klass: CellClass, rng: np.random.Generator, mpp: float) -> CellCrop:
    """Draw one cell of `klass` in a crop of its own (exact mask: pixel centres inside the outline)."""
    radius = rng.uniform(*klass.radius_um) / mpp
    size = int(math.ceil(2 * radius * 1.12)) + 3
    centre = (size / 2 + rng.uniform(-0.5, 0.5), size / 2 + rng.uniform(-0.5, 0.5))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - centre[0], yy - centre[1]
    distance = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    harmonics = np.column_stack([rng.uniform(0, 0.05, 3), rng.uniform(0, 2 * np.pi, 3)])
    edge = _outline_radius(theta, radius, harmonics)
    mask = distance <= edge
    q = distance / np.maximum(edge, 1e-6)   # 0 at the centre, 1 on the outline
    rgb = np.empty((size, size, 3), np.float32)
    rgb[:] = klass.cytoplasm
    if klass.name == "Erythrocyte":   # central pallor
        pallor = np.clip(1.0 - q / 0.55, 0.0, 1.0)[..., None]
        rgb += (np.array([236, 196, 196], np.float32) - rgb) * pallor * 0.8
    if klass.granules > 0:
        grain = rng.standard_normal((size, size)).astype(np.float32)
        grain = cv2.GaussianBlur(grain, (0, 0), 0.7)
        rgb *= (1.0 + klass.granules * 0.25 * grain)[..., None]
    if klass.nucleus is not None:
        nucleus = _nucleus_mask(klass.nucleus_shape, dx, dy, radius, rng)
        rgb[nucleus] = np.array(klass.nucleus, np.float32) * rng.uniform(0.92, 1.08)
    rgb *= 1.0 - 0.12 * np.clip(q - 0.8, 0.0, 1.0)[..., None] / 0.2   # a darker rim
    return CellCrop(rgb, mask, centre)


def _nucleus_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float,
                  rng: np.random.Generator) -> np.ndarray:
    """The nucleus pixels inside a cell crop (offsets dx, dy from the cell centre)."""
    angle = rng.uniform(0, 2 * np.pi)
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = dx * ca + dy * sa, -dx * sa + dy * ca
    if shape == "round":
        return np.hypot(u, v) <= radius * 0.78
    if shape == "kidney":
        body = (u / (radius * 0.62)) ** 2 + (v / (radius * 0.45)) ** 2 <= 1
        notch = np.hypot(u, v - radius * 0.55) <= radius * 0.32
        return body & ~notch
    lobes = 2 if shape == "bilobed" else int(rng.integers(3, 5))
    found = np.zeros(dx.shape, bool)
    for k in range(lobes):
        t = (k - (lobes - 1) / 2) * (1.9 / lobes)
        cx, cy = radius * 0.45 * math.sin(t), -radius * 0.25 * math.cos(t) + radius * 0.1
        found |= np.hypot(u - cx, v - cy) <= radius * (0.3 if lobes > 2 else 0.36)
    return found


def build_smear(config: SmearConfig) -> Smear:
    """Compose a smear from single-cell crops (deterministic for the config's seed)."""
    rng = np.random.default_rng([config.seed, 0x5EA])
    h, w = config.height, config.width
    grain = periodic_texture(config.seed, 1.2, 1.2)[np.arange(h) % 512][:, np.arange(w) % 512]
    canvas = np.empty((h, w, 3), np.float32)
    canvas[:] = PLASMA_RGB
    canvas += (grain * 2.0)[..., None]
    class_map = np.zeros((h, w), np.uint8)
    instances = np.zeros((h, w), np.int32)
    occupied = np.zeros((h, w), bool)
    instance_classes: dict[int, int] = {}
    shares = np.array([c.share for c in config.classes], float)
    mean_area = float(np.sum(shares / shares.sum() * [math.pi * (np.mean(c.radius_um) / config.mpp) ** 2
                                                      for c in config.classes]))
    target = max(1, int(round(config.coverage * w * h / mean_area)))
    # larger cells first, so that the small ones fill the gaps
    labels = rng.choice(len(config.classes), size=target, p=shares / shares.sum())
    order = sorted(range(target), key=lambda i: -config.classes[labels[i]].radius_um[1])
    for i in order:
        label = int(labels[i])
        crop = cell_crop(config.classes[label], rng, config.mpp)
        ch, cw = crop.mask.shape
        halo = cv2.dilate(crop.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        for _ in range(30):
            # a cell may be cut by the image border, as in a field of view
            x0 = int(rng.integers(-cw // 3, w - 2 * cw // 3))
            y0 = int(rng.integers(-ch // 3, h - 2 * ch // 3))
            ys, xs = slice(max(y0, 0), min(y0 + ch, h)), slice(max(x0, 0), min(x0 + cw, w))
            crop_ys, crop_xs = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
            if (occupied[ys, xs] & halo[crop_ys, crop_xs]).any():
                continue
            inside = crop.mask[crop_ys, crop_xs]
            if not inside.any():
                break
            instance = len(instance_classes) + 1
            canvas[ys, xs][inside] = crop.rgb[crop_ys, crop_xs][inside]
            class_map[ys, xs][inside] = label + 1
            instances[ys, xs][inside] = instance
            occupied[ys, xs] |= inside
            instance_classes[instance] = label
            break
    rgb = np.clip(cv2.GaussianBlur(canvas, (0, 0), 0.6) + 0.5, 0, 255).astype(np.uint8)
    return Smear(config, rgb, class_map, instances, instance_classes)


def write_synthetic_coco(folder: str | Path, samples: list[tuple[str, np.ndarray, list[PathObject]]],
                         classes: list[str], colors: dict[str, RGB],
                         training_areas: dict[str, object] | None = None) -> Path:
    """Write generated images (PNG) and their objects as a COCO JSON, as `cellbridge export-coco` would.

    `samples`: (name, RGB image, objects with polygons in image pixels); `training_areas`: name → polygon for
    partially annotated images. Returns the path of `annotations.json`.
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for name, rgb, objects in samples:
        path = folder / "images" / f"{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        annotations = [Annotation(o.class_name, tuple(o.geometry.bounds), o.geometry) for o in objects
                       if o.class_name is not None]
        area = (training_areas or {}).get(name)
        records.append(ImageRecord(path, rgb.shape[1], rgb.shape[0], annotations, area, name))
    json_path = folder / "annotations.json"
    write_coco(Dataset(records, list(classes), dict(colors)), json_path)
    return json_path


def smear_dataset(folder: str | Path, images: int, size: int = 96, seed: int = 0, mpp: float = 0.5) -> Path:
    """`images` generated smears of `size`² pixels as PNGs + a COCO JSON (cells as polygons); the JSON's path."""
    samples = []
    for i in range(images):
        smear = build_smear(SmearConfig(width=size, height=size, seed=seed * 100_003 + i, mpp=mpp))
        samples.append((f"smear-{i:03d}", smear.rgb, smear.truth_objects()))
    return write_synthetic_coco(folder, samples, [c.name for c in SMEAR_CLASSES],
                                {c.name: c.color for c in SMEAR_CLASSES})
