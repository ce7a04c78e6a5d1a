"""Evaluation metrics: COCO detection AP, keypoint matching, instance, semantic and GlaS gland segmentation.

Every function is pure and returns plain Python numbers (floats, ints, lists, dicts), so results are
JSON-serialisable. Scores over many images come from summed counts (`aggregate_counts`), never from averaging
per-image F1.
"""

from cellbridge.evaluate.detection import coco_detection_metrics
from cellbridge.evaluate.keypoints import keypoint_ap, keypoint_f1, match_points
from cellbridge.evaluate.metrics import aggregate_counts, count_metrics, panoptic_metrics
from cellbridge.evaluate.segmentation import (
    glas_metrics,
    instance_metrics,
    instance_metrics_polygons,
    match_instances,
    pixel_metrics,
)

__all__ = [
    "aggregate_counts",
    "coco_detection_metrics",
    "count_metrics",
    "glas_metrics",
    "instance_metrics",
    "instance_metrics_polygons",
    "keypoint_ap",
    "keypoint_f1",
    "match_instances",
    "match_points",
    "panoptic_metrics",
    "pixel_metrics",
]
