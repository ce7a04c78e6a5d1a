"""A synthetic H&E or IHC scene: tissue blobs and non-overlapping elliptical nuclei, fully determined by a config.

The scene is built once (tissue field + nucleus list); pixels are rendered from it region by region
(`cellbridge.synth.render`), so any region renders the same wherever it is cut from.

`stain="ihc-dab"` keeps the same tissue and nuclei (same seed, same places and shapes) and gives each nucleus a
known DAB intensity class, Negative / 1+ / 2+ / 3+, drawn with `ihc_fractions`, and a DAB optical density inside
that class's band (`IHC_DAB_LEVELS`), chosen so that QuPath's default thresholds (0.2 / 0.4 / 0.6 on the nucleus
mean DAB OD) recover the class with a margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from shapely.geometry import Polygon

FIELD_CELL = 32          # level-0 pixels per tissue-field cell
INDEX_CELL = 64          # level-0 pixels per nucleus index bucket (> largest nucleus diameter)
ELLIPSE_VERTICES = 32


@dataclass(frozen=True)
class NucleusClass:
    """How one class of nuclei looks: semi-axes in µm, colour (RGB) and chromatin texture strength.

    `vesicular` > 0 draws open chromatin: a pale interior (that share of the way to pale lilac), coarse chromatin
    clumps, a dark rim along the nuclear membrane and a nucleolus, as in many carcinoma nuclei."""

    name: str
    major_um: tuple[float, float]
    minor_um: tuple[float, float]
    rgb: tuple[int, int, int]
    texture: float
    share: float
    cluster: float          # fraction of this class placed in touching clusters
    vesicular: float = 0.0


HE_CLASSES: tuple[NucleusClass, ...] = (
    NucleusClass("Tumor", (3.6, 5.4), (2.6, 3.8), (118, 72, 150), 0.30, 0.5, 0.7),
    NucleusClass("Immune cells", (2.0, 2.6), (1.8, 2.4), (62, 38, 110), 0.08, 0.3, 0.4),
    NucleusClass("Stroma", (3.8, 5.2), (1.2, 1.7), (92, 52, 128), 0.15, 0.2, 0.0),
)

# Carcinoma-like H&E: large, pale, vesicular tumour nuclei (open chromatin, dark rim, nucleolus) among small dark
# lymphocytes and thin stromal nuclei; the same class names as HE_CLASSES.
HE_VESICULAR_CLASSES: tuple[NucleusClass, ...] = (
    NucleusClass("Tumor", (4.6, 7.0), (3.4, 5.2), (104, 66, 146), 0.45, 0.55, 0.7, vesicular=0.8),
    NucleusClass("Immune cells", (2.0, 2.6), (1.8, 2.4), (62, 38, 110), 0.08, 0.3, 0.4),
    NucleusClass("Stroma", (3.8, 5.2), (1.2, 1.7), (92, 52, 128), 0.15, 0.15, 0.0),
)
NUCLEUS_LOOKS = {"solid": HE_CLASSES, "vesicular": HE_VESICULAR_CLASSES}

STAINS = ("he", "ihc-dab")
IHC_CLASSES: tuple[str, ...] = ("Negative", "1+", "2+", "3+")  # QuPath's intensity class names
# DAB OD of a nucleus (mean over its pixels, in the generator's own DAB units) per class: inside QuPath's default
# bands [0, 0.2), [0.2, 0.4), [0.4, 0.6), [0.6, ∞) with a margin for anti-aliased edges, texture and JPEG.
IHC_DAB_LEVELS: tuple[tuple[float, float], ...] = ((0.0, 0.06), (0.27, 0.33), (0.47, 0.53), (0.72, 0.95))
# The generator's stain vectors (unit RGB optical densities): a few degrees off QuPath's defaults
# (0.65, 0.70, 0.29) and (0.27, 0.57, 0.78), as a real scanner's are, so that stain estimation has work to do.
IHC_HEMATOXYLIN = (0.57, 0.75, 0.33)
IHC_DAB = (0.33, 0.58, 0.75)

Vector3 = tuple[float, float, float]


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Sizes are level-0 pixels; nucleus sizes scale with `mpp` (µm per pixel)."""

    width: int = 8192
    height: int = 8192
    tissue_fraction: float = 0.2
    seed: int = 0
    mpp: float = 0.5
    nuclei_per_mm2: float = 4000.0
    classes: tuple[NucleusClass, ...] = HE_CLASSES
    stain: str = "he"                 # "he" (H&E) or "ihc-dab" (hematoxylin counterstain + DAB)
    ihc_fractions: tuple[float, float, float, float] = (0.6, 0.15, 0.15, 0.1)  # Negative, 1+, 2+, 3+
    ihc_vectors: tuple[Vector3, Vector3] = (IHC_HEMATOXYLIN, IHC_DAB)        # hematoxylin, DAB OD vectors
    ihc_cytoplasm_dab: float = 0.0    # DAB OD of the cytoplasm around every nucleus (nuclei keep their own class)
    ihc_background_dab: float = 0.01  # DAB OD of the stroma (non-specific background)

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64:
            raise ValueError(f"slide size must be at least 64x64 pixels, got {self.width}x{self.height}")
        if not 0.0 <= self.tissue_fraction <= 1.0:
            raise ValueError(f"tissue fraction must be within [0, 1], got {self.tissue_fraction}")
        if not self.mpp > 0:
            raise ValueError(f"pixel size must be positive, got {self.mpp}")
        if self.stain not in STAINS:
            raise ValueError(f"unknown stain {self.stain!r}; expected one of {', '.join(STAINS)}")
        fractions = np.asarray(self.ihc_fractions, float)
        if fractions.shape != (4,) or not np.all(np.isfinite(fractions)) or fractions.min() < 0 or fractions.sum() <= 0:
            raise ValueError("IHC fractions must be 4 non-negative numbers (Negative, 1+, 2+, 3+) with a positive "
                             f"sum, got {self.ihc_fractions}")
        for name in ("ihc_cytoplasm_dab", "ihc_background_dab"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 2.0):
                raise ValueError(f"{name.removeprefix('ihc_').replace('_', ' ')} must be an OD within [0, 2], "
                                 f"got {value}")
        vectors = np.asarray(self.ihc_vectors, float)
        if vectors.shape != (2, 3) or not np.all(np.isfinite(vectors)) or vectors.min() < 0:
            raise ValueError(f"IHC stain vectors must be two non-negative RGB OD triples, got {self.ihc_vectors}")
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        if np.linalg.norm(np.cross(unit[0], unit[1])) < 0.05:
            raise ValueError(f"IHC stain vectors must not be (nearly) parallel, got {self.ihc_vectors}")

    @property
    def ihc(self) -> bool:
        """True for an IHC (hematoxylin + DAB) slide."""
        return self.stain == "ihc-dab"


@dataclass
class Scene:
    """The built scene: a coarse tissue field with its threshold, and the nuclei as arrays (one row each)."""

    config: SynthConfig
    tissue_field: np.ndarray          # float32, one value per FIELD_CELL² block
    threshold: float                  # tissue where the interpolated field is >= threshold
    centres: np.ndarray               # (n, 2) float64 x, y in level-0 pixels
    axes: np.ndarray                  # (n, 2) semi-major, semi-minor in pixels
    angles: np.ndarray                # (n,) radians
    labels: np.ndarray                # (n,) int index into config.classes
    intensity: np.ndarray             # (n,) stain strength multiplier around 1
    buckets: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    dab_class: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # (n,) IHC: index into IHC_CLASSES
    dab_level: np.ndarray = field(default_factory=lambda: np.empty(0))            # (n,) IHC: true DAB OD

    def __len__(self) -> int:
        return len(self.centres)

    @property
    def tissue_fraction(self) -> float:
        """The tissue fraction of the coarse field (the value the generator aimed at)."""
        return float((self.tissue_field >= self.threshold).mean())

    def polygon(self, i: int) -> Polygon:
        """Nucleus `i` as the polygon the renderer fills (pixel centres inside are nucleus pixels)."""
        return ellipse_polygon(self.centres[i], self.axes[i], self.angles[i])

    @property
    def class_names(self) -> tuple[str, ...]:
        """The truth class names: the intensity classes on IHC, else the nucleus classes of the config."""
        return IHC_CLASSES if self.config.ihc else tuple(c.name for c in self.config.classes)

    @property
    def truth_labels(self) -> np.ndarray:
        """Per nucleus, its index into `class_names`."""
        return self.dab_class if self.config.ihc else self.labels

    def class_name(self, i: int) -> str:
        """The truth class name of nucleus `i` (its intensity class on IHC, e.g. "2+")."""
        return self.class_names[int(self.truth_labels[i])]

    def morphology_name(self, i: int) -> str:
        """The nucleus class (shape and size) of nucleus `i`, e.g. "Tumor", whatever the stain."""
        return self.config.classes[int(self.labels[i])].name

    def nuclei_in_region(self, x: float, y: float, w: float, h: float, reach: float = 1.0) -> np.ndarray:
        """Indices of nuclei whose bounding circle (radius scaled by `reach`, e.g. to include a cytoplasm ring)
        meets the level-0 rectangle, ascending."""
        found: set[int] = set()
        for bx in range(int(x // INDEX_CELL) - 1, int((x + w) // INDEX_CELL) + 1):
            for by in range(int(y // INDEX_CELL) - 1, int((y + h) // INDEX_CELL) + 1):
                found.update(self.buckets.get((bx, by), ()))
        if not found:
            return np.empty(0, dtype=np.int64)
        idx = np.fromiter(sorted(found), dtype=np.int64)
        cx, cy = self.centres[idx, 0], self.centres[idx, 1]
        r = self.axes[idx, 0] * reach + 1.0
        if r.max() >= INDEX_CELL:
            raise ValueError(f"nuclei reaching {r.max():.0f} px do not fit the {INDEX_CELL} px index cells")
        hit = (cx + r > x) & (cx - r < x + w) & (cy + r > y) & (cy - r < y + h)
        return idx[hit]

    def tissue_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Interpolated tissue field at level-0 points (pixel-centre coordinates)."""
        gx = np.clip(xs / FIELD_CELL - 0.5, 0, self.tissue_field.shape[1] - 1)
        gy = np.clip(ys / FIELD_CELL - 0.5, 0, self.tissue_field.shape[0] - 1)
        x0, y0 = np.floor(gx).astype(int), np.floor(gy).astype(int)
        x1 = np.minimum(x0 + 1, self.tissue_field.shape[1] - 1)
        y1 = np.minimum(y0 + 1, self.tissue_field.shape[0] - 1)
        fx, fy = gx - x0, gy - y0
        f = self.tissue_field
        return ((f[y0, x0] * (1 - fx) + f[y0, x1] * fx) * (1 - fy)
                + (f[y1, x0] * (1 - fx) + f[y1, x1] * fx) * fy)


def ellipse_polygon(centre: np.ndarray, axes: np.ndarray, angle: float,
                    vertices: int = ELLIPSE_VERTICES) -> Polygon:
    """An ellipse as a polygon with `vertices` points."""
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = axes[0] * np.cos(t), axes[1] * np.sin(t)
    return Polygon(np.column_stack([centre[0] + u * ca - v * sa, centre[1] + u * sa + v * ca]))


def build_scene(config: SynthConfig) -> Scene:
    """Build the tissue field and place the nuclei for `config` (deterministic for its seed)."""
    rng = np.random.default_rng(config.seed)
    tissue_field = _tissue_field(config, rng)
    threshold = _threshold_for_fraction(tissue_field, config.tissue_fraction)
    scene = Scene(config, tissue_field, threshold, np.empty((0, 2)), np.empty((0, 2)), np.empty(0),
                  np.empty(0, dtype=np.int64), np.empty(0))
    if config.tissue_fraction > 0:
        _place_nuclei(scene, rng)
    if config.ihc:
        _assign_dab(scene)
    return scene


def _assign_dab(scene: Scene) -> None:
    """Draw each nucleus's intensity class and DAB level from a generator of its own, so that the nuclei (and the
    H&E slide of the same seed) stay exactly as they are without IHC."""
    config, n = scene.config, len(scene)
    rng = np.random.default_rng([config.seed, 0x1AC])
    fractions = np.asarray(config.ihc_fractions, float)
    scene.dab_class = rng.choice(len(IHC_CLASSES), size=n, p=fractions / fractions.sum()).astype(np.int64)
    bands = np.asarray(IHC_DAB_LEVELS, float)[scene.dab_class]
    scene.dab_level = rng.uniform(bands[:, 0], bands[:, 1]) if n else np.empty(0)


def _tissue_field(config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """A smooth field whose upper quantile forms a few compact, irregular blobs."""
    gw, gh = math.ceil(config.width / FIELD_CELL), math.ceil(config.height / FIELD_CELL)
    tissue_cells = max(config.tissue_fraction * gw * gh, 1.0)
    n_blobs = int(np.clip(round(tissue_cells / 6000), 1, 8))
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    field_ = np.zeros((gh, gw), np.float32)
    for _ in range(n_blobs):
        sigma = math.sqrt(tissue_cells / n_blobs / math.pi) * rng.uniform(0.8, 1.2)
        cx, cy = rng.uniform(0.2, 0.8) * gw, rng.uniform(0.2, 0.8) * gh
        sx, sy = sigma * rng.uniform(0.7, 1.3), sigma * rng.uniform(0.7, 1.3)
        field_ += np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2) / 2)
    noise = rng.standard_normal((gh, gw)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=max(2.0, min(gw, gh) / 40))
    noise /= noise.std() + 1e-6
    return field_ + 0.12 * noise


def _threshold_for_fraction(tissue_field: np.ndarray, fraction: float) -> float:
    if fraction >= 1.0:
        return -math.inf
    if fraction <= 0.0:
        return math.inf
    return float(np.quantile(tissue_field, 1.0 - fraction))


def _place_nuclei(scene: Scene, rng: np.random.Generator) -> None:
    """Place non-overlapping nuclei inside tissue: scattered ones and touching clusters, per class."""
    config = scene.config
    tissue_area_mm2 = scene.tissue_fraction * config.width * config.height * (config.mpp / 1000) ** 2
    target = int(round(config.nuclei_per_mm2 * tissue_area_mm2))
    shares = np.array([c.share for c in config.classes], float)
    counts = np.floor(shares / shares.sum() * target).astype(int)
    placer = _Placer(scene, rng)
    for label, klass in enumerate(config.classes):
        n_cluster = int(counts[label] * klass.cluster)
        placer.place_scattered(label, counts[label] - n_cluster)
        placer.place_clusters(label, n_cluster)
    placer.finish()


class _Placer:
    """Rejection sampling of ellipses with a bucket grid so that no two nuclei overlap."""

    def __init__(self, scene: Scene, rng: np.random.Generator) -> None:
        self.scene, self.rng = scene, rng
        self.config = scene.config
        self.centres: list[tuple[float, float]] = []
        self.axes: list[tuple[float, float]] = []
        self.angles: list[float] = []
        self.labels: list[int] = []
        self.polygons: list[Polygon] = []
        self.buckets: dict[tuple[int, int], list[int]] = {}

    def _sample_shape(self, label: int) -> tuple[float, float, float]:
        klass = self.config.classes[label]
        a = self.rng.uniform(*klass.major_um) / self.config.mpp
        b = min(a, self.rng.uniform(*klass.minor_um) / self.config.mpp)
        return a, b, self.rng.uniform(0, np.pi)

    def _fits(self, cx: float, cy: float, a: float, b: float, angle: float) -> Polygon | None:
        margin = a + 2
        if not (margin <= cx <= self.config.width - margin and margin <= cy <= self.config.height - margin):
            return None
        if self.scene.tissue_at(np.array([cx]), np.array([cy]))[0] < self.scene.threshold:
            return None
        bx, by = int(cx // INDEX_CELL), int(cy // INDEX_CELL)
        polygon = None
        for nx in (bx - 1, bx, bx + 1):
            for ny in (by - 1, by, by + 1):
                for j in self.buckets.get((nx, ny), ()):
                    ox, oy = self.centres[j]
                    gap = math.hypot(cx - ox, cy - oy) - 1.0   # one pixel apart: distinct even when touching
                    if gap >= a + self.axes[j][0]:
                        continue
                    if gap < b + self.axes[j][1]:
                        return None
                    if polygon is None:
                        polygon = ellipse_polygon(np.array([cx, cy]), np.array([a, b]), angle)
                    if polygon.distance(self.polygons[j]) < 1.0:
                        return None
        return polygon if polygon is not None else ellipse_polygon(np.array([cx, cy]), np.array([a, b]), angle)

    def _add(self, cx: float, cy: float, a: float, b: float, angle: float, label: int, polygon: Polygon) -> None:
        index = len(self.centres)
        self.centres.append((cx, cy))
        self.axes.append((a, b))
        self.angles.append(angle)
        self.labels.append(label)
        self.polygons.append(polygon)
        self.buckets.setdefault((int(cx // INDEX_CELL), int(cy // INDEX_CELL)), []).append(index)

    def _random_tissue_points(self, n: int) -> np.ndarray:
        """Uniform points in tissue by rejection against the field, in batches."""
        points: list[np.ndarray] = []
        have = 0
        for _ in range(200):
            if have >= n:
                break
            batch = self.rng.uniform((0, 0), (self.config.width, self.config.height), size=(max(4 * n, 64), 2))
            keep = batch[self.scene.tissue_at(batch[:, 0], batch[:, 1]) >= self.scene.threshold]
            points.append(keep)
            have += len(keep)
        return np.concatenate(points)[:n] if points else np.empty((0, 2))

    def place_scattered(self, label: int, n: int) -> None:
        for cx, cy in self._random_tissue_points(n):
            a, b, angle = self._sample_shape(label)
            if label == len(self.config.classes) - 1 and self.config.classes[label].cluster == 0:
                angle = _flow_angle(cx, cy, self.config.seed)
            polygon = self._fits(cx, cy, a, b, angle)
            if polygon is not None:
                self._add(cx, cy, a, b, angle, label, polygon)

    def place_clusters(self, label: int, n: int) -> None:
        """Grow clusters of 5-30 nuclei, each new one placed touching a random member."""
        placed = 0
        seeds = self._random_tissue_points(max(1, n // 8))
        for sx, sy in seeds:
            if placed >= n:
                break
            members: list[int] = []
            a, b, angle = self._sample_shape(label)
            polygon = self._fits(sx, sy, a, b, angle)
            if polygon is None:
                continue
            self._add(sx, sy, a, b, angle, label, polygon)
            members.append(len(self.centres) - 1)
            placed += 1
            size = int(self.rng.integers(5, 30))
            for _ in range(size * 4):
                if len(members) >= size or placed >= n:
                    break
                anchor = members[int(self.rng.integers(len(members)))]
                ax, ay = self.centres[anchor]
                a, b, angle = self._sample_shape(label)
                direction = self.rng.uniform(0, 2 * np.pi)
                distance = (self.axes[anchor][1] + b) * self.rng.uniform(0.95, 1.35) + 1.0
                cx, cy = ax + distance * math.cos(direction), ay + distance * math.sin(direction)
                polygon = self._fits(cx, cy, a, b, angle)
                if polygon is not None:
                    self._add(cx, cy, a, b, angle, label, polygon)
                    members.append(len(self.centres) - 1)
                    placed += 1

    def finish(self) -> None:
        scene, n = self.scene, len(self.centres)
        scene.centres = np.array(self.centres, float).reshape(n, 2)
        scene.axes = np.array(self.axes, float).reshape(n, 2)
        scene.angles = np.array(self.angles, float)
        scene.labels = np.array(self.labels, np.int64)
        scene.intensity = self.rng.uniform(0.85, 1.15, size=n)
        scene.buckets = self.buckets


def _flow_angle(x: float, y: float, seed: int) -> float:
    """A smoothly varying fibre direction, so that stromal nuclei line up locally."""
    phase = (seed % 97) * 0.37
    return float(0.9 * math.sin(x / 900.0 + phase) + 0.7 * math.cos(y / 700.0 - phase))
