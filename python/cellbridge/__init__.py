"""CellBridge: deep-learning cell detection for QuPath, the Python side.

The public API (each name is imported on first use, so `import cellbridge` stays cheap and loads no torch):

    import cellbridge

    objects = cellbridge.detect("slide.svs")                     # nuclei, classified and measured
    cellbridge.write_geojson(objects, "nuclei.geojson")           # QuPath GeoJSON

    with cellbridge.open_slide("slide.svs") as slide:             # level-0 coordinates, RGB uint8
        tile = slide.read_region(0, 0, 512, 512, downsample=2)
    pipeline = cellbridge.Pipeline("nuclei-brightfield", cellbridge.RunOptions(device="cpu", cell_expansion=3))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name → (module, attribute)
_PUBLIC: dict[str, tuple[str, str]] = {
    "detect": ("cellbridge.api", "detect"),
    "open_slide": ("cellbridge.io.slides", "open_slide"),
    "Slide": ("cellbridge.io.slides", "Slide"),
    "load_model": ("cellbridge.models.package", "load_model"),
    "list_models": ("cellbridge.models.package", "list_models"),
    "ModelPackage": ("cellbridge.models.package", "ModelPackage"),
    "Pipeline": ("cellbridge.pipeline.run", "Pipeline"),
    "RunOptions": ("cellbridge.pipeline.options", "RunOptions"),
    "RunResult": ("cellbridge.pipeline.run", "RunResult"),
    "read_geojson": ("cellbridge.io.qupath_geojson", "read_objects"),
    "write_geojson": ("cellbridge.io.qupath_geojson", "write_objects"),
    "PathObject": ("cellbridge.objects", "PathObject"),
    "PathClass": ("cellbridge.objects", "PathClass"),
    "CellBridgeError": ("cellbridge.errors", "CellBridgeError"),
}

__all__ = ["CellBridgeError", "ModelPackage", "PathClass", "PathObject", "Pipeline", "RunOptions", "RunResult", "Slide",
           "__version__", "detect", "list_models", "load_model", "open_slide", "read_geojson", "write_geojson"]

if TYPE_CHECKING:
    from cellbridge.api import detect
    from cellbridge.errors import CellBridgeError
    from cellbridge.io.qupath_geojson import read_objects as read_geojson
    from cellbridge.io.qupath_geojson import write_objects as write_geojson
    from cellbridge.io.slides import Slide, open_slide
    from cellbridge.models.package import ModelPackage, list_models, load_model
    from cellbridge.objects import PathClass, PathObject
    from cellbridge.pipeline.options import RunOptions
    from cellbridge.pipeline.run import Pipeline, RunResult


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'cellbridge' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
