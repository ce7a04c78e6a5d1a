"""Slides: one `Slide` interface over tiffslide, OpenSlide and OpenCV.

Coordinates are level-0 pixels (x right, y down), as in QuPath. `read_region(x, y, w, h, downsample)`
returns RGB uint8 of shape `(round(h / downsample), round(w / downsample), 3)`, read from the best pyramid
level and resized as needed; areas outside the image are filled with white (empty glass). Every backend is
safe to use from several reader threads at once.
"""

from __future__ import annotations

import abc
import importlib.util
import logging
import math
import os
import stat
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cellbridge.errors import CellBridgeError, CorruptSlideError, SlideError
from cellbridge.pipeline.options import PLAUSIBLE_PIXEL_SIZE_UM, check_pixel_size, plausible_pixel_size

log = logging.getLogger(__name__)

PLAIN_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".jp2", ".webp"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff", ".svs", ".btf", ".tf8", ".qptiff", ".scn", ".bif"})
OPENSLIDE_SUFFIXES = frozenset({".mrxs", ".ndpi", ".vms", ".vmu", ".svslide", ".dcm"})
WHITE = 255
LEVEL_TOLERANCE = 1e-3
FLUORESCENCE_MEDIAN = 40  # a thumbnail median brightness (max of R, G, B) below this: a fluorescence image
STRIP_PIXELS = 1 << 24  # level pixels read at once when a large area is shrunk (48 MiB of RGB)


class Slide(abc.ABC):
    """A whole-slide image or plain image, read by level-0 regions at any downsample."""

    def __init__(self, path: Path, level_dimensions: tuple[tuple[int, int], ...],
                 level_downsamples: tuple[float, ...], mpp: float | None, backend: str) -> None:
        self.path = path
        self.level_dimensions = level_dimensions
        self.level_downsamples = level_downsamples
        self.mpp = mpp
        self.ignored_mpp: float | None = None  # the file's pixel size when implausible (then `mpp` is None)
        if mpp is not None and not plausible_pixel_size(mpp):
            low, high = PLAUSIBLE_PIXEL_SIZE_UM
            log.warning("%s: the file's pixel size %.4g µm/px is outside the plausible range %g–%g µm/px "
                        "(e.g. a DPI setting): treated as unknown", path, mpp, low, high)
            self.mpp, self.ignored_mpp = None, mpp
        self.backend = backend

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) in pixels."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        """Number of pyramid levels (1 for plain images)."""
        return len(self.level_dimensions)

    def best_level(self, downsample: float) -> int:
        """The smallest level whose downsample does not exceed `downsample` (no detail is lost)."""
        best = 0
        for level, level_downsample in enumerate(self.level_downsamples):
            if level_downsample <= downsample * (1 + LEVEL_TOLERANCE):
                best = level
        return best

    def read_region(self, x: float, y: float, w: float, h: float, downsample: float = 1.0,
                    fill: int = WHITE) -> np.ndarray:
        """RGB uint8 pixels of the level-0 rectangle (x, y, w, h) at `downsample`, padded with `fill`."""
        if not (w > 0 and h > 0):
            raise SlideError(f"{self.path}: region size must be positive, got {w}x{h}")
        if not downsample > 0 or not math.isfinite(downsample):
            raise SlideError(f"{self.path}: downsample must be a positive number, got {downsample}")
        out_w, out_h = max(1, round(w / downsample)), max(1, round(h / downsample))
        level = self.best_level(downsample)
        level_downsample = self.level_downsamples[level]
        scale = downsample / level_downsample  # level pixels per output pixel
        left, top = x / level_downsample, y / level_downsample
        # upsampling interpolates the outermost output pixels with the level pixels just outside the region
        margin = 1 if scale < 1 - LEVEL_TOLERANCE else 0
        x0, y0 = math.floor(left + 1e-6) - margin, math.floor(top + 1e-6) - margin
        x1 = math.ceil(left + out_w * scale - 1e-6) + margin
        y1 = math.ceil(top + out_h * scale - 1e-6) + margin
        whole_blocks = abs(scale - round(scale)) < LEVEL_TOLERANCE and left == x0 and top == y0
        factor = round(scale) if whole_blocks else math.floor(scale)  # as `_resample` would pre-shrink
        if factor >= 2 and (y1 - y0) * (x1 - x0) > STRIP_PIXELS:
            # a large area shrunk (a thumbnail of a single-level TIFF): read and shrink it in strips, so the
            # full-resolution area is never held at once; the result is the same as in one piece
            shrunk = self._read_shrunk(level, x0, y0, x1, y1, factor, fill)
            return _resample(shrunk, (left - x0) / factor, (top - y0) / factor, scale / factor, out_w, out_h)
        return _resample(self._level_area(level, x0, y0, x1, y1, fill), left - x0, top - y0, scale, out_w, out_h)

    def _level_area(self, level: int, x0: int, y0: int, x1: int, y1: int, fill: int) -> np.ndarray:
        """Pixels of the level rectangle [x0, x1) × [y0, y1), `fill` outside the level."""
        level_w, level_h = self.level_dimensions[level]
        canvas = np.full((y1 - y0, x1 - x0, 3), fill, dtype=np.uint8)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, level_w), min(y1, level_h)
        if cx1 > cx0 and cy1 > cy0:
            canvas[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = self._read_level(level, cx0, cy0, cx1 - cx0, cy1 - cy0)
        return canvas

    def _read_shrunk(self, level: int, x0: int, y0: int, x1: int, y1: int, factor: int, fill: int) -> np.ndarray:
        """The level rectangle averaged over `factor` × `factor` blocks (edges replicated to whole blocks), read in
        strips of about `STRIP_PIXELS` level pixels."""
        rows = max(factor, STRIP_PIXELS // (x1 - x0) // factor * factor)
        parts = []
        for top in range(y0, y1, rows):
            strip = self._level_area(level, x0, top, x1, min(top + rows, y1), fill)
            strip = cv2.copyMakeBorder(strip, 0, -strip.shape[0] % factor, 0, -strip.shape[1] % factor,
                                       cv2.BORDER_REPLICATE)
            parts.append(cv2.resize(strip, (strip.shape[1] // factor, strip.shape[0] // factor),
                                    interpolation=cv2.INTER_AREA))
        return np.concatenate(parts)

    def thumbnail(self, max_side: int = 2048) -> tuple[np.ndarray, float]:
        """The whole slide at a downsample that fits `max_side`; returns (RGB image, downsample)."""
        width, height = self.dimensions
        downsample = max(1.0, max(width, height) / max_side)
        return self.read_region(0, 0, width, height, downsample), downsample

    @abc.abstractmethod
    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB uint8 pixels of an in-bounds rectangle given in the coordinates of `level`."""

    @property
    def associated_image_names(self) -> tuple[str, ...]:
        """Names of the images stored beside the pyramid (label, macro, thumbnail), as the file names them."""
        return tuple(self._associated())

    def read_associated(self, name: str) -> np.ndarray:
        """An associated image (see `associated_image_names`) as RGB uint8."""
        images = self._associated()
        if name not in images:
            raise SlideError(f"{self.path}: no associated image {name!r}; it has "
                             f"{', '.join(images) or 'none'}")
        image = images[name]
        if hasattr(image, "convert"):  # PIL: palette, gray and CMYK images become RGBA first
            image = image.convert("RGBA")
        return _to_rgb(np.asarray(image))

    def _associated(self) -> Any:
        """The backend's mapping of associated image names to images (PIL or arrays)."""
        return {}

    def close(self) -> None:
        """Release file handles (the slide must not be used afterwards)."""

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return f"{type(self).__name__}({str(self.path)!r}, {w}x{h}, levels={self.level_count}, mpp={self.mpp})"


def _resample(canvas: np.ndarray, left: float, top: float, scale: float, out_w: int, out_h: int) -> np.ndarray:
    """Map `canvas` (whose pixel (0, 0) sits at level coordinate offset (-left, -top)) to the output grid."""
    if abs(scale - 1) < LEVEL_TOLERANCE and abs(left - round(left)) < 1e-6 and abs(top - round(top)) < 1e-6:
        ox, oy = round(left), round(top)
        return np.ascontiguousarray(canvas[oy:oy + out_h, ox:ox + out_w])
    if abs(scale - round(scale)) < LEVEL_TOLERANCE and scale >= 2 and left == 0 and top == 0:
        k = round(scale)  # exact block average: output pixel = mean of a k x k block
        return cv2.resize(canvas[:out_h * k, :out_w * k], (out_w, out_h), interpolation=cv2.INTER_AREA)
    # General case: pre-shrink by area averaging, then an exact affine map of pixel centres.
    factor = max(1, math.floor(scale))
    if factor > 1:
        pad_h, pad_w = -canvas.shape[0] % factor, -canvas.shape[1] % factor
        canvas = cv2.copyMakeBorder(canvas, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        canvas = cv2.resize(canvas, (canvas.shape[1] // factor, canvas.shape[0] // factor),
                            interpolation=cv2.INTER_AREA)
        left, top, scale = left / factor, top / factor, scale / factor
    # output pixel centre u + 0.5 sits at level coordinate left + (u + 0.5) * scale, i.e. canvas pixel
    # index left + (u + 0.5) * scale - 0.5
    matrix = np.array([[scale, 0, left + 0.5 * scale - 0.5], [0, scale, top + 0.5 * scale - 0.5]])
    return cv2.warpAffine(canvas, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _to_rgb(array: np.ndarray, background: int = WHITE) -> np.ndarray:
    """Any image array (gray, RGB, RGBA; 8 or 16 bit) as RGB uint8; alpha composited on `background`."""
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.integer):
            array = (array.astype(np.float32) / np.iinfo(array.dtype).max * 255).round().astype(np.uint8)
        else:
            array = np.clip(array.astype(np.float32) * 255, 0, 255).round().astype(np.uint8)
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    channels = array.shape[2]
    if channels == 1:
        return np.repeat(array, 3, axis=2)
    if channels == 4:
        alpha = array[:, :, 3:4].astype(np.float32) / 255
        rgb = array[:, :, :3].astype(np.float32) * alpha + background * (1 - alpha)
        return rgb.round().astype(np.uint8)
    return np.ascontiguousarray(array[:, :, :3])


class ArraySlide(Slide):
    """A slide held in memory as one RGB array (plain images, tiles sent over the bridge, tests)."""

    def __init__(self, array: np.ndarray, mpp: float | None = None, path: str | os.PathLike[str] = "<array>",
                 backend: str = "array") -> None:
        rgb = _to_rgb(np.asarray(array))
        height, width = rgb.shape[:2]
        super().__init__(Path(path), ((width, height),), (1.0,), mpp, backend)
        self._array = rgb

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self._array[y:y + h, x:x + w]


class TiffSlideSlide(Slide):
    """TIFF, SVS, OME-TIFF and generic pyramidal TIFF through tiffslide (one handle per reader thread)."""

    def __init__(self, path: Path) -> None:
        import tiffslide

        self._open = lambda: tiffslide.TiffSlide(path)
        self._local = threading.local()
        self._handles: list[Any] = []
        self._lock = threading.Lock()
        handle = self._handle()
        self._levels = _level_pages(handle)
        _check_complete(path, self._levels)
        mpp = _mpp_from_properties(handle.properties, "tiffslide") or imagej_pixel_size(path)
        downsamples = tuple(float(d) for d in handle.level_downsamples)
        super().__init__(path, tuple(tuple(int(v) for v in d) for d in handle.level_dimensions),
                         downsamples, mpp, "tiffslide")

    def _handle(self) -> Any:
        handle = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._open()
            self._local.handle = handle
            with self._lock:
                self._handles.append(handle)
        return handle

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        pixels = self._handle().zarr_group[str(level)]
        try:
            array = pixels[y:y + h, x:x + w]
        except Exception as error:  # codecs raise their own types (Jpeg8Error, DeflateError, TiffFileError, …)
            raise self._decode_error(level, x, y, w, h, error) from error
        return _to_rgb(np.asarray(array))

    def _associated(self) -> Any:
        return self._handle().associated_images

    def _decode_error(self, level: int, x: int, y: int, w: int, h: int, error: Exception) -> CorruptSlideError:
        """A SlideError naming the first tile (or strip) of the rectangle that fails to decode."""
        pixels = self._handle().zarr_group[str(level)]
        page = self._levels[level] if level < len(self._levels) else None
        for sx, sy, sw, sh, name in _segments_in(page, x, y, w, h):
            try:
                pixels[sy:sy + sh, sx:sx + sw]
            except Exception as tile_error:
                return CorruptSlideError(f"{self.path}: level {level} {name} cannot be decoded (corrupt or cut "
                                         f"short: {_first_line(tile_error)})")
        return CorruptSlideError(f"{self.path}: level {level} pixels x={x}, y={y}, {w}x{h} cannot be decoded "
                                 f"(corrupt or cut short: {_first_line(error)})")

    def close(self) -> None:
        with self._lock:
            for handle in self._handles:
                handle.close()
            self._handles.clear()
        self._local = threading.local()


class OpenSlideSlide(Slide):
    """MIRAX, NDPI, Hamamatsu, Leica, Ventana and the other formats OpenSlide reads (thread-safe handle)."""

    def __init__(self, path: Path) -> None:
        import openslide

        self._slide = openslide.OpenSlide(str(path))
        mpp = _mpp_from_properties(self._slide.properties, "openslide")
        super().__init__(path, tuple(tuple(int(v) for v in d) for d in self._slide.level_dimensions),
                         tuple(float(d) for d in self._slide.level_downsamples), mpp, "openslide")

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        level_downsample = self.level_downsamples[level]
        location = (round(x * level_downsample), round(y * level_downsample))
        rgba = np.asarray(self._slide.read_region(location, level, (w, h)))
        return _to_rgb(rgba)

    def _associated(self) -> Any:
        return self._slide.associated_images

    def close(self) -> None:
        self._slide.close()


def _level_pages(handle: Any) -> list[Any]:
    """The first TIFF page of each pyramid level tiffslide reads (empty when it has no tifffile behind it)."""
    try:
        return [level.keyframe for level in handle.ts_tifffile.series[0].levels]
    except Exception:  # not a plain TIFF (e.g. kerchunk-backed): nothing to check
        return []


def _segment_name(page: Any, index: int) -> str:
    """'tile (column c, row r) at x=…, y=…' or 'strip i (rows a–b)' for segment `index` of a page."""
    if page.is_tiled:
        across = math.ceil(page.imagewidth / page.tilewidth)
        per_plane = across * math.ceil(page.imagelength / page.tilelength)
        column, row = index % per_plane % across, index % per_plane // across
        return f"tile (column {column}, row {row}) at x={column * page.tilewidth}, y={row * page.tilelength}"
    rows = page.rowsperstrip or page.imagelength
    strips = math.ceil(page.imagelength / rows)
    first = index % strips * rows
    return f"strip {index} (rows {first}–{min(first + rows, page.imagelength) - 1})"


def _check_complete(path: Path, pages: list[Any]) -> None:
    """Refuse a TIFF cut short: every tile or strip of every level must lie inside the file (undecoded tiles
    must not become blank image that a model then reads as tissue)."""
    if not pages:
        return
    size = pages[0].parent.filehandle.size
    for level, page in enumerate(pages):
        for index, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts)):
            if count > 0 and offset + count > size:
                raise CorruptSlideError(f"{path}: the file is cut short: level {level} "
                                        f"{_segment_name(page, index)} ends at byte {offset + count} but the file "
                                        f"has {size} bytes")


def _segments_in(page: Any, x: int, y: int, w: int, h: int) -> list[tuple[int, int, int, int, str]]:
    """(x, y, width, height, name) of each tile or strip of `page` that meets the rectangle, clipped to it."""
    if page is None:
        return []
    if page.is_tiled:
        step_x, step_y = page.tilewidth, page.tilelength
    else:
        step_x, step_y = page.imagewidth, page.rowsperstrip or page.imagelength
    across = math.ceil(page.imagewidth / step_x)
    found = []
    for row in range(y // step_y, (y + h - 1) // step_y + 1):
        for column in range(x // step_x, (x + w - 1) // step_x + 1):
            x0, y0 = max(x, column * step_x), max(y, row * step_y)
            x1, y1 = min(x + w, (column + 1) * step_x), min(y + h, (row + 1) * step_y)
            found.append((x0, y0, x1 - x0, y1 - y0, _segment_name(page, row * across + column)))
    return found


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _mpp_from_properties(properties: Any, prefix: str) -> float | None:
    """Pixel size in µm from tiffslide/openslide properties (mean of x and y), or None when unknown."""
    values = []
    for axis in ("x", "y"):
        raw = properties.get(f"{prefix}.mpp-{axis}")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value > 0:
            values.append(value)
    return sum(values) / len(values) if values else None


IMAGEJ_UNITS_UM = {"micron": 1.0, "microns": 1.0, "um": 1.0, "µm": 1.0, "\\u00b5m": 1.0, "nm": 1e-3, "mm": 1e3}


def imagej_pixel_size(path: str | os.PathLike[str]) -> float | None:
    """Pixel size in µm of a TIFF saved by ImageJ/Fiji (resolution unit "none", the unit in its description, as
    QuPath reads it), or None when the file is not such a TIFF or states no length unit."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.is_imagej:
                return None
            scale = IMAGEJ_UNITS_UM.get(str((tif.imagej_metadata or {}).get("unit", "")).strip().lower())
            tags = tif.pages[0].tags
            sizes = []
            for name in ("XResolution", "YResolution"):
                numerator, denominator = tags[name].value if name in tags else (0, 1)
                if scale and numerator > 0 and denominator > 0:
                    sizes.append(scale * denominator / numerator)   # the tag holds pixels per unit
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sum(sizes) / len(sizes) if sizes else None


def fluorescence_evidence(slide: Slide, max_side: int = 512) -> str | None:
    """Why `slide` looks like a fluorescence image (a dark background where brightfield glass is white), or None.

    The median brightness of a thumbnail: brightfield slides (H&E, IHC) are mostly white glass or pale tissue
    (median well above 100 of 255), fluorescence ones mostly black."""
    thumbnail, _ = slide.thumbnail(max_side)
    median = float(np.median(thumbnail.max(axis=2)))
    if median < FLUORESCENCE_MEDIAN:
        return f"looks like a fluorescence image (dark background: median brightness {median:.0f} of 255)"
    return None


def openslide_available() -> bool:
    """True when openslide-python and the OpenSlide library can be imported."""
    if importlib.util.find_spec("openslide") is None:
        return False
    try:
        import openslide  # noqa: F401
    except Exception:  # the C library may be missing even when the Python package is installed
        return False
    return True


def _read_plain_image(path: Path) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8)  # handles non-ASCII paths, unlike cv2.imread
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise SlideError(f"{path}: OpenCV cannot decode this image ({opencv_reason(error)})") from None
    if image is None:
        raise SlideError(f"{path}: OpenCV cannot decode this image (corrupt or not an image)")
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
    return image


def open_slide(path: str | os.PathLike[str], mpp: float | None = None) -> Slide:
    """Open any supported slide or image; `mpp` overrides (or supplies) the pixel size in µm.

    Raises `SlideError` naming the file and the reason when it is missing, unreadable or unsupported.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SlideError(f"{path}: no such file") from None
    except OSError as error:  # a name too long, a loop of links, …
        raise SlideError(f"{_shortened(str(path))}: cannot be used ({error.strerror or error})") from None
    if stat.S_ISDIR(mode):
        raise SlideError(f"{path}: is a folder, not a slide or image file")
    if not stat.S_ISREG(mode):  # a named pipe or device would block or never end
        raise SlideError(f"{path}: is not a regular file (a pipe, socket or device cannot be read as a slide)")
    if not os.access(path, os.R_OK):
        raise SlideError(f"{path}: permission denied")
    if mpp is not None:
        try:
            check_pixel_size(mpp)
        except CellBridgeError as error:
            raise SlideError(f"{path}: {error}") from None
    slide = _open_by_format(path)
    if mpp is not None:
        slide.mpp = float(mpp)
    return slide


def opencv_reason(error: Exception) -> str:
    """What an OpenCV error means, without its source location."""
    text = str(error)
    if "CV_IO_MAX_IMAGE_PIXELS" in text:
        return ("more pixels than OpenCV decodes in one image (CV_IO_MAX_IMAGE_PIXELS, "
                f"{int(os.environ.get('CV_IO_MAX_IMAGE_PIXELS', str(1 << 30))):,})")
    lines = [line.split(") ", 1)[-1].strip() for line in text.splitlines() if "error:" in line]
    return (lines[0] if lines else text.strip().splitlines()[0] if text.strip() else type(error).__name__)[:300]


def _shortened(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _open_plain_image(path: Path) -> Slide:
    return ArraySlide(_read_plain_image(path), path=path, backend="opencv")


def _open_by_format(path: Path) -> Slide:
    suffix = path.suffix.lower()
    if suffix in PLAIN_IMAGE_SUFFIXES:
        return _open_plain_image(path)
    if suffix in OPENSLIDE_SUFFIXES and not openslide_available():
        raise SlideError(f"{path}: {suffix} slides need OpenSlide: pip install openslide-python openslide-bin")
    openers: list[tuple[str, Any]] = [("tiffslide", TiffSlideSlide), ("openslide", OpenSlideSlide),
                                      ("opencv", _open_plain_image)]
    if suffix in OPENSLIDE_SUFFIXES:
        openers = openers[1:2]
    elif not openslide_available():
        openers = [openers[0], openers[2]]
    errors = []
    for name, opener in openers:
        try:
            return opener(path)
        except CorruptSlideError:  # the backend knows the format and found the file broken: no other may guess
            raise
        except Exception as error:  # each backend raises its own types; all become one SlideError
            errors.append(f"{name}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
    problem = "unreadable" if suffix in TIFF_SUFFIXES | OPENSLIDE_SUFFIXES else "unsupported or unreadable format"
    raise SlideError(f"{path}: {problem} ({'; '.join(errors)})")
