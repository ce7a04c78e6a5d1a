"""Object detection: a Faster R-CNN (`cellbridge.networks.detector`) run on tiles, its boxes filtered (score,
class-aware NMS, top-k) and turned into QuPath detections (boxes, or their centres as points) with class and score.

Labels: torchvision's label 0 is background, so output label k is model.json class k - 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from shapely.geometry import Point, box
from torchvision.ops import batched_nms

from cellbridge.engines.base import Engine, EngineOptionError
from cellbridge.models.package import ModelSpec
from cellbridge.objects import SCORE_MEASUREMENT, PathObject
from cellbridge.tiling.plan import Tile

DEFAULTS: dict[str, Any] = {
    "score_threshold": 0.5,   # detections below are dropped
    "nms_iou": 0.5,           # class-aware NMS: same-class boxes overlapping more than this are duplicates
    "max_detections": 300,    # per tile, highest scores first
    "output": "boxes",        # or "points": the box centre as a Point
    "max_object_size": 128,   # model pixels; the tile overlap should exceed it
}


def filter_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float,
                      score_threshold: float, max_detections: int) -> dict[str, np.ndarray]:
    """Score threshold, class-aware NMS (boxes of different classes never suppress each other), top-k by score.

    Returns numpy `boxes` (N, 4) float32 as x0, y0, x1, y1, `scores` (N,) float32, `labels` (N,) int64.
    """
    keep = scores >= score_threshold
    boxes, scores, labels = boxes[keep].float(), scores[keep].float(), labels[keep]
    order = batched_nms(boxes, scores, labels, iou)[:max_detections]  # sorted by decreasing score
    return {"boxes": boxes[order].cpu().numpy().astype(np.float32),
            "scores": scores[order].cpu().numpy().astype(np.float32),
            "labels": labels[order].cpu().numpy().astype(np.int64)}


class DetectorEngine(Engine):
    """Faster R-CNN on tiles; boxes (or their centres) become QuPath detections with their class and score."""

    DEFAULTS = DEFAULTS
    threshold_option = "score_threshold"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.options["output"] not in ("boxes", "points"):
            raise EngineOptionError(f"model {self.spec.name!r}: option 'output' must be 'boxes' or 'points', "
                                    f"got {self.options['output']!r}")

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> list[dict[str, np.ndarray]]:
        outputs = self.module(list(batch))
        return [filter_detections(o["boxes"], o["scores"], o["labels"], float(self.options["nms_iou"]),
                                  float(self.options["score_threshold"]), int(self.options["max_detections"]))
                for o in outputs]

    def postprocessor(self) -> DetectionObjects:
        return DetectionObjects(self.spec, self.options["output"])


@dataclass
class DetectionObjects:
    """A tile's detections → level-0 PathObjects (box polygon, or centre point with `output="points"`) with class
    and score."""

    spec: ModelSpec
    output: str = "boxes"

    def __call__(self, raw: dict[str, np.ndarray], rgb: np.ndarray, tile: Tile) -> list[PathObject]:
        objects = []
        ds = tile.downsample
        for (x0, y0, x1, y1), score, label in zip(raw["boxes"], raw["scores"], raw["labels"]):
            index = int(label) - 1  # 0 is torchvision's background
            if not 0 <= index < len(self.spec.classes):
                continue
            lx0, ly0, lx1, ly1 = (tile.x + float(x0) * ds, tile.y + float(y0) * ds,
                                  tile.x + float(x1) * ds, tile.y + float(y1) * ds)
            geometry = Point((lx0 + lx1) / 2, (ly0 + ly1) / 2) if self.output == "points" else \
                box(lx0, ly0, lx1, ly1)
            objects.append(PathObject(geometry, "detection", self.spec.path_class(index),
                                      {SCORE_MEASUREMENT: round(float(score), 4)}))
        return objects
