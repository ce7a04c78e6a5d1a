"""Nuclei: a U-Net (`cellbridge.networks.unet`, architecture `unet-nuclei`) predicts a centre heatmap, a
foreground map and (optionally) per-pixel class logits; heatmap peaks seed a watershed inside the foreground, giving
one polygon per nucleus (a learned foreground; Otsu on the hematoxylin channel is available as `foreground: otsu`).

Output channels: 0 = centre heatmap logit, 1 = foreground logit, [2 = normalised distance logit when the package's
`params.distance_map` is true], then class logits (when several classes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cellbridge.engines.base import Engine, EngineOptionError
from cellbridge.engines.nuclei_objects import DEFAULTS, NucleiObjects
from cellbridge.engines.probability_maps import flip_averaged_probabilities, probability_maps, to_maps

if TYPE_CHECKING:
    from cellbridge.models.package import ModelSpec

__all__ = ["DEFAULTS", "NucleiEngine", "nuclei_maps"]


def nuclei_maps(spec: ModelSpec) -> int:
    """Maps before the class logits of a `unet-nuclei` package: heatmap and foreground, plus each nucleus's
    normalised distance to its border when `params.distance_map` is true."""
    return 3 if spec.params.get("distance_map") else 2


class NucleiEngine(Engine):
    """Keypoint U-Net + seeded watershed."""

    compartment = "Nucleus"
    flip_tta = True
    process_safe = True
    DEFAULTS = DEFAULTS
    threshold_option = "peak_threshold"
    channels_last_on_cpu = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.options["foreground"] not in ("model", "otsu"):
            raise EngineOptionError(f"model {self.spec.name!r}: option 'foreground' must be 'model' or 'otsu', "
                                    f"got {self.options['foreground']!r}")

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> list[np.ndarray]:
        maps = nuclei_maps(self.spec)
        batch = self.in_module_layout(batch)
        if self.options.get("tta"):
            return to_maps(flip_averaged_probabilities(self.module, batch, maps))
        return probability_maps(self.module(batch).float(), maps)

    def postprocessor(self) -> NucleiObjects:
        classes = tuple(self.spec.path_class(i) for i in range(len(self.spec.classes)))
        return NucleiObjects(dict(self.options), classes, tuple(self.spec.class_names), nuclei_maps(self.spec))
