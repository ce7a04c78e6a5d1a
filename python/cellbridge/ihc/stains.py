"""Stain vectors for colour deconvolution: QuPath's defaults, estimated from the image (Macenko), or the user's.

A `StainVectors` holds two or three stains, each a unit vector of RGB optical densities (OD), and the background
(white) RGB value, exactly as QuPath's `ColorDeconvolutionStains` does; with two stains the third is QuPath's
"Residual", the cross product of the first two. Defaults are QuPath's own (`StainVector.makeDefaultStainVector`):

==============  ===========================  ================================================
Hematoxylin     0.65, 0.70, 0.29             Ruifrok & Johnston (2001)
DAB             0.27, 0.57, 0.78             Ruifrok & Johnston (2001)
Eosin           0.2159, 0.8012, 0.5581       QuPath's H&E default (AMIDA13)
==============  ===========================  ================================================

Deconvolution is `scikit-image`'s: the stain matrix M has one stain per row (`skimage.color.rgb_from_hed`'s
layout) and the concentrations are OD · inv(M) (`numpy.linalg.inv(M)` is the matrix `skimage.color.separate_stains`
takes). Optical densities are QuPath's, OD = -log10(max(v, 1) / background) for 8-bit v, looked up per channel,
so values are on QuPath's scale (6× `separate_stains`', which divides by ln(10⁶)), thresholds such as QuPath's
0.2 / 0.4 / 0.6 mean the same here, and they are not clipped at 0 (as in QuPath), so means stay unbiased:
``StainVectors.separate(rgb) == 6 * separate_stains(rgb, inv(M))`` wherever the latter is positive.

Estimation follows Macenko et al. (2009): the OD of stained pixels (near-white ones dropped), their plane of
largest variance (top two eigenvectors of the covariance), the angle of each pixel in that plane, and the stains
at the 1st and 99th percentiles of the angle, matched to the reference stains by direction.

    stains = StainVectors.default("ihc-dab")                 # or "he"
    stains = estimate_stains(tile_rgb, reference=stains)     # Macenko, on tissue pixels
    stains = StainVectors.from_json("stains.json")           # ours, or QuPath's "Stain 1"/"Values 1" form
    concentrations = stains.separate(tile_rgb)               # (H, W, 3): stain 1, stain 2, stain 3/residual
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellbridge.errors import CellBridgeError

log = logging.getLogger(__name__)

__all__ = [
    "DAB",
    "DEFAULT_VECTORS",
    "EOSIN",
    "HEMATOXYLIN",
    "RESIDUAL",
    "StainError",
    "StainVectors",
    "angle_between",
    "eosin_share",
    "estimate_stains",
    "estimate_stains_from_slide",
    "load_stains",
    "stains_for_slide",
]

HEMATOXYLIN, EOSIN, DAB, RESIDUAL = "Hematoxylin", "Eosin", "DAB", "Residual"  # QuPath's spellings
DEFAULT_VECTORS: dict[str, tuple[float, float, float]] = {  # qupath.lib.color.StainVector defaults
    HEMATOXYLIN: (0.65, 0.70, 0.29),
    DAB: (0.27, 0.57, 0.78),
    EOSIN: (0.2159, 0.8012, 0.5581),
}
_SPELLINGS = {  # ColorDeconvolutionStains.isHematoxylin / isEosin / isDAB
    HEMATOXYLIN: ("haematoxylin", "hematoxylin", "haem", "h"),
    EOSIN: ("eosin", "eos", "e"),
    DAB: ("dab", "d"),
}
EOSIN_SHARE_LIMIT = 0.5  # a larger eosin share of the non-hematoxylin stain: an H&E image, not hematoxylin-DAB
_PRESETS = {"ihc-dab": ("H-DAB default", (HEMATOXYLIN, DAB)), "he": ("H&E default", (HEMATOXYLIN, EOSIN))}
_ALIASES = {"h-dab": "ihc-dab", "hdab": "ihc-dab", "dab": "ihc-dab", "ihc": "ihc-dab", "h&e": "he", "h-e": "he"}


class StainError(CellBridgeError):
    """Stain vectors that cannot be used: malformed, parallel, or not estimable from the pixels given."""


Vector = tuple[float, float, float]


@dataclass(frozen=True)
class StainVectors:
    """Two or three named stains as unit RGB optical-density vectors, plus the background (white) RGB value."""

    name: str
    stains: tuple[str, ...]
    vectors: tuple[Vector, ...]
    background: Vector = (255.0, 255.0, 255.0)
    _inverse: np.ndarray = field(init=False, repr=False, compare=False)
    _luts: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        stains = tuple(str(s).strip() for s in self.stains)
        if len(stains) not in (2, 3) or len(self.vectors) != len(stains):
            raise StainError(f"stain vectors {self.name!r}: need 2 or 3 stains, each with an RGB vector; got "
                             f"{len(stains)} names and {len(self.vectors)} vectors")
        if len({s.lower() for s in stains}) != len(stains) or not all(stains):
            raise StainError(f"stain vectors {self.name!r}: stain names must be distinct and non-empty: {stains}")
        unit = []
        for stain, vector in zip(stains, self.vectors):
            v = np.asarray(vector, np.float64)
            if v.shape != (3,) or not np.all(np.isfinite(v)) or np.linalg.norm(v) <= 0:
                raise StainError(f"stain {stain!r}: the vector must be 3 finite numbers (R, G, B optical densities) "
                                 f"not all 0, got {vector!r}")
            unit.append(tuple(float(x) for x in v / np.linalg.norm(v)))
        background = np.asarray(self.background, np.float64)
        if background.shape != (3,) or not np.all(np.isfinite(background)) or background.min() <= 0:
            raise StainError(f"stain vectors {self.name!r}: background must be 3 positive RGB values, "
                             f"got {self.background!r}")
        object.__setattr__(self, "stains", stains)
        object.__setattr__(self, "vectors", tuple(unit))
        object.__setattr__(self, "background", tuple(float(x) for x in background))
        matrix = self.matrix
        if abs(np.linalg.det(matrix)) < 1e-3:
            raise StainError(f"stain vectors {self.name!r} are (nearly) parallel: they cannot be separated")
        inverse = np.linalg.inv(matrix)
        od = -np.log10(np.maximum(np.arange(256, dtype=np.float64), 1.0)[None, :] / background[:, None])  # (3, 256)
        object.__setattr__(self, "_inverse", inverse)
        object.__setattr__(self, "_luts", od[:, None, :] * inverse[:, :, None])  # [rgb channel, stain, 8-bit value]

    # ------------------------------------------------------------------------------------------ factories

    @classmethod
    def default(cls, kind: str = "ihc-dab") -> StainVectors:
        """QuPath's default vectors: "ihc-dab" (alias "h-dab") for hematoxylin + DAB, "he" for H&E."""
        key = _ALIASES.get(kind.strip().lower(), kind.strip().lower())
        if key not in _PRESETS:
            raise StainError(f"unknown stain kind {kind!r}; expected one of {', '.join(_PRESETS)}")
        name, stains = _PRESETS[key]
        return cls(name, stains, tuple(DEFAULT_VECTORS[s] for s in stains))

    @classmethod
    def from_json(cls, source: str | os.PathLike[str] | Mapping[str, Any]) -> StainVectors:
        """Stain vectors from a JSON file, a JSON string or a dict, in either form:

        - ours (`to_json`): ``{"name": "...", "stains": {"Hematoxylin": [r, g, b], "DAB": [r, g, b]},
          "background": [255, 255, 255]}`` (name and background optional);
        - QuPath's (`setColorDeconvolutionStains` / the image's "Stain vectors"): ``{"Name": "...",
          "Stain 1": "Hematoxylin", "Values 1": "0.651 0.701 0.290", "Stain 2": "DAB", "Values 2": "...",
          "Background": " 255 255 255"}``.
        """
        data, origin = _json_source(source)
        if not isinstance(data, Mapping):
            raise StainError(f"{origin}: expected a JSON object of stain vectors, not {type(data).__name__}")
        try:
            if "Stain 1" in data:
                return cls._from_qupath(data)
            return cls._from_ours(data)
        except StainError as error:
            raise StainError(f"{origin}: {error}") from None

    @classmethod
    def _from_ours(cls, data: Mapping[str, Any]) -> StainVectors:
        unknown = sorted(set(data) - {"name", "stains", "background"})
        if unknown:
            raise StainError(f"unknown key(s) {unknown}; expected 'name', 'stains', 'background' (or QuPath's "
                             "'Stain 1', 'Values 1', ...)")
        stains = data.get("stains")
        if not isinstance(stains, Mapping) or not stains:
            raise StainError("'stains' must be an object of stain name -> [r, g, b]")
        vectors = tuple(_triple(v, f"stain {k!r}") for k, v in stains.items())
        background = _triple(data.get("background", (255, 255, 255)), "background")
        return cls(str(data.get("name", "custom")), tuple(stains), vectors, background)

    @classmethod
    def _from_qupath(cls, data: Mapping[str, Any]) -> StainVectors:
        names, vectors = [], []
        for i in (1, 2, 3):
            if f"Stain {i}" not in data:
                continue
            name = str(data[f"Stain {i}"])
            if i == 3 and name == RESIDUAL:
                continue
            names.append(name)
            vectors.append(_triple(data.get(f"Values {i}"), f"'Values {i}'"))
        background = _triple(data.get("Background", "255 255 255"), "'Background'")
        return cls(str(data.get("Name", "custom")), tuple(names), tuple(vectors), background)

    # ---------------------------------------------------------------------------------------- properties

    @property
    def matrix(self) -> np.ndarray:
        """The 3×3 stain matrix, one unit stain per row (the residual as the third row with two stains)."""
        rows = [np.array(v) for v in self.vectors]
        if len(rows) == 2:
            residual = np.cross(rows[0], rows[1])
            length = np.linalg.norm(residual)
            if length < 1e-6:
                raise StainError(f"stain vectors {self.name!r} are parallel: they cannot be separated")
            rows.append(residual / length)
        return np.stack(rows)

    @property
    def inverse(self) -> np.ndarray:
        """inv(`matrix`): the matrix `skimage.color.separate_stains` takes (OD row vector · inverse)."""
        return self._inverse.copy()

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The names of the three deconvolved channels (the third is "Residual" with two stains)."""
        return self.stains if len(self.stains) == 3 else (*self.stains, RESIDUAL)

    def index(self, stain: str) -> int:
        """The channel index of a stain, by name or QuPath's spellings ("h", "haematoxylin", "dab", "e"…)."""
        wanted = stain.strip().lower()
        for i, name in enumerate(self.channel_names):
            canonical = next((k for k, spellings in _SPELLINGS.items() if name.lower() in spellings), name)
            if wanted == name.lower() or wanted in _SPELLINGS.get(canonical, ()):
                return i
        raise StainError(f"stain {stain!r} is not one of {', '.join(self.channel_names)} ({self.name})")

    def has(self, stain: str) -> bool:
        """True when `stain` (any of QuPath's spellings) is one of the stains."""
        try:
            self.index(stain)
        except StainError:
            return False
        return True

    # ----------------------------------------------------------------------------------------- deconvolve

    def separate(self, rgb: np.ndarray) -> np.ndarray:
        """Stain concentrations (..., 3) float32 of 8-bit RGB pixels (..., 3), on QuPath's OD scale, unclipped."""
        values = np.asarray(rgb)
        if values.shape[-1:] != (3,):
            raise ValueError(f"expected RGB pixels (..., 3), not shape {values.shape}")
        if values.dtype != np.uint8:
            values = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        r, g, b = values[..., 0], values[..., 1], values[..., 2]
        luts = self._luts
        out = np.empty(values.shape, np.float32)
        for s in range(3):
            out[..., s] = luts[0, s][r] + luts[1, s][g] + luts[2, s][b]
        return out

    def separate_channel(self, red: np.ndarray, green: np.ndarray, blue: np.ndarray, stain: int) -> np.ndarray:
        """One stain's concentration (float64) of pixels given as three uint8 channel arrays of equal shape."""
        luts = self._luts
        return luts[0, stain][red] + luts[1, stain][green] + luts[2, stain][blue]

    def od(self, rgb: np.ndarray) -> np.ndarray:
        """QuPath's optical densities (..., 3) float64 of 8-bit RGB pixels, against this background."""
        values = np.clip(np.asarray(rgb, np.float64), 1.0, None)
        return -np.log10(values / np.asarray(self.background))

    # ----------------------------------------------------------------------------------------- recording

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record: ``{"name", "stains": {name: [r, g, b]}, "background": [r, g, b]}`` (5 decimals)."""
        return {"name": self.name,
                "stains": {s: [round(x, 5) for x in v] for s, v in zip(self.stains, self.vectors)},
                "background": [round(x, 3) for x in self.background]}

    def to_qupath(self) -> str:
        """QuPath's own string for these vectors, for ``setColorDeconvolutionStains('…')`` in a QuPath script."""
        parts = [f'"Name" : "{self.name}"']
        for i, (stain, vector) in enumerate(zip(self.stains, self.vectors), start=1):
            parts.append(f'"Stain {i}" : "{stain}"')
            parts.append(f'"Values {i}" : "{" ".join(f"{x:.5f}" for x in vector)}"')
        parts.append(f'"Background" : " {" ".join(f"{x:g}" for x in self.background)}"')
        return "{" + ", ".join(parts) + "}"

    def angles_to(self, other: StainVectors) -> dict[str, float]:
        """Angle in degrees between each of our stains and the same-named stain of `other`."""
        return {stain: angle_between(vector, other.vectors[other.index(stain)])
                for stain, vector in zip(self.stains, self.vectors) if other.has(stain)}


def angle_between(a: Sequence[float], b: Sequence[float]) -> float:
    """The angle in degrees between two vectors."""
    u, v = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return math.degrees(math.atan2(float(np.linalg.norm(np.cross(u, v))), float(u @ v)))  # exact near 0° too


def load_stains(spec: str | os.PathLike[str] | StainVectors | None, kind: str = "ihc-dab") -> StainVectors:
    """Stain vectors from what a user gives: None or "default" (QuPath's for `kind`), a preset name ("ihc-dab",
    "he"), a JSON file, or a JSON string. ("estimate" needs pixels: use `estimate_stains`.)"""
    if isinstance(spec, StainVectors):
        return spec
    if spec is None or str(spec).strip().lower() in ("", "default"):
        return StainVectors.default(kind)
    text = os.fspath(spec)
    key = text.strip().lower()
    if key in _PRESETS or key in _ALIASES:
        return StainVectors.default(key)
    if key == "estimate":
        raise StainError("'estimate' needs the image: call estimate_stains / estimate_stains_from_slide")
    return StainVectors.from_json(text)


def stains_for_slide(spec: str | os.PathLike[str] | StainVectors | None, slide: Any,
                     kind: str = "ihc-dab") -> tuple[StainVectors, str]:
    """The stain vectors to use on `slide` and a note saying where they came from, for the run's metadata.

    `spec` is what `load_stains` takes, or "estimate": Macenko on the slide's tissue (`estimate_stains`, which
    checks that the vectors are plausible), falling back to QuPath's defaults for `kind` with a logged warning (and
    the reason in the note) when the slide does not allow it. For hematoxylin-DAB, a slide whose non-hematoxylin
    stain is mostly eosin (`eosin_share` > `EOSIN_SHARE_LIMIT`) is warned about whatever `spec` is (DAB positivity
    on an H&E slide means nothing), and its estimate, an eosin vector, is not used.
    """
    if isinstance(spec, StainVectors):
        return spec, "given"
    text = "" if spec is None else os.fspath(spec).strip()
    estimate = text.lower() == "estimate"
    reference = StainVectors.default(kind)
    pixels: np.ndarray | None = None
    unusable = ""  # why the slide's pixels cannot give stain vectors
    if slide is not None and (estimate or reference.has(DAB)):
        try:
            pixels = tissue_pixels(slide)
        except StainError as error:
            unusable = str(error)
    he_warning = ""
    if pixels is not None and reference.has(DAB) and (share := eosin_share(pixels)) > EOSIN_SHARE_LIMIT:
        he_warning = (f"{share:.0%} of the stain besides hematoxylin is eosin-like: this looks like an H&E image, "
                      "and DAB positivity on it means nothing")
        log.warning("%s: %s", slide.path, he_warning)
        unusable = he_warning
    if estimate:
        try:
            if unusable:
                raise StainError(unusable)
            return estimate_stains(pixels, reference), "estimated from the slide (Macenko)"
        except StainError as error:
            note = f"estimation failed, QuPath's defaults used: {error}"
            if not he_warning:
                log.warning("%s: stain vectors: %s", getattr(slide, "path", "slide"), note)
            return reference, note
    note = "QuPath's defaults" if text.lower() in ("", "default") else f"given: {text}"
    return load_stains(text or None, kind), note + (f"; {he_warning}" if he_warning else "")


# ------------------------------------------------------------------------------------------------- Macenko


def estimate_stains(
    rgb: np.ndarray,
    reference: StainVectors | None = None,
    *,
    mask: np.ndarray | None = None,
    min_od: float = 0.25,
    max_od: float = 3.0,
    percentile: float = 1.0,
    max_pixels: int = 250_000,
    max_angle: float = 30.0,
    min_separation: float = 0.5,
    seed: int = 0,
) -> StainVectors:
    """The image's two stains by Macenko's method, named and ordered as the `reference`'s first two stains.

    `rgb` is an image (H, W, 3) or pixels (N, 3), 8-bit; `mask` (optional, H×W) selects tissue. Pixels whose OD
    length is below `min_od` (glass and faint background: 0.25 rather than Macenko's 0.15, as the direction of a
    faint pixel is mostly JPEG chroma noise) or whose largest channel OD is above `max_od` (saturated) are dropped; at most `max_pixels` are used (a fixed random subset). The stains are the directions
    at the `percentile` and 100 - `percentile` percentiles of the pixels' angles in the plane of the top two
    eigenvectors of their OD covariance.

    Macenko needs each stain on at least a few % of the stained pixels; where one is missing or rare (a region
    with no or only weak DAB), the extreme angles are mixtures of the other stain and noise. A StainError is raised
    then: when too few stained pixels are found, when the two stains found are less than `min_separation` times
    the reference's angle apart, or when one is more than `max_angle` degrees from the reference's. Callers fall
    back to the defaults (or estimate from more of the slide: `estimate_stains_from_slide`).
    """
    reference = reference or StainVectors.default("ihc-dab")
    pixels = np.asarray(rgb)
    if pixels.shape[-1:] != (3,):
        raise ValueError(f"expected RGB pixels (..., 3), not shape {pixels.shape}")
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != pixels.shape[:-1]:
            raise ValueError(f"mask shape {mask.shape} does not match the image {pixels.shape[:-1]}")
        pixels = pixels[mask]
    od = reference.od(pixels.reshape(-1, 3))
    keep = (np.linalg.norm(od, axis=1) >= min_od) & (od.max(axis=1) <= max_od) & np.all(od > -0.05, axis=1)
    od = od[keep]
    if len(od) < 200:
        raise StainError(f"only {len(od)} stained pixels (OD ≥ {min_od}) to estimate stain vectors from; "
                         "give an image region with more tissue")
    if len(od) > max_pixels:
        od = od[np.random.default_rng(seed).choice(len(od), max_pixels, replace=False)]

    _, eigenvectors = np.linalg.eigh(np.cov(od, rowvar=False))
    plane = eigenvectors[:, [2, 1]]                 # largest variance first
    if plane[:, 0].sum() < 0:
        plane[:, 0] *= -1
    projected = od @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [percentile, 100.0 - percentile])
    found = [_positive(plane @ np.array([math.cos(a), math.sin(a)])) for a in (low, high)]

    targets = [np.array(v) for v in reference.vectors[:2]]
    straight = found[0] @ targets[0] + found[1] @ targets[1]
    swapped = found[0] @ targets[1] + found[1] @ targets[0]
    if swapped > straight:
        found.reverse()
    separation, expected = angle_between(*found), angle_between(*targets)
    if separation < min_separation * expected:
        raise StainError(f"the two stains found are only {separation:.1f}° apart ({reference.stains[0]} and "
                         f"{reference.stains[1]} are {expected:.1f}° apart in the reference): the image does not "
                         f"seem to hold enough of both stains; use the default vectors or give them as JSON")
    for stain, vector, target in zip(reference.stains[:2], found, targets):
        angle = angle_between(vector, target)
        if angle > max_angle:
            raise StainError(f"estimated {stain} vector {np.round(vector, 3).tolist()} is {angle:.1f}° from the "
                             f"reference {np.round(target, 3).tolist()} (more than {max_angle}°): the image may not "
                             f"hold both stains; use the default vectors or give them as JSON")
    base = reference.name.removesuffix(" default")
    return StainVectors(f"{base} estimated", reference.stains[:2], tuple(tuple(v) for v in found),
                        reference.background)


def estimate_stains_from_slide(
    slide: Any,
    reference: StainVectors | None = None,
    *,
    tiles: int = 12,
    tile_size: int = 512,
    downsample: float = 1.0,
    **options: Any,
) -> StainVectors:
    """Macenko estimation on up to `tiles` tissue tiles of a slide (`cellbridge.io.slides.Slide`), read at
    `downsample`, spread evenly over the tissue (`tissue_pixels`); `options` go to `estimate_stains`."""
    return estimate_stains(tissue_pixels(slide, tiles, tile_size, downsample), reference, **options)


def tissue_pixels(slide: Any, tiles: int = 12, tile_size: int = 512, downsample: float = 1.0) -> np.ndarray:
    """RGB pixels (N, 3) of up to `tiles` tissue tiles of `tile_size` at `downsample`, spread evenly over the
    slide's tissue."""
    from cellbridge.tiling import detect_tissue

    tissue = detect_tissue(slide)
    width, height = slide.dimensions
    extent = tile_size * downsample
    candidates = [(x, y) for y in np.arange(0, max(height - extent, 0) + 1, extent)
                  for x in np.arange(0, max(width - extent, 0) + 1, extent)]
    scored = [(tissue.tissue_pixels(x, y, x + extent, y + extent), x, y) for x, y in candidates]
    cells = max(1.0, (extent / tissue.downsample) ** 2)
    full = [(x, y) for n, x, y in scored if n >= 0.5 * cells]
    if not full:
        full = [(x, y) for n, x, y in sorted(scored, reverse=True)[:tiles] if n > 0]
    if not full:
        raise StainError(f"{slide.path}: no tissue found to estimate stain vectors from")
    chosen = [full[int(i)] for i in np.linspace(0, len(full) - 1, min(tiles, len(full))).round()]
    return np.concatenate([slide.read_region(x, y, extent, extent, downsample).reshape(-1, 3) for x, y in chosen])


def eosin_share(rgb: np.ndarray, min_od: float = 0.25, min_rest: float = 0.1) -> float:
    """How much of the stain besides hematoxylin in `rgb` (pixels (..., 3)) is eosin rather than DAB, in [0, 1].

    Each stained pixel's OD (length ≥ `min_od`) minus its part along QuPath's hematoxylin vector leaves the other
    stain; where that rest is ≥ `min_rest` long, it counts, weighted by its length, as eosin when nearer (in the
    plane perpendicular to hematoxylin) to eosin than to DAB. H&E slides come out near 1 (a real Aperio H&E 0.90),
    hematoxylin-DAB ones near 0 (real ER/PR IHC tiles 0.00)."""
    hematoxylin = np.array(DEFAULT_VECTORS[HEMATOXYLIN])

    def across(vector: Sequence[float]) -> np.ndarray:
        rest = np.asarray(vector) - (np.asarray(vector) @ hematoxylin) * hematoxylin
        return rest / np.linalg.norm(rest)

    od = -np.log10(np.maximum(np.asarray(rgb, np.float64).reshape(-1, 3), 1.0) / 255.0)
    od = od[np.linalg.norm(od, axis=1) >= min_od]
    rest = od - np.outer(od @ hematoxylin, hematoxylin)
    length = np.linalg.norm(rest, axis=1)
    rest, length = rest[length >= min_rest], length[length >= min_rest]
    if not length.size:
        return 0.0
    eosin = rest @ across(DEFAULT_VECTORS[EOSIN]) > rest @ across(DEFAULT_VECTORS[DAB])
    return float(length[eosin].sum() / length.sum())


# --------------------------------------------------------------------------------------------------- helpers


def _positive(vector: np.ndarray) -> np.ndarray:
    """A unit vector pointing into the positive octant's side (stains absorb: OD components are ≥ 0)."""
    vector = vector / np.linalg.norm(vector)
    return -vector if vector.sum() < 0 else vector


def _triple(value: Any, what: str) -> Vector:
    if isinstance(value, str):
        parts = value.replace(",", " ").split()
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        raise StainError(f"{what} must be 3 numbers, not {value!r}")
    try:
        numbers = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise StainError(f"{what} must be 3 numbers, not {value!r}") from None
    if len(numbers) != 3:
        raise StainError(f"{what} must be 3 numbers, not {value!r}")
    return numbers  # type: ignore[return-value]


def _json_source(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[Any, str]:
    if isinstance(source, Mapping):
        return source, "stain vectors"
    text = os.fspath(source)
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text), "stain vectors"
        except json.JSONDecodeError as error:
            raise StainError(f"stain vectors: invalid JSON ({error})") from None
    path = Path(text)
    try:
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    except FileNotFoundError:
        raise StainError(f"{path}: stain vector file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise StainError(f"{path}: cannot read stain vectors ({error})") from None
    except json.JSONDecodeError as error:
        raise StainError(f"{path}: invalid JSON ({error})") from None
