"""Instance (gland) segmentation, two ways (to compare them), each giving one polygon per object per tile,
merged seam-free across tiles by the core's `SeamMerger` like any other engine's objects:

- `unet-distance`: a U-Net predicts a foreground map and each object's normalised distance transform (1 on its
  medial axis, falling to 0 at its border); the distance map's plateaus above `seed_threshold` seed a watershed of
  the inverted distance inside the foreground, which splits touching objects along their neck.
  Output channels: 0 = foreground logit, 1 = distance logit, 2… = class logits (when several classes).
- `maskrcnn_*`: torchvision Mask R-CNN (`cellbridge.networks.mask_rcnn`: the Faster R-CNN of
  `cellbridge.networks.detector` with torchvision's mask branch). Masks are painted in increasing score order, so
  where two overlap the more confident one keeps the pixels; each object keeps its largest piece.

Objects are QuPath annotations by default (`object_type: detection` for detections), with the class, the score as
"Detection probability", and the pipeline's usual measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from cellbridge.engines.base import Engine, check_object_type
from cellbridge.engines.probability_maps import probability_maps
from cellbridge.geometry import label_polygons, to_level0
from cellbridge.models.package import ModelSpec
from cellbridge.objects import SCORE_MEASUREMENT, PathObject
from cellbridge.tiling.plan import Tile

DISTANCE_DEFAULTS: dict[str, Any] = {
    "fg_threshold": 0.5,      # foreground probability
    "seed_threshold": 0.5,    # normalised distance above which a plateau seeds an object
    "min_seed_area": 4,       # pixels: smaller seeds are noise
    "min_area": 30,           # pixels: smaller objects are dropped
    "object_type": "annotation",
    "max_object_size": 128,   # model pixels; the tile overlap should exceed it
}
MASK_RCNN_DEFAULTS: dict[str, Any] = {
    "score_threshold": 0.5,
    "mask_threshold": 0.5,
    "max_detections": 100,
    "min_area": 30,
    "object_type": "annotation",
    "max_object_size": 128,
}


def distance_watershed(foreground: np.ndarray, distance: np.ndarray,
                       options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels from a foreground probability map and a normalised distance map, and each label's score
    (the mean foreground probability over it; index = label, 0 unused)."""
    options = {**DISTANCE_DEFAULTS, **options}
    mask = foreground >= float(options["fg_threshold"])
    seeds, count = ndi.label(mask & (distance >= float(options["seed_threshold"])))
    if count:
        sizes = np.bincount(seeds.ravel(), minlength=count + 1)
        small = sizes < int(options["min_seed_area"])
        small[0] = False
        if small.any():
            seeds[small[seeds]] = 0
    if not seeds.any():
        return np.zeros(foreground.shape, np.int32), np.zeros(1, np.float32)
    labels = watershed(-distance, seeds, mask=mask).astype(np.int32)
    count = int(labels.max())
    sums = np.bincount(labels.ravel(), weights=foreground.ravel(), minlength=count + 1)
    sizes = np.maximum(np.bincount(labels.ravel(), minlength=count + 1), 1)
    return labels, (sums / sizes).astype(np.float32)


def paint_masks(masks: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Label image of (N, H, W) mask probabilities: object k + 1 where its mask ≥ threshold, the highest score
    winning where masks overlap."""
    labels = np.zeros(masks.shape[1:], np.int32)
    for k in np.argsort(scores, kind="stable"):   # lowest first: higher scores paint over
        labels[masks[k] >= threshold] = k + 1
    return labels


def _objects(labels: np.ndarray, scores: np.ndarray, class_of: dict[int, int], spec: ModelSpec, tile: Tile,
             options: dict[str, Any], probabilities: dict[int, np.ndarray] | None = None) -> list[PathObject]:
    """Polygons of a tile's label image → level-0 PathObjects with class and score."""
    objects = []
    for label, polygon in label_polygons(labels, min_area=int(options["min_area"])).items():
        index = class_of.get(label, 0)
        measurements = {SCORE_MEASUREMENT: round(float(scores[label]), 4)}
        if probabilities is not None and label in probabilities:
            for name, p in zip(spec.class_names, probabilities[label]):
                measurements[f"Class probability: {name}"] = round(float(p), 4)
        objects.append(PathObject(to_level0(polygon, tile.x, tile.y, tile.downsample), options["object_type"],
                                  spec.path_class(index), measurements))
    return objects


class DistanceEngine(Engine):
    """U-Net foreground + normalised distance → seeded watershed; one polygon per object."""

    DEFAULTS = DISTANCE_DEFAULTS
    channels_last_on_cpu = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_object_type(self.options)

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> list[np.ndarray]:
        return probability_maps(self.module(self.in_module_layout(batch)).float())

    def postprocessor(self) -> DistanceObjects:
        return DistanceObjects(self.spec, dict(self.options))


class MaskRCNNEngine(Engine):
    """Mask R-CNN on tiles; masks → one polygon per object (overlaps go to the higher score)."""

    DEFAULTS = MASK_RCNN_DEFAULTS
    threshold_option = "score_threshold"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_object_type(self.options)

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> list[dict[str, np.ndarray]]:
        return [mask_rcnn_instances(o, float(self.options["score_threshold"]),
                                    float(self.options["mask_threshold"]), int(self.options["max_detections"]))
                for o in self.module(list(batch))]

    def postprocessor(self) -> MaskRCNNObjects:
        return MaskRCNNObjects(self.spec, dict(self.options))


def mask_rcnn_instances(output: dict[str, torch.Tensor], score_threshold: float, mask_threshold: float,
                        max_detections: int) -> dict[str, np.ndarray]:
    """One image's Mask R-CNN output → `labels` (H, W) int32 label image (object k + 1), `scores` (k,) and
    `classes` (k,) torchvision labels (1-based), keeping the `max_detections` best above `score_threshold`."""
    keep = torch.nonzero(output["scores"] >= score_threshold).flatten()[:max_detections]  # sorted by score
    masks = output["masks"][keep, 0].float().cpu().numpy()
    scores = output["scores"][keep].float().cpu().numpy()
    height, width = output["masks"].shape[-2:]
    labels = paint_masks(masks, scores, mask_threshold) if len(keep) else np.zeros((height, width), np.int32)
    return {"labels": labels, "scores": scores, "classes": output["labels"][keep].cpu().numpy().astype(np.int64)}


@dataclass
class DistanceObjects:
    """A tile's foreground and distance maps → one polygon per object (seeded watershed), with class and score."""

    spec: ModelSpec
    options: dict[str, Any]

    def __call__(self, raw: np.ndarray, rgb: np.ndarray, tile: Tile) -> list[PathObject]:
        raw = raw.astype(np.float32)
        labels, scores = distance_watershed(raw[0], raw[1], self.options)
        if not labels.any():
            return []
        class_of: dict[int, int] = {}
        probabilities = None
        if raw.shape[0] > 2:
            count = int(labels.max()) + 1
            sizes = np.maximum(np.bincount(labels.ravel(), minlength=count), 1)
            means = np.stack([np.bincount(labels.ravel(), weights=p.ravel(), minlength=count) / sizes
                              for p in raw[2:]], axis=1)
            probabilities = {k: means[k] for k in range(1, count)}
            class_of = {k: int(np.argmax(means[k])) for k in range(1, count)}
        return _objects(labels, scores, class_of, self.spec, tile, self.options, probabilities)


@dataclass
class MaskRCNNObjects:
    """A tile's painted Mask R-CNN labels (`mask_rcnn_instances`) → one polygon per object, with class and score."""

    spec: ModelSpec
    options: dict[str, Any]

    def __call__(self, raw: dict[str, np.ndarray], rgb: np.ndarray, tile: Tile) -> list[PathObject]:
        labels = raw["labels"]
        if not labels.any():
            return []
        scores = np.concatenate([[0.0], raw["scores"]]).astype(np.float32)
        class_of = {k + 1: int(c) - 1 for k, c in enumerate(raw["classes"])}   # torchvision's 0 is background
        return _objects(labels, scores, class_of, self.spec, tile, self.options)
