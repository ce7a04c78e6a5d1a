"""Ground-truth label images of synthetic scenes, as a labelled dataset folder stores them."""

from __future__ import annotations

import numpy as np

from cellbridge.geometry import rasterize
from cellbridge.synth.scene import Scene


def instance_labels(scene: Scene, width: int, height: int) -> np.ndarray:
    """The uint16 instance label image of the scene's top-left `width` × `height` pixels: nucleus i is i + 1 (a later
    nucleus over an earlier one where they overlap), background 0."""
    labels = np.zeros((height, width), np.uint16)
    for i in range(len(scene)):
        labels[rasterize(scene.polygon(i), labels.shape)] = i + 1
    return labels
