"""Point detection scores: predicted cell centres against true ones, matched within a radius."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from cellbridge.evaluate.metrics import count_metrics


def _points(points: Any) -> np.ndarray:
    return np.asarray(points, dtype=float).reshape(-1, 2)


def match_points(pred: np.ndarray, true: np.ndarray, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of predicted (n, 2) to true (m, 2) points at distance ≤ `max_distance`.

    The matching has as many pairs as possible and, among those, the least total distance (Hungarian
    algorithm). Returns `pairs`, a (k, 2) int array of (pred index, true index) sorted by pred index, and
    their distances.
    """
    pred, true = _points(pred), _points(true)
    if not len(pred) or not len(true):
        return np.empty((0, 2), dtype=np.intp), np.empty(0)
    distance = cdist(pred, true)
    within = distance <= max_distance
    # One out-of-range pair costs more than any set of in-range pairs, so the number of matches comes first.
    cost = np.where(within, distance, max_distance * min(distance.shape) + 1.0)
    rows, cols = linear_sum_assignment(cost)
    keep = within[rows, cols]
    return np.stack([rows[keep], cols[keep]], axis=1), distance[rows[keep], cols[keep]]


def keypoint_f1(pred: np.ndarray, true: np.ndarray, max_distance: float) -> dict[str, Any]:
    """Precision, recall, F1 and TP/FP/FN of the optimal matching (`match_points`) of one image's points."""
    pred, true = _points(pred), _points(true)
    tp = len(match_points(pred, true, max_distance)[0])
    return count_metrics(tp, len(pred) - tp, len(true) - tp)


def _greedy_hits(pred: np.ndarray, true: np.ndarray, max_distance: float) -> np.ndarray:
    """Per prediction (in the given order): does it take the nearest still unmatched true point in range?"""
    distance = cdist(pred, true) if len(pred) and len(true) else np.empty((len(pred), len(true)))
    free = np.ones(len(true), dtype=bool)
    hits = np.zeros(len(pred), dtype=bool)
    for i, row in enumerate(distance):
        candidates = np.where(free & (row <= max_distance), row, np.inf)
        if len(candidates) and np.isfinite(best := candidates.min()):
            j = int(np.flatnonzero(candidates == best)[0])
            free[j], hits[i] = False, True
    return hits


def keypoint_ap(pred_points: np.ndarray | Sequence[np.ndarray], scores: np.ndarray | Sequence[np.ndarray],
                true_points: np.ndarray | Sequence[np.ndarray], max_distance: float) -> float:
    """Average precision of scored point predictions, for one image (arrays) or many (lists of arrays).

    Within each image predictions are taken by decreasing score; one is a true positive when an unmatched
    true point lies within `max_distance` (it takes the nearest), else a false positive. All images'
    predictions are then ranked by score (ties keep input order) and AP is the area under the precision-recall
    curve with precision made non-increasing (all-point interpolation, PASCAL VOC since 2010). Recall counts
    every true point of every image, so points never predicted lower it. No true points at all: 1.0 without
    predictions, else 0.0.
    """
    if isinstance(pred_points, np.ndarray):
        pred_points, scores, true_points = [pred_points], [scores], [true_points]
    all_hits, all_scores, n_true = [], [], 0
    for pred, score, true in zip(pred_points, scores, true_points, strict=True):
        pred, true, score = _points(pred), _points(true), np.asarray(score, dtype=float).reshape(-1)
        if len(score) != len(pred):
            raise ValueError(f"{len(pred)} points but {len(score)} scores")
        order = np.argsort(-score, kind="stable")
        all_hits.append(_greedy_hits(pred[order], true, max_distance))
        all_scores.append(score[order])
        n_true += len(true)
    hits, score = np.concatenate([np.zeros(0, bool), *all_hits]), np.concatenate([np.zeros(0), *all_scores])
    if n_true == 0:
        return 1.0 if len(hits) == 0 else 0.0
    tp = np.cumsum(hits[np.argsort(-score, kind="stable")])
    precision, recall = tp / np.arange(1, len(tp) + 1), tp / n_true
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * envelope))
