"""Render any level-0 region of a synthetic scene as H&E- or IHC-like RGB; every pixel depends only on its position.

IHC (`stain="ihc-dab"`) is rendered by the Beer-Lambert law from per-pixel stain amounts: the glass colour times
10^-(H·h + D·d), with h and d the scene's hematoxylin and DAB vectors (unit optical densities) and H, D the amounts
(pale counterstained stroma, blue negative nuclei, brown positive ones), so colour deconvolution with the scene's
own vectors gives H and D back up to 8-bit rounding and sensor noise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from cellbridge.synth.scene import FIELD_CELL, NucleusClass, Scene, SynthConfig

TEXTURE_PERIOD = 512
GLASS_RGB = np.array([243.0, 242.0, 245.0], np.float32)
STROMA_RGB = np.array([234.0, 164.0, 200.0], np.float32)
EDGE_BAND = 0.04          # field units over which tissue fades into glass
IHC_COUNTERSTAIN = 0.13   # hematoxylin OD of the pale stroma (still found as tissue: saturation ~30 of 255)
CYTOPLASM_REACH = 1.7     # IHC cytoplasm ring: out to this multiple of the nucleus's radii
VESICLE_RGB = np.array([192.0, 166.0, 208.0], np.float32)    # open chromatin: pale lilac
NUCLEOLUS_RGB = np.array([96.0, 40.0, 110.0], np.float32)


@functools.lru_cache(maxsize=8)
def periodic_texture(seed: int, sigma_x: float, sigma_y: float) -> np.ndarray:
    """Zero-mean, unit-variance periodic noise (TEXTURE_PERIOD², float32), smoothed anisotropically by FFT."""
    rng = np.random.default_rng([seed, int(sigma_x * 100), int(sigma_y * 100)])
    noise = rng.standard_normal((TEXTURE_PERIOD, TEXTURE_PERIOD))
    fy = np.fft.fftfreq(TEXTURE_PERIOD)[:, None]
    fx = np.fft.fftfreq(TEXTURE_PERIOD)[None, :]
    gain = np.exp(-2 * np.pi ** 2 * ((fx * sigma_x) ** 2 + (fy * sigma_y) ** 2))
    texture = np.real(np.fft.ifft2(np.fft.fft2(noise) * gain))
    texture = (texture - texture.mean()) / (texture.std() + 1e-9)
    return texture.astype(np.float32)


def _window(texture: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    rows = np.arange(y, y + h) % TEXTURE_PERIOD
    cols = np.arange(x, x + w) % TEXTURE_PERIOD
    return texture[rows][:, cols]


def _tissue_alpha(scene: Scene, x: int, y: int, w: int, h: int) -> np.ndarray:
    """Tissue opacity in [0, 1] per pixel: the bilinear field, thresholded with a soft edge."""
    if math.isinf(scene.threshold):
        return np.full((h, w), 1.0 if scene.threshold < 0 else 0.0, np.float32)
    map_x = ((np.arange(x, x + w, dtype=np.float32) + 0.5) / FIELD_CELL - 0.5)[None, :].repeat(h, 0)
    map_y = ((np.arange(y, y + h, dtype=np.float32) + 0.5) / FIELD_CELL - 0.5)[:, None].repeat(w, 1)
    values = cv2.remap(scene.tissue_field, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.clip((values - scene.threshold) / EDGE_BAND + 0.5, 0.0, 1.0)


def render_region(scene: Scene, x: int, y: int, w: int, h: int) -> np.ndarray:
    """RGB uint8 (h, w, 3) of the level-0 rectangle at (x, y); outside the slide is glass."""
    seed = scene.config.seed
    grain = _window(periodic_texture(seed, 1.2, 1.2), x, y, w, h)
    rgb = np.empty((h, w, 3), np.float32)
    rgb[:] = GLASS_RGB
    rgb += (grain * 1.5)[..., None]
    alpha = _tissue_alpha(scene, x, y, w, h)
    if scene.config.ihc:
        return _render_ihc(scene, rgb, alpha, grain, x, y, w, h)
    if alpha.any():
        fibres = _window(periodic_texture(seed, 7.0, 1.0), x, y, w, h)
        stroma = STROMA_RGB + (fibres * 9.0 + grain * 4.0)[..., None] * np.array([1.0, 1.3, 0.8], np.float32)
        rgb += (stroma - rgb) * alpha[..., None]
        _draw_nuclei(scene, rgb, x, y, w, h)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _draw_nuclei(scene: Scene, rgb: np.ndarray, x: int, y: int, w: int, h: int) -> None:
    """Composite every nucleus meeting the region, anti-aliased, with chromatin texture and a darker rim."""
    for n in _nucleus_windows(scene, x, y, w, h):
        tex = n.texture()
        shade = scene.intensity[n.i] * (1.0 + n.klass.texture * 0.35 * tex) * (1.0 - 0.18 * np.clip(n.q - 0.6, 0, 1))
        colour = np.array(n.klass.rgb, np.float32) * np.clip(2.0 - shade, 0.4, 1.6)[..., None]
        if n.klass.vesicular > 0:
            colour = _open_chromatin(scene, n, colour, tex)
        patch = rgb[n.rows, n.cols]
        patch += (colour - patch) * (n.alpha * 0.95)[..., None]


def _open_chromatin(scene: Scene, n: _NucleusWindow, colour: np.ndarray, tex: np.ndarray) -> np.ndarray:
    """A vesicular nucleus: pale inside the membrane except for chromatin clumps, and one dark nucleolus placed
    off-centre by the nucleus's index (so every cut of the slide agrees)."""
    membrane = np.clip((n.q - 0.72) / 0.2, 0.0, 1.0)
    clumps = np.clip(tex - 0.9, 0.0, 1.0)
    paleness = n.klass.vesicular * (1.0 - membrane) * (1.0 - clumps)
    colour = colour + (VESICLE_RGB - colour) * paleness[..., None]
    cx, cy = scene.centres[n.i]
    turn = (n.i * 2.399963) % (2 * math.pi)   # golden angle: neighbours' nucleoli point different ways
    ox, oy = 0.3 * n.minor * math.cos(turn), 0.3 * n.minor * math.sin(turn)
    ys = np.arange(n.rows.start, n.rows.stop, dtype=np.float32)[:, None] + 0.5 - (cy - n.region[1]) - oy
    xs = np.arange(n.cols.start, n.cols.stop, dtype=np.float32)[None, :] + 0.5 - (cx - n.region[0]) - ox
    radius = max(1.0, 0.16 * n.minor)
    nucleolus = np.clip(radius + 0.5 - np.sqrt(xs ** 2 + ys ** 2), 0.0, 1.0)
    return colour + (NUCLEOLUS_RGB - colour) * nucleolus[..., None]


# ------------------------------------------------------------------------------------------------------ IHC


def ihc_vectors(config: SynthConfig) -> np.ndarray:
    """The scene's (2, 3) hematoxylin and DAB optical density vectors, each of unit length."""
    vectors = np.asarray(config.ihc_vectors, np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _render_ihc(scene: Scene, rgb: np.ndarray, alpha: np.ndarray, grain: np.ndarray,
                x: int, y: int, w: int, h: int) -> np.ndarray:
    """Stain amounts per pixel (stroma, then nuclei over it), turned into RGB by the Beer-Lambert law."""
    hematoxylin = np.zeros((h, w), np.float32)
    dab = np.zeros((h, w), np.float32)
    if alpha.any():
        fibres = _window(periodic_texture(scene.config.seed, 7.0, 1.0), x, y, w, h)
        stroma = np.clip(IHC_COUNTERSTAIN + 0.04 * fibres + 0.015 * grain, 0.02, None)
        hematoxylin += stroma * alpha
        dab += scene.config.ihc_background_dab * alpha
        if scene.config.ihc_cytoplasm_dab > 0:
            _draw_ihc_cytoplasm(scene, dab, x, y, w, h)
        _draw_ihc_nuclei(scene, hematoxylin, dab, x, y, w, h)
    vectors = ihc_vectors(scene.config).astype(np.float32)
    od = hematoxylin[..., None] * vectors[0] + dab[..., None] * vectors[1]
    rgb *= np.power(np.float32(10.0), -od)     # rgb holds the glass colour plus grain
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _draw_ihc_cytoplasm(scene: Scene, dab: np.ndarray, x: int, y: int, w: int, h: int) -> None:
    """DAB in a granular ring of cytoplasm around every nucleus (out to `CYTOPLASM_REACH` times its radii),
    whatever the nucleus's own class; the nuclei are drawn over it afterwards."""
    level = scene.config.ihc_cytoplasm_dab
    for n in _nucleus_windows(scene, x, y, w, h, reach=CYTOPLASM_REACH):
        ring = np.clip((CYTOPLASM_REACH - n.q) * n.minor + 0.5, 0.0, 1.0)
        amount = level * (1.0 + 0.2 * n.texture(13, 29)) * ring
        window = dab[n.rows, n.cols]
        np.maximum(window, amount, out=window)


def _draw_ihc_nuclei(scene: Scene, hematoxylin: np.ndarray, dab: np.ndarray, x: int, y: int, w: int, h: int) -> None:
    """Composite each nucleus's stain amounts, anti-aliased: hematoxylin with chromatin texture and a darker rim
    (fainter under strong DAB), DAB at the nucleus's true level with a fine granular texture of mean ~0."""
    for n in _nucleus_windows(scene, x, y, w, h):
        tex, granules = n.texture(), n.texture(31, 17)
        level = float(scene.dab_level[n.i])
        # hematoxylin of a negative nucleus from its H&E darkness; DAB masks most of it in strongly positive nuclei
        base = -math.log10(float(np.mean(n.klass.rgb)) / 255.0) * 1.6 * float(scene.intensity[n.i])
        base *= 1.0 - 0.97 * min(level / 0.7, 1.0)
        h_amount = base * (1.0 + n.klass.texture * 0.35 * tex) * (1.0 + 0.25 * np.clip(n.q - 0.6, 0, 1))
        d_amount = level * (1.0 + 0.12 * granules)
        hematoxylin[n.rows, n.cols] += (np.clip(h_amount, 0, None) - hematoxylin[n.rows, n.cols]) * n.alpha
        dab[n.rows, n.cols] += (np.clip(d_amount, 0, None) - dab[n.rows, n.cols]) * n.alpha


@dataclass
class _NucleusWindow:
    """Nucleus `i`'s pixel window in the region: slices into region arrays, each pixel's elliptical radius q
    and coverage alpha, and its level-0 origin for texture lookups."""

    i: int
    klass: NucleusClass
    rows: slice
    cols: slice
    q: np.ndarray
    alpha: np.ndarray
    origin: tuple[int, int]
    chromatin: np.ndarray
    minor: float  # semi-minor axis (px)
    region: tuple[int, int]  # level-0 origin of the region the slices index

    def texture(self, dx: int = 0, dy: int = 0) -> np.ndarray:
        """The shared chromatin texture shifted per nucleus (so neighbours differ but any cut agrees)."""
        shift = int(self.i * 7919) % (TEXTURE_PERIOD - 64)
        return _window(self.chromatin, self.origin[0] + shift + dx, self.origin[1] + shift + dy, *self.q.shape[::-1])


def _nucleus_windows(scene: Scene, x: int, y: int, w: int, h: int, reach: float = 1.0) -> Iterator[_NucleusWindow]:
    """Every nucleus meeting the region, with its window (nuclei wholly outside are skipped); `reach` > 1
    widens each window to that multiple of the nucleus's radii (q then runs up to `reach`)."""
    chromatin = periodic_texture(scene.config.seed + 1, 1.0, 1.0)
    for i in scene.nuclei_in_region(x, y, w, h, reach):
        cx, cy = scene.centres[i]
        a, b = scene.axes[i]
        r = a * reach
        x0, x1 = max(math.floor(cx - r - 1), x), min(math.ceil(cx + r + 1), x + w)
        y0, y1 = max(math.floor(cy - r - 1), y), min(math.ceil(cy + r + 1), y + h)
        if x0 >= x1 or y0 >= y1:
            continue
        px = np.arange(x0, x1, dtype=np.float32) + 0.5 - cx
        py = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
        ca, sa = math.cos(scene.angles[i]), math.sin(scene.angles[i])
        u, v = px * ca + py * sa, -px * sa + py * ca
        q = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        alpha = np.clip((1.0 - q) * b + 0.5, 0.0, 1.0)
        yield _NucleusWindow(int(i), scene.config.classes[int(scene.labels[i])], slice(y0 - y, y1 - y),
                             slice(x0 - x, x1 - x), q, alpha, (x0, y0), chromatin, float(b), (x, y))
