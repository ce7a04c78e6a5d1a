"""Scores from match counts, shared by the keypoint, instance and gland metrics, and their sum over images.

Empty inputs never give NaN: with nothing to find and nothing found every score is 1.0 (a perfect result);
when only one side is empty the scores are 0.0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def count_metrics(tp: int, fp: int, fn: int) -> dict[str, Any]:
    """Precision, recall and F1 = 2TP / (2TP + FP + FN) from true/false positive and false negative counts."""
    tp, fp, fn = int(tp), int(fp), int(fn)
    if tp + fp + fn == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 0, "fp": 0, "fn": 0}
    return {"precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn), "tp": tp, "fp": fp, "fn": fn}


def panoptic_metrics(tp: int, fp: int, fn: int, iou_sum: float) -> dict[str, float]:
    """Panoptic quality (Kirillov et al. 2019) from counts and the summed IoU of the matched pairs.

    PQ = iou_sum / (TP + FP/2 + FN/2) = SQ × RQ, with SQ the mean IoU of the matches (also returned as
    `mean_matched_iou`) and RQ = F1. SQ is 0.0 without matches.
    """
    if tp + fp + fn == 0:
        return {"mean_matched_iou": 1.0, "pq": 1.0, "sq": 1.0, "rq": 1.0}
    sq = float(iou_sum) / tp if tp else 0.0
    return {"mean_matched_iou": sq, "pq": float(iou_sum) / (tp + fp / 2 + fn / 2), "sq": sq,
            "rq": tp / (tp + fp / 2 + fn / 2)}


def aggregate_counts(metrics: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Overall scores from per-image metric dicts, summing TP, FP, FN (and `iou_sum` if all have it) first."""
    metrics = list(metrics)
    tp, fp, fn = (sum(int(m[key]) for m in metrics) for key in ("tp", "fp", "fn"))
    result = count_metrics(tp, fp, fn)
    if metrics and all("iou_sum" in m for m in metrics):
        iou_sum = sum(float(m["iou_sum"]) for m in metrics)
        result.update(panoptic_metrics(tp, fp, fn, iou_sum), iou_sum=iou_sum)
    return result
