"""Parsing and checking bridge requests (docs/protocol.md); every problem is one clear `RequestError`."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import shapely
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from cellbridge.errors import CellBridgeError
from cellbridge.io.slides import Slide, open_slide, opencv_reason
from cellbridge.models.package import TASKS
from cellbridge.pipeline.options import OptionError, RunOptions

PROTOCOL_VERSION = 1
MAX_REQUEST_CHARS = 512 * 1024 * 1024  # tile requests carry base64 PNGs; anything larger is refused unread
MAX_NAME_CHARS = 4096                  # a model name or file path (PATH_MAX on Linux)
MAX_IMAGE_SIDE = 2_000_000             # level-0 pixels: larger than any scanner's slide
MAX_CANVAS_PIXELS = 1 << 28            # the tiles' bounding box at their downsample (768 MB of RGB)


class RequestError(CellBridgeError):
    """A request the server cannot run."""


@dataclass(frozen=True)
class TileImage:
    """A tile sent by QuPath: level-0 bounds, downsample and its RGB pixels."""

    x: float
    y: float
    width: float
    height: float
    downsample: float
    rgb: np.ndarray


@dataclass
class JobRequest:
    """A checked request."""

    task: str
    model: str
    path: str | None
    pixel_size: float | None
    image_size: tuple[int, int] | None
    tiles: list[TileImage]
    region: BaseGeometry | None
    options: RunOptions = field(default_factory=RunOptions)
    given: frozenset[str] = frozenset()  # the option keys the request set

    def open(self) -> Slide:
        """The image to run on: the slide file, or the tiles assembled into one image."""
        if self.path is not None:
            return open_slide(self.path, mpp=self.pixel_size)
        return mosaic_slide(self.tiles, self.image_size, self.pixel_size)


@dataclass(frozen=True)
class RunRequest:
    """What a request asks to run, without the image: the task, the model and the checked options."""

    task: str
    model: str
    options: RunOptions
    given: frozenset[str]  # the option keys the request set


def parse_request(text: str) -> JobRequest:
    """Parse request JSON into a `JobRequest`, or raise RequestError naming the problem."""
    data = _load(text)
    task, model = _task_and_model(data)
    image = data.get("image")
    if not isinstance(image, dict):
        raise RequestError("the request needs 'image': {\"path\": ...} or {\"width\", \"height\"} with 'tiles'")
    options, given = _options(data, image)
    path, size, tiles = None, None, []
    if "tiles" in data:
        size = (_integer(image.get("width"), "image.width", MAX_IMAGE_SIDE),
                _integer(image.get("height"), "image.height", MAX_IMAGE_SIDE))
        tiles = _tiles(data["tiles"])
    else:
        path = image.get("path")
        if not isinstance(path, str) or not path:
            raise RequestError("'image.path' must be the slide's file path (or send 'tiles')")
        if len(path) > MAX_NAME_CHARS or "\0" in path:
            raise RequestError(f"'image.path' is not a file path ({len(path):,} characters)")
    region = _region(data.get("region"), data.get("roi"))
    return JobRequest(task, model, path, options.pixel_size, size, tiles, region, options, given)


def parse_run_request(text: str) -> RunRequest:
    """Parse the run part of request JSON (as for `parse_request`, but 'image' may be left out: only its
    'pixelSize' counts), or raise RequestError naming the problem."""
    data = _load(text)
    task, model = _task_and_model(data)
    image = data.get("image", {})
    if not isinstance(image, dict):
        raise RequestError("'image' must be an object")
    return RunRequest(task, model, *_options(data, image))


def _load(text: str) -> dict[str, Any]:
    """The request's JSON object, with its fields and protocol version checked."""
    if isinstance(text, str) and len(text) > MAX_REQUEST_CHARS:
        raise RequestError(f"the request has {len(text):,} characters; at most {MAX_REQUEST_CHARS:,} are accepted "
                           "(send fewer or smaller tiles per request)")
    try:
        data = json.loads(text)
    except (TypeError, json.JSONDecodeError) as error:
        raise RequestError(f"the request is not valid JSON ({error})") from None
    except RecursionError:
        raise RequestError("the request is nested too deeply to be a CellBridge request") from None
    if not isinstance(data, dict):
        raise RequestError("the request must be a JSON object")
    unknown = sorted(set(data) - {"protocol", "task", "model", "image", "tiles", "region", "roi", "options"})
    if unknown:
        raise RequestError(f"unknown request field(s): {', '.join(unknown)}")
    version = data.get("protocol", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise RequestError(f"unsupported protocol version {version!r}; this server speaks {PROTOCOL_VERSION}")
    return data


def _task_and_model(data: dict[str, Any]) -> tuple[str, str]:
    task = data.get("task")
    if task not in TASKS:
        raise RequestError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("the request needs 'model': a model name or folder")
    if len(model) > MAX_NAME_CHARS or "\0" in model:
        raise RequestError(f"'model' is not a model name or folder ({len(model):,} characters)")
    return task, model


def _options(data: dict[str, Any], image: dict[str, Any]) -> tuple[RunOptions, frozenset[str]]:
    try:
        options = RunOptions.from_request(data.get("options", {}), image.get("pixelSize"))
    except OptionError as error:
        raise RequestError(str(error)) from None
    given = frozenset(k for k, v in data.get("options", {}).items() if v is not None)
    return options, given


def _optional_number(value: Any, name: str, positive: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
            (positive and value <= 0):
        raise RequestError(f"'{name}' must be a {'positive ' if positive else ''}number, got {value!r}")
    return float(value)


def _integer(value: Any, name: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        raise RequestError(f"'{name}' must be a positive integer ≤ {maximum:,}, got {value!r}")
    return value


def _region(region: Any, roi: Any) -> BaseGeometry | None:
    area = None
    if region is not None:
        if not isinstance(region, dict):
            raise RequestError("'region' must be {\"x\", \"y\", \"width\", \"height\"} in level-0 pixels")
        x = _optional_number(region.get("x", 0), "region.x")
        y = _optional_number(region.get("y", 0), "region.y")
        w = _optional_number(region.get("width"), "region.width", positive=True)
        h = _optional_number(region.get("height"), "region.height", positive=True)
        if w is None or h is None:
            raise RequestError("'region' needs a positive width and height")
        area = box(x, y, x + w, y + h)
    if roi is not None:
        try:
            geometry = shape(roi.get("geometry", roi) if isinstance(roi, dict) else roi)
        except Exception as error:  # shapely raises several types for malformed GeoJSON
            raise RequestError(f"'roi' is not a GeoJSON geometry ({error})") from None
        if not np.isfinite(shapely.get_coordinates(geometry)).all():
            raise RequestError("'roi' has coordinates that are not finite numbers (NaN or infinity)")
        geometry = geometry if geometry.is_valid else shapely.make_valid(geometry)
        if geometry.area <= 0:
            raise RequestError("'roi' has no area (send a polygon)")
        area = geometry if area is None else area.intersection(geometry)
        if area.is_empty:
            raise RequestError("'region' and 'roi' do not overlap")
    return area


def _tiles(value: Any) -> list[TileImage]:
    if not isinstance(value, list) or not value:
        raise RequestError("'tiles' must be a non-empty list of {x, y, width, height, downsample, png}")
    tiles = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise RequestError(f"tile {i} must be an object")
        x = _optional_number(item.get("x"), f"tiles[{i}].x")
        y = _optional_number(item.get("y"), f"tiles[{i}].y")
        w = _optional_number(item.get("width"), f"tiles[{i}].width", positive=True)
        h = _optional_number(item.get("height"), f"tiles[{i}].height", positive=True)
        d = _optional_number(item.get("downsample", 1.0), f"tiles[{i}].downsample", positive=True)
        if None in (x, y, w, h):
            raise RequestError(f"tile {i} needs x, y, width and height (level-0 pixels)")
        try:
            raw = base64.b64decode(item.get("png", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise RequestError(f"tile {i}: 'png' is not base64") from None
        try:
            image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED) if raw else None
        except cv2.error as error:  # e.g. more pixels than OpenCV's limit (CV_IO_MAX_IMAGE_PIXELS)
            raise RequestError(f"tile {i}: 'png' cannot be decoded ({opencv_reason(error)})") from None
        if image is None:
            raise RequestError(f"tile {i}: 'png' cannot be decoded as an image")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
            channels = 1 if image.ndim == 2 else image.shape[2]
            raise RequestError(f"tile {i}: expected an 8-bit RGB or RGBA PNG, got {channels} channel(s) of "
                               f"{image.dtype}")
        rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        expected = (round(h / d), round(w / d))
        if abs(rgb.shape[0] - expected[0]) > 1 or abs(rgb.shape[1] - expected[1]) > 1:
            raise RequestError(f"tile {i}: the PNG is {rgb.shape[1]}x{rgb.shape[0]} but its bounds at downsample "
                               f"{d:g} make {expected[1]}x{expected[0]}")
        tiles.append(TileImage(x, y, w, h, d, rgb))
    if len({t.downsample for t in tiles}) > 1:
        raise RequestError("all tiles must have the same downsample")
    return tiles


def mosaic_slide(tiles: list[TileImage], size: tuple[int, int] | None, pixel_size: float | None) -> Slide:
    """The tiles pasted into one canvas over their bounding box (white where none was sent), as a Slide of the
    whole image: memory follows the pixels sent, not the image size."""
    assert size is not None
    d = tiles[0].downsample
    x0, y0 = min(t.x for t in tiles), min(t.y for t in tiles)
    x1, y1 = max(t.x + t.width for t in tiles), max(t.y + t.height for t in tiles)
    if x0 < 0 or y0 < 0 or x1 > size[0] + d or y1 > size[1] + d:
        raise RequestError(f"tiles reach outside the image ({size[0]}x{size[1]})")
    if math.ceil((y1 - y0) / d) * math.ceil((x1 - x0) / d) > MAX_CANVAS_PIXELS:
        raise RequestError(f"the tiles span {round(x1 - x0)}x{round(y1 - y0)} pixels at downsample {d:g}: more "
                           f"than {MAX_CANVAS_PIXELS:,} pixels; send the tiles of one region per request")
    canvas = np.full((math.ceil((y1 - y0) / d), math.ceil((x1 - x0) / d), 3), 255, np.uint8)
    for t in tiles:
        r, c = round((t.y - y0) / d), round((t.x - x0) / d)
        part = t.rgb[:canvas.shape[0] - r, :canvas.shape[1] - c]
        canvas[r:r + part.shape[0], c:c + part.shape[1]] = part
    return MosaicSlide(canvas, (round(x0 / d), round(y0 / d)), d, size, pixel_size)


class MosaicSlide(Slide):
    """An image known only through a canvas of pixels at downsample `d` placed at `origin` (in pixels at d):
    level 0 is the full image (nothing stored), level 1 the canvas's resolution; outside the canvas is white."""

    def __init__(self, canvas: np.ndarray, origin: tuple[int, int], downsample: float, size: tuple[int, int],
                 pixel_size: float | None) -> None:
        levels = ((size[0], size[1]), (math.ceil(size[0] / downsample), math.ceil(size[1] / downsample)))
        super().__init__(Path("<tiles from QuPath>"), levels if downsample != 1 else levels[:1],
                         (1.0, downsample) if downsample != 1 else (1.0,), pixel_size, "tiles")
        self._canvas, self._origin = canvas, origin

    def best_level(self, downsample: float) -> int:
        return self.level_count - 1  # the only stored pixels

    def read_region(self, x: float, y: float, w: float, h: float, downsample: float = 1.0,
                    fill: int = 255) -> np.ndarray:
        """Like Slide.read_region, but only the part that meets the canvas is read and resampled (a thumbnail
        of a huge image with a small canvas stays small)."""
        d = self.level_downsamples[-1]
        cx0, cy0 = self._origin[0] * d, self._origin[1] * d
        cx1, cy1 = cx0 + self._canvas.shape[1] * d, cy0 + self._canvas.shape[0] * d
        ix0, iy0, ix1, iy1 = max(x, cx0), max(y, cy0), min(x + w, cx1), min(y + h, cy1)
        if ix0 <= x and iy0 <= y and ix1 >= x + w and iy1 >= y + h:
            return super().read_region(x, y, w, h, downsample, fill)
        out = np.full((max(1, round(h / downsample)), max(1, round(w / downsample)), 3), fill, np.uint8)
        if ix1 - ix0 >= downsample and iy1 - iy0 >= downsample:
            part = super().read_region(ix0, iy0, ix1 - ix0, iy1 - iy0, downsample, fill)
            r, c = round((iy0 - y) / downsample), round((ix0 - x) / downsample)
            part = part[:out.shape[0] - r, :out.shape[1] - c]
            out[r:r + part.shape[0], c:c + part.shape[1]] = part
        return out

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        out = np.full((h, w, 3), 255, np.uint8)
        cx, cy = x - self._origin[0], y - self._origin[1]
        ch, cw = self._canvas.shape[:2]
        sx0, sy0, sx1, sy1 = max(cx, 0), max(cy, 0), min(cx + w, cw), min(cy + h, ch)
        if sx1 > sx0 and sy1 > sy0:
            out[sy0 - cy:sy1 - cy, sx0 - cx:sx1 - cx] = self._canvas[sy0:sy1, sx0:sx1]
        return out
