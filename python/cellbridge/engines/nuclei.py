"""Nuclei: a U-Net predicts a centre heatmap, a foreground map and (optionally) per-pixel class logits;
heatmap peaks seed a watershed inside the foreground, giving one polygon per nucleus (a learned foreground;
Otsu on the hematoxylin channel is available as `foreground: otsu`).

Output channels: 0 = centre heatmap logit, 1 = foreground logit, 2… = class logits (when several classes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cellbridge.engines.base import Engine, EngineOptionError
from cellbridge.engines.nuclei_objects import DEFAULTS, NucleiObjects, segment_nuclei
from cellbridge.engines.unet import UNet, flip_averaged_probabilities, probability_maps, to_maps, unet_from_spec
from cellbridge.models.package import ModelSpec
from cellbridge.objects import PathObject
from cellbridge.tiling.plan import Tile

__all__ = ["DEFAULTS", "NucleiEngine", "build_nuclei_unet", "head_channels", "segment_nuclei"]


def head_channels(n_classes: int) -> int:
    """Output channels for `n_classes` nucleus classes: heatmap + foreground (+ class logits when > 1)."""
    return 2 + (n_classes if n_classes > 1 else 0)


def build_nuclei_unet(spec: ModelSpec) -> UNet:
    """The U-Net of a `unet-nuclei` package."""
    module = unet_from_spec(spec, head_channels(len(spec.classes)))
    with torch.no_grad():
        module.head.bias[0] = -4.0  # centres are rare: start the heatmap near 0 (trained weights replace this)
    return module


class NucleiEngine(Engine):
    """Keypoint U-Net + seeded watershed."""

    compartment = "Nucleus"
    flip_tta = True
    DEFAULTS = DEFAULTS
    threshold_option = "peak_threshold"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.options["foreground"] not in ("model", "otsu"):
            raise EngineOptionError(f"model {self.spec.name!r}: option 'foreground' must be 'model' or 'otsu', "
                                    f"got {self.options['foreground']!r}")

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> list[np.ndarray]:
        if self.options.get("tta"):
            return to_maps(flip_averaged_probabilities(self.module, batch))
        return probability_maps(self.module(batch).float())

    def postprocessor(self) -> NucleiObjects:
        classes = tuple(self.spec.path_class(i) for i in range(len(self.spec.classes)))
        return NucleiObjects(dict(self.options), classes, tuple(self.spec.class_names))

    def postprocess(self, raw: np.ndarray, rgb: np.ndarray, tile: Tile) -> list[PathObject]:
        return self.postprocessor()(raw, rgb, tile)
