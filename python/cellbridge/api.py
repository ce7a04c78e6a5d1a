"""`cellbridge.detect`: run a model on an image file, an open slide or an RGB array and get its objects back.

    import cellbridge

    objects = cellbridge.detect("slide.svs")                      # the default nuclei model, every tissue tile
    cellbridge.write_geojson(objects, "nuclei.geojson")            # drag onto the image in QuPath

To run one model over many images, make a `Pipeline` once and pass it as `model` (the model then loads once).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cellbridge.models import DEFAULT_NUCLEI_MODEL

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from cellbridge.io.slides import Slide
    from cellbridge.models.package import ModelPackage
    from cellbridge.objects import PathObject
    from cellbridge.pipeline.options import RunOptions
    from cellbridge.pipeline.run import Pipeline


def detect(image: str | os.PathLike[str] | np.ndarray | Slide,
           model: str | os.PathLike[str] | ModelPackage | Pipeline = DEFAULT_NUCLEI_MODEL, *,
           pixel_size: float | None = None, roi: BaseGeometry | None = None,
           options: RunOptions | None = None) -> list[PathObject]:
    """The objects `model` finds in `image`, in level-0 pixel coordinates, classified and measured.

    `image`: a slide or image file, an open `Slide`, or an RGB uint8 array (H, W, 3). `model`: a model name (see
    `cellbridge models`), a model folder, a loaded package or a `Pipeline`. `pixel_size`: µm per pixel of the
    image (default: the file's; estimated from the nuclei when unknown). `roi`: a level-0 polygon that limits the
    region. `options`: the run's `RunOptions` (device, tile size, threshold, cell expansion, ...)."""
    from cellbridge.io.slides import ArraySlide, Slide, open_slide
    from cellbridge.pipeline.run import Pipeline

    pipeline = model if isinstance(model, Pipeline) else Pipeline(model, options)
    run_options = options or pipeline.options
    if pixel_size is not None:
        run_options = run_options.with_changes(pixel_size=pixel_size)
    objects: list[PathObject] = []
    if isinstance(image, Slide):
        pipeline.run(image, roi=roi, on_object=objects.append, options=run_options)
        return objects
    if isinstance(image, np.ndarray):
        slide = ArraySlide(image)
    else:
        slide = open_slide(Path(image))
    with slide:
        pipeline.run(slide, roi=roi, on_object=objects.append, options=run_options)
    return objects
