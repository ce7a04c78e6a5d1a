"""Segmentation scores: instances (label images or polygons), semantic pixel maps, and GlaS gland metrics.

Label images hold 0 for background and any positive integer per instance (ids need not be consecutive).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import shapely
from scipy import ndimage, sparse
from scipy.optimize import linear_sum_assignment
from shapely.geometry import Polygon
from skimage.metrics import hausdorff_distance

from cellbridge.evaluate.metrics import count_metrics, panoptic_metrics


def _label_pair(pred_labels: np.ndarray, true_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, true = np.asarray(pred_labels), np.asarray(true_labels)
    if pred.shape != true.shape:
        raise ValueError(f"prediction and truth differ in shape: {pred.shape} vs {true.shape}")
    return pred, true


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instance ids (sorted), the image relabelled 1..n (0 background) and each instance's pixel area."""
    ids, index = np.unique(labels.ravel(), return_inverse=True)
    if ids.size and ids[0] < 0:
        raise ValueError("label images must not hold negative ids")
    if ids.size and ids[0] == 0:
        ids = ids[1:]
    else:
        index = index + 1
    return ids, index.reshape(labels.shape), np.bincount(index.ravel(), minlength=len(ids) + 1)[1:]


def _intersections(pred_index: np.ndarray, true_index: np.ndarray,
                   n_pred: int, n_true: int) -> sparse.coo_matrix:
    """Sparse (n_pred, n_true) pixel counts of every overlap: the contingency table without background."""
    both = (pred_index > 0) & (true_index > 0)
    table = sparse.coo_matrix((np.ones(int(both.sum()), dtype=np.int64),
                               (pred_index[both] - 1, true_index[both] - 1)), shape=(n_pred, n_true))
    table.sum_duplicates()
    return table


def _match(rows: np.ndarray, cols: np.ndarray, ious: np.ndarray,
           threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matches among candidate pairs (rows[k], cols[k]) with IoU > threshold.

    From 0.5 up such pairs are unique already (two objects cannot both overlap a third by more than half its
    union); below it the matching has as many pairs as possible, then the largest IoU sum (Hungarian).
    """
    keep = ious > threshold
    rows, cols, ious = rows[keep], cols[keep], ious[keep]
    if threshold < 0.5 and len(ious):
        row_ids, r = np.unique(rows, return_inverse=True)
        col_ids, c = np.unique(cols, return_inverse=True)
        iou = np.zeros((len(row_ids), len(col_ids)))
        iou[r, c] = ious
        # A candidate pair outweighs any IoU sum, so the number of matches comes first.
        i, j = linear_sum_assignment(np.where(iou > 0, iou + min(iou.shape) + 1.0, 0.0), maximize=True)
        i, j = i[iou[i, j] > 0], j[iou[i, j] > 0]
        rows, cols, ious = row_ids[i], col_ids[j], iou[i, j]
    order = np.argsort(rows, kind="stable")
    return rows[order], cols[order], ious[order]


def _instance_scores(n_pred: int, n_true: int, ious: np.ndarray) -> dict[str, Any]:
    tp, fp, fn, iou_sum = len(ious), n_pred - len(ious), n_true - len(ious), float(np.sum(ious))
    return {**count_metrics(tp, fp, fn), **panoptic_metrics(tp, fp, fn, iou_sum), "iou_sum": iou_sum}


def _label_matches(pred_labels: np.ndarray, true_labels: np.ndarray, iou_threshold: float):
    pred, true = _label_pair(pred_labels, true_labels)
    pred_ids, pred_index, pred_area = _relabel(pred)
    true_ids, true_index, true_area = _relabel(true)
    table = _intersections(pred_index, true_index, len(pred_ids), len(true_ids))
    ious = table.data / (pred_area[table.row] + true_area[table.col] - table.data)
    rows, cols, ious = _match(table.row, table.col, ious, iou_threshold)
    return pred_ids, true_ids, rows, cols, ious


def match_instances(pred_labels: np.ndarray, true_labels: np.ndarray,
                    iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches of predicted to true instances with IoU > `iou_threshold`.

    Returns `pairs`, a (k, 2) array of (pred label, true label) sorted by pred label, and their IoUs.
    """
    pred_ids, true_ids, rows, cols, ious = _label_matches(pred_labels, true_labels, iou_threshold)
    return np.stack([pred_ids[rows], true_ids[cols]], axis=1), ious.astype(float)


def instance_metrics(pred_labels: np.ndarray, true_labels: np.ndarray,
                     iou_threshold: float = 0.5) -> dict[str, Any]:
    """Instance scores of two label images at an IoU threshold (matching as in `match_instances`).

    Returns precision, recall, f1, tp, fp, fn, mean_matched_iou, panoptic pq/sq/rq and `iou_sum` (so that
    `aggregate_counts` can sum images).
    """
    pred_ids, true_ids, _, _, ious = _label_matches(pred_labels, true_labels, iou_threshold)
    return _instance_scores(len(pred_ids), len(true_ids), ious)


def instance_metrics_polygons(pred: Sequence[Polygon], true: Sequence[Polygon],
                              iou_threshold: float = 0.5) -> dict[str, Any]:
    """`instance_metrics` for polygons (e.g. whole-slide outputs too large to rasterise).

    Candidate pairs come from an STRtree of the true polygons; invalid polygons are repaired first.
    """
    pred_geoms = shapely.make_valid(np.array(list(pred), dtype=object))
    true_geoms = shapely.make_valid(np.array(list(true), dtype=object))
    rows, cols = shapely.STRtree(true_geoms).query(pred_geoms, predicate="intersects")
    intersection = shapely.area(shapely.intersection(pred_geoms[rows], true_geoms[cols]))
    union = shapely.area(pred_geoms[rows]) + shapely.area(true_geoms[cols]) - intersection
    ious = np.divide(intersection, union, out=np.zeros(len(union)), where=union > 0)
    _, _, ious = _match(rows, cols, ious, iou_threshold)
    return _instance_scores(len(pred_geoms), len(true_geoms), ious)


def pixel_metrics(pred: np.ndarray, true: np.ndarray, n_classes: int,
                  ignore_index: int | None = None) -> dict[str, Any]:
    """Semantic segmentation scores of class maps holding 0..n_classes-1.

    Pixels whose truth is `ignore_index` are left out. The confusion matrix has true classes as rows and
    predicted classes as columns. A class absent from both maps has IoU None and is left out of `mean_iou`.
    """
    pred, true = _label_pair(pred, true)
    keep = np.ones(true.shape, dtype=bool) if ignore_index is None else true != ignore_index
    p, t = pred[keep].astype(np.int64), true[keep].astype(np.int64)
    if ((p < 0) | (p >= n_classes) | (t < 0) | (t >= n_classes)).any():
        raise ValueError(f"class maps must hold 0..{n_classes - 1} (or ignore_index in the truth)")
    confusion = np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    hits = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - hits
    per_class = [float(hits[k] / union[k]) if union[k] else None for k in range(n_classes)]
    present = [iou for iou in per_class if iou is not None]
    return {"pixel_accuracy": float(hits.sum() / confusion.sum()) if confusion.sum() else 1.0,
            "per_class_iou": per_class, "mean_iou": float(np.mean(present)) if present else 1.0,
            "confusion_matrix": confusion.tolist()}


def glas_metrics(pred_labels: np.ndarray, true_labels: np.ndarray) -> dict[str, Any]:
    """Object-level F1, Dice and Hausdorff of the GlaS 2015 gland challenge (Sirinukunwattana et al. 2017).

    With segmented objects S_j and ground-truth objects G_i (areas |.|), as in the challenge's own code:

    - F1: S_j is a true positive when it covers at least 50% of the area of the G_i it overlaps most, else
      a false positive; a G_i with no true positive on it is a false negative.
    - Dice: ½ [Σ_i γ_i Dice(G_i, S*(G_i)) + Σ_j σ_j Dice(G*(S_j), S_j)], γ_i = |G_i| / Σ|G|,
      σ_j = |S_j| / Σ|S|, where S*(G_i) is the segmented object overlapping G_i most (Dice 0 when none
      overlaps) and G*(S_j) the ground-truth object overlapping S_j most.
    - Hausdorff: the same weighted sum of H(G_i, S*(G_i)) and H(G*(S_j), S_j), except that an object
      overlapping nothing is paired with the object of the other image nearest by Hausdorff distance. H is
      the symmetric Hausdorff distance between the objects' pixel sets, in pixels (row, column).

    Ties in overlap go to the smaller label (MATLAB's `mode`). Both images empty: F1 = Dice = 1 and
    Hausdorff = 0; one empty: F1 = Dice = 0 and Hausdorff is the image diagonal (the challenge code leaves
    it undefined). Also returns tp, fp, fn, for summing F1 over images with `aggregate_counts`.
    """
    pred, true = _label_pair(pred_labels, true_labels)
    s_ids, s_index, s_area = _relabel(pred)
    g_ids, g_index, g_area = _relabel(true)
    n_s, n_g = len(s_ids), len(g_ids)
    if n_s == 0 or n_g == 0:
        counts = count_metrics(0, n_s, n_g)
        empty = n_s == n_g == 0
        return {"object_f1": counts["f1"], "object_dice": 1.0 if empty else 0.0,
                "object_hausdorff": 0.0 if empty else float(np.linalg.norm(pred.shape)),
                **{key: counts[key] for key in ("tp", "fp", "fn")}}
    overlap = _intersections(s_index, g_index, n_s, n_g).toarray()
    best_g, best_s = overlap.argmax(axis=1), overlap.argmax(axis=0)  # first maximum: the smaller label
    s_overlap, g_overlap = overlap[np.arange(n_s), best_g], overlap[best_s, np.arange(n_g)]

    is_tp = s_overlap >= 0.5 * g_area[best_g]
    counts = count_metrics(int(is_tp.sum()), int((~is_tp).sum()), n_g - len(np.unique(best_g[is_tp])))

    dice_g = 2 * g_overlap / (g_area + s_area[best_s])
    dice_s = 2 * s_overlap / (s_area + g_area[best_g])
    object_dice = 0.5 * (dice_g @ g_area / g_area.sum() + dice_s @ s_area / s_area.sum())

    s_boxes, g_boxes = ndimage.find_objects(s_index), ndimage.find_objects(g_index)

    @cache
    def hausdorff(j: int, i: int) -> float:
        """H(S_j, G_i), on the bounding box of the pair."""
        box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(s_boxes[j], g_boxes[i]))
        return float(hausdorff_distance(s_index[box] == j + 1, g_index[box] == i + 1))

    h_s = [hausdorff(j, int(best_g[j])) if s_overlap[j] else min(hausdorff(j, i) for i in range(n_g))
           for j in range(n_s)]
    h_g = [hausdorff(int(best_s[i]), i) if g_overlap[i] else min(hausdorff(j, i) for j in range(n_s))
           for i in range(n_g)]
    object_hausdorff = 0.5 * (np.dot(h_g, g_area) / g_area.sum() + np.dot(h_s, s_area) / s_area.sum())
    return {"object_f1": counts["f1"], "object_dice": float(object_dice),
            "object_hausdorff": float(object_hausdorff), **{key: counts[key] for key in ("tp", "fp", "fn")}}
