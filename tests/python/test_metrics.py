"""Evaluation metrics against small cases worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cellbridge.evaluate import (
    aggregate_counts,
    coco_detection_metrics,
    glas_metrics,
    instance_metrics,
    instance_metrics_polygons,
    keypoint_ap,
    keypoint_f1,
    match_instances,
    match_points,
    pixel_metrics,
)
from pycocotools import mask as mask_utils
from shapely.geometry import box

approx = pytest.approx


# --- COCO ---------------------------------------------------------------------------------------------------

def coco_gt(boxes: list[tuple[int, int, list[float]]]) -> dict:
    """A COCO dict: two 100x100 images, classes tumor (1) and immune (2), annotations (image, class, box)."""
    annotations = [{"id": k + 1, "image_id": image_id, "category_id": category_id, "bbox": bbox,
                    "area": bbox[2] * bbox[3], "iscrowd": 0,
                    "segmentation": [[bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1], bbox[0] + bbox[2],
                                      bbox[1] + bbox[3], bbox[0], bbox[1] + bbox[3]]]}
                   for k, (image_id, category_id, bbox) in enumerate(boxes)]
    return {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.png"},
                       {"id": 2, "width": 100, "height": 100, "file_name": "b.png"}],
            "categories": [{"id": 1, "name": "tumor"}, {"id": 2, "name": "immune"}],
            "annotations": annotations}


def result(image_id: int, category_id: int, bbox: list[float], score: float = 0.9) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def test_coco_perfect_detections_score_one(capsys):
    gt = coco_gt([(1, 1, [10, 10, 20, 20]), (2, 2, [50, 50, 10, 10])])
    dt = [result(1, 1, [10, 10, 20, 20]), result(2, 2, [50, 50, 10, 10])]
    scores = coco_detection_metrics(gt, dt)
    assert scores["AP"] == approx(1.0) and scores["AP50"] == approx(1.0) and scores["AP75"] == approx(1.0)
    assert scores["AR100"] == approx(1.0)
    assert scores["per_class_AP50"] == {"tumor": approx(1.0), "immune": approx(1.0)}
    assert capsys.readouterr().out == ""  # pycocotools kept quiet
    assert "area" not in dt[0] and "id" not in dt[0]  # loadRes writes into results: ours must not leak out
    json.dumps(scores)


def test_coco_one_of_two_found_is_51_of_101():
    # One class, two objects, one found with the exact box and no false positive: the PR curve is the single
    # point (recall 0.5, precision 1). COCO samples precision at recall 0, 0.01, ..., 1 (101 points) and takes
    # the precision at the first point of the curve with recall >= r: 1 for r <= 0.5 (51 points), nothing
    # (0) above. AP50 = 51/101 = 0.50495; IoU is 1 at every threshold, so AP = AP75 = 51/101 too. AR = 0.5.
    gt = coco_gt([(1, 1, [10, 10, 20, 20]), (2, 1, [50, 50, 10, 10])])
    scores = coco_detection_metrics(gt, [result(1, 1, [10, 10, 20, 20])])
    assert scores["AP50"] == approx(51 / 101) and scores["AP"] == approx(51 / 101)
    assert scores["AP75"] == approx(51 / 101) and scores["AR100"] == approx(0.5)
    assert scores["per_class_AP50"] == {"tumor": approx(51 / 101)}  # immune has no ground truth: left out


def test_coco_iou_two_thirds_counts_at_four_of_ten_thresholds():
    # Truth 10x10 at (0,0), detection 10x15 at (0,0): IoU = 100 / 150 = 0.667. It matches at IoU thresholds
    # 0.50, 0.55, 0.60, 0.65 (4 of 10): AP50 = 1, AP75 = 0, AP = AR100 = 4/10.
    gt = coco_gt([(1, 1, [0, 0, 10, 10])])
    scores = coco_detection_metrics(gt, [result(1, 1, [0, 0, 10, 15])])
    assert scores["AP50"] == approx(1.0) and scores["AP75"] == approx(0.0)
    assert scores["AP"] == approx(0.4) and scores["AR100"] == approx(0.4)


def test_coco_per_class_ap50_and_mean_over_classes():
    # tumor found exactly (AP50 1), immune missed (0): AP50 is the mean over classes, 0.5. A false positive
    # ranked below the true one does not lower tumor's precision at any recall up to 1.
    gt = coco_gt([(1, 1, [10, 10, 20, 20]), (2, 2, [50, 50, 10, 10])])
    dt = [result(1, 1, [10, 10, 20, 20], 0.9), result(1, 1, [70, 70, 10, 10], 0.2)]
    scores = coco_detection_metrics(gt, dt)
    assert scores["per_class_AP50"] == {"tumor": approx(1.0), "immune": approx(0.0)}
    assert scores["AP50"] == approx(0.5)


def test_coco_ar100_counts_detections_beyond_the_tenth():
    # One image with 20 objects, each found exactly, with falling scores. AR100 keeps all 20 detections:
    # recall 1 at every IoU threshold. Keeping only the 10 best (AR10) would give 0.5, only the best (AR1) 0.05.
    boxes = [[5 * k, 10 * row, 4, 8] for row in range(2) for k in range(10)]
    gt = coco_gt([(1, 1, b) for b in boxes])
    dt = [result(1, 1, b, score=1.0 - 0.01 * i) for i, b in enumerate(boxes)]
    scores = coco_detection_metrics(gt, dt)
    assert scores["AR100"] == approx(1.0)
    assert scores["AP"] == approx(1.0)


def test_coco_empty_detections_and_empty_truth():
    gt = coco_gt([(1, 1, [10, 10, 20, 20])])
    scores = coco_detection_metrics(gt, [])
    assert (scores["AP"], scores["AP50"], scores["AP75"], scores["AR100"]) == (0.0, 0.0, 0.0, 0.0)
    assert scores["per_class_AP50"] == {"tumor": 0.0}
    assert coco_detection_metrics(coco_gt([]), [])["AP"] == 1.0
    assert coco_detection_metrics(coco_gt([]), [result(1, 1, [0, 0, 5, 5])])["AP50"] == 0.0


def test_coco_segm_with_rle_and_polygon_results():
    gt = coco_gt([(1, 1, [10, 10, 20, 20]), (2, 1, [40, 40, 10, 10])])
    mask = np.zeros((100, 100), dtype=np.uint8)
    mask[10:30, 10:30] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    dt = [{"image_id": 1, "category_id": 1, "segmentation": rle, "score": 0.9},
          {"image_id": 2, "category_id": 1, "segmentation": [[40, 40, 50, 40, 50, 50, 40, 50]], "score": 0.8}]
    # Both masks equal the ground truth polygons rasterised the same way: every IoU is 1.
    assert coco_detection_metrics(gt, dt, iou_type="segm")["AP"] == approx(1.0)
    # Only the first: one of two found again, 51/101.
    assert coco_detection_metrics(gt, dt[:1], iou_type="segm")["AP50"] == approx(51 / 101)
    with pytest.raises(ValueError):
        coco_detection_metrics(gt, dt, iou_type="keypoints")


# --- keypoints ----------------------------------------------------------------------------------------------

def test_match_points_three_predictions_two_truths():
    # Truth T0 (0,0), T1 (10,0). P0 (1,0) is 1 from T0, P1 (8,0) is 2 from T1, P2 (30,30) is far from both.
    pred, true = np.array([[1, 0], [8, 0], [30, 30]]), np.array([[0, 0], [10, 0]])
    pairs, distances = match_points(pred, true, max_distance=3)
    assert pairs.tolist() == [[0, 0], [1, 1]] and distances.tolist() == approx([1.0, 2.0])
    # TP 2, FP 1 (P2), FN 0: precision 2/3, recall 1, F1 = 4 / (4 + 1) = 0.8.
    assert keypoint_f1(pred, true, 3) == {"precision": approx(2 / 3), "recall": 1.0, "f1": approx(0.8),
                                          "tp": 2, "fp": 1, "fn": 0}


def test_match_points_is_optimal_not_greedy():
    # Truth A (0,0), B (5,0); P0 (2,0) is 2 from A and 3 from B; P1 (-2.5,0) is 2.5 from A, 7.5 from B.
    # Nearest-first would give P0-A and leave P1 unmatched; the optimum pairs P0-B (3: radius incl.), P1-A.
    pairs, distances = match_points(np.array([[2, 0], [-2.5, 0]]), np.array([[0, 0], [5, 0]]), 3)
    assert pairs.tolist() == [[0, 1], [1, 0]] and distances.tolist() == approx([3.0, 2.5])


def test_keypoint_f1_empty_sides():
    some = np.array([[1.0, 1.0]])
    none = np.empty((0, 2))
    assert keypoint_f1(none, none, 5)["f1"] == 1.0
    zeros = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0}
    assert keypoint_f1(some, none, 5) == zeros | {"fp": 1, "fn": 0}
    assert keypoint_f1(none, some, 5) == zeros | {"fp": 0, "fn": 1}


def test_keypoint_ap_over_two_images():
    # Image 1: truth (0,0), (10,0); predictions (0,1) 0.9 -> TP, (50,50) 0.8 -> FP, (10,1) 0.7 -> TP.
    # Image 2: truth (0,0), nothing predicted. 3 true points in all.
    # Ranked: TP, FP, TP -> precision 1, 1/2, 2/3; recall 1/3, 1/3, 2/3; made non-increasing: 1, 2/3, 2/3.
    # AP = 1/3 * 1 + 0 * 2/3 + 1/3 * 2/3 = 5/9.
    preds = [np.array([[0, 1], [50, 50], [10, 1]]), np.empty((0, 2))]
    scores = [np.array([0.9, 0.8, 0.7]), np.empty(0)]
    truths = [np.array([[0, 0], [10, 0]]), np.array([[0, 0]])]
    assert keypoint_ap(preds, scores, truths, max_distance=2) == approx(5 / 9)
    # Scores reordered, FP first: precision 0, 1/2, 2/3 at recall 0, 1/3, 2/3; made non-increasing 2/3, 2/3,
    # 2/3 -> AP = 1/3 * 2/3 + 1/3 * 2/3 = 4/9 (without the interpolation it would be 1/6 + 2/9 = 7/18).
    assert keypoint_ap(preds, [np.array([0.7, 0.9, 0.8]), np.empty(0)], truths, 2) == approx(4 / 9)


def test_keypoint_ap_is_greedy_by_score():
    # Truth A (0,0), B (4,0), radius 3. P1 (3,0) score 0.9 takes the nearer B (1 away, A is 3 away);
    # P2 (6,0) score 0.8 then finds B taken and A 6 away: FP. Ranked TP, FP: AP = 1/2 * 1 = 0.5,
    # although the optimal matching (P1-A, P2-B) would find both.
    pred, true = np.array([[3, 0], [6, 0]]), np.array([[0, 0], [4, 0]])
    assert keypoint_ap(pred, np.array([0.9, 0.8]), true, 3) == approx(0.5)
    assert keypoint_f1(pred, true, 3)["tp"] == 2
    assert keypoint_ap(np.empty((0, 2)), np.empty(0), np.empty((0, 2)), 3) == 1.0
    assert keypoint_ap(np.empty((0, 2)), np.empty(0), true, 3) == 0.0
    assert keypoint_ap(pred, np.array([0.9, 0.8]), np.empty((0, 2)), 3) == 0.0


# --- instances ----------------------------------------------------------------------------------------------

def two_squares() -> tuple[np.ndarray, np.ndarray]:
    """Truth: 4x4 square id 3 at columns 0-3, 4x4 square id 10 elsewhere. Prediction: the first shifted one
    column right (id 42), and a stray 2x2 object (id 7) where there is no truth."""
    true = np.zeros((12, 12), dtype=np.int32)
    true[0:4, 0:4] = 3
    true[8:12, 8:12] = 10
    pred = np.zeros_like(true)
    pred[0:4, 1:5] = 42
    pred[8:10, 0:2] = 7
    return pred, true


def test_instance_metrics_shifted_square():
    # Square 42 vs 3: intersection 4x3 = 12, union 16 + 16 - 12 = 20, IoU 0.6 > 0.5: one match.
    # TP 1, FP 1 (id 7), FN 1 (id 10): precision = recall = F1 = 0.5; PQ = 0.6 / (1 + 0.5 + 0.5) = 0.3,
    # SQ = 0.6, RQ = 0.5.
    pred, true = two_squares()
    pairs, ious = match_instances(pred, true)
    assert pairs.tolist() == [[42, 3]] and ious.tolist() == approx([0.6])
    scores = instance_metrics(pred, true)
    assert scores == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "tp": 1, "fp": 1, "fn": 1,
                      "mean_matched_iou": approx(0.6), "pq": approx(0.3), "sq": approx(0.6), "rq": 0.5,
                      "iou_sum": approx(0.6)}
    # At IoU 0.7 nothing matches: TP 0, FP 2, FN 2, PQ 0.
    assert instance_metrics(pred, true, 0.7) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0,
                                                       "fp": 2, "fn": 2, "mean_matched_iou": 0.0, "pq": 0.0,
                                                       "sq": 0.0, "rq": 0.0, "iou_sum": 0.0}
    json.dumps(scores)


def strips() -> tuple[np.ndarray, np.ndarray]:
    """One-row label images. Truth X = columns [0,10), Y = [10,16). Prediction A = [4,14), B = [0,4)."""
    true = np.zeros((1, 20), dtype=np.int32)
    true[0, 0:10], true[0, 10:16] = 1, 2
    pred = np.zeros_like(true)
    pred[0, 4:14], pred[0, 0:4] = 1, 2
    return pred, true


def test_low_threshold_matching_maximises_matches():
    # IoU(A,X) = 6/14 = 0.43, IoU(A,Y) = 4/12 = 0.33, IoU(B,X) = 4/10 = 0.4. At 0.3, taking the best pair A-X
    # first would leave B and Y unmatched; the assignment takes A-Y and B-X: TP 2, mean IoU (0.4 + 1/3) / 2.
    pred, true = strips()
    pairs, ious = match_instances(pred, true, iou_threshold=0.3)
    assert pairs.tolist() == [[1, 2], [2, 1]] and ious.tolist() == approx([1 / 3, 0.4])
    scores = instance_metrics(pred, true, 0.3)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (2, 0, 0)
    assert scores["mean_matched_iou"] == approx((0.4 + 1 / 3) / 2)
    assert scores["pq"] == approx((0.4 + 1 / 3) / 2)
    # At 0.5 no pair qualifies.
    assert instance_metrics(pred, true)["tp"] == 0


def test_instance_metrics_polygons_agree_with_hand_values():
    truth = [box(0, 0, 4, 4), box(8, 8, 12, 12)]
    predicted = [box(1, 0, 5, 4), box(0, 8, 2, 10)]
    scores = instance_metrics_polygons(predicted, truth)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 1, 1)
    assert scores["mean_matched_iou"] == approx(0.6) and scores["pq"] == approx(0.3)
    # The strips as boxes (one unit high): the same two matches at 0.3.
    strips_scores = instance_metrics_polygons([box(4, 0, 14, 1), box(0, 0, 4, 1)],
                                              [box(0, 0, 10, 1), box(10, 0, 16, 1)], 0.3)
    assert strips_scores["tp"] == 2 and strips_scores["iou_sum"] == approx(0.4 + 1 / 3)
    assert instance_metrics_polygons([], [])["f1"] == 1.0
    assert instance_metrics_polygons([], truth)["fn"] == 2


def halves() -> tuple[np.ndarray, np.ndarray]:
    """Truth: one 10x10 square. Prediction: its left and right halves, each with IoU 50 / 100 = 0.5 exactly."""
    true = np.zeros((12, 12), dtype=np.int32)
    true[1:11, 1:11] = 1
    pred = np.zeros_like(true)
    pred[1:11, 1:6], pred[1:11, 6:11] = 1, 2
    return pred, true


def test_iou_exactly_at_the_threshold_is_no_match():
    # A match needs IoU above 0.5: neither half matches. TP 0, FP 2, FN 1: F1 = 0, PQ = 0. Were IoU 0.5 enough,
    # both halves would match the one truth (TP 2, FN -1).
    pred, true = halves()
    pairs, ious = match_instances(pred, true)
    assert pairs.tolist() == [] and ious.tolist() == []
    nothing = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 2, "fn": 1, "mean_matched_iou": 0.0,
               "pq": 0.0, "sq": 0.0, "rq": 0.0, "iou_sum": 0.0}
    assert instance_metrics(pred, true) == nothing
    assert instance_metrics_polygons([box(1, 1, 6, 11), box(6, 1, 11, 11)], [box(1, 1, 11, 11)]) == nothing
    # just below 0.5 the threshold is passed by one half at a time: one match of IoU 0.5 (TP 1, FP 1, FN 0)
    below = instance_metrics(pred, true, 0.49)
    assert (below["tp"], below["fp"], below["fn"]) == (1, 1, 0)
    assert below["f1"] == approx(2 / 3) and below["pq"] == approx(0.5 / 1.5)


def test_instance_metrics_empty_images():
    empty = np.zeros((5, 5), dtype=np.int32)
    one = empty.copy()
    one[1:3, 1:3] = 9
    assert instance_metrics(empty, empty) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 0, "fp": 0,
                                              "fn": 0, "mean_matched_iou": 1.0, "pq": 1.0, "sq": 1.0,
                                              "rq": 1.0, "iou_sum": 0.0}
    assert instance_metrics(one, empty)["f1"] == 0.0 and instance_metrics(one, empty)["fp"] == 1
    assert instance_metrics(empty, one)["pq"] == 0.0 and instance_metrics(empty, one)["fn"] == 1
    with pytest.raises(ValueError):
        instance_metrics(empty, np.zeros((4, 5), dtype=np.int32))


def test_aggregate_counts_sums_before_scoring():
    # Image 1: TP 1, FP 1, FN 1 (IoU 0.6); image 2: TP 2, FP 0, FN 0 (IoUs 0.4 + 1/3).
    # Summed: TP 3, FP 1, FN 1 -> precision = F1 = 3/4; PQ = (0.6 + 0.4 + 1/3) / (3 + 0.5 + 0.5),
    # SQ = (0.6 + 0.4 + 1/3) / 3.
    per_image = [instance_metrics(*two_squares()), instance_metrics(*strips(), 0.3)]
    overall = aggregate_counts(per_image)
    assert (overall["tp"], overall["fp"], overall["fn"]) == (3, 1, 1)
    assert overall["precision"] == approx(0.75) and overall["f1"] == approx(0.75)
    assert overall["pq"] == approx((0.6 + 0.4 + 1 / 3) / 4)
    assert overall["sq"] == approx((0.6 + 0.4 + 1 / 3) / 3)
    # Keypoint dicts (no iou_sum) sum too: (TP 2, FP 1, FN 0) + (TP 0, FP 0, FN 1) -> precision = recall =
    # F1 = 2/3, whereas the mean of the per-image F1s (0.8 and 0) would be 0.4.
    points = aggregate_counts([{"tp": 2, "fp": 1, "fn": 0}, {"tp": 0, "fp": 0, "fn": 1}])
    assert points == {"precision": approx(2 / 3), "recall": approx(2 / 3), "f1": approx(2 / 3),
                      "tp": 2, "fp": 1, "fn": 1}
    assert "pq" not in points
    assert aggregate_counts([])["f1"] == 1.0


# --- semantic -----------------------------------------------------------------------------------------------

TRUE_MAP = np.array([[0, 0, 1, 1],
                     [0, 0, 1, 1],
                     [2, 2, 2, 2],
                     [2, 2, 2, 2]])
PRED_MAP = np.array([[0, 0, 1, 1],
                     [0, 1, 1, 1],
                     [2, 2, 2, 0],
                     [2, 2, 2, 2]])


def test_pixel_metrics_three_classes():
    # Confusion (rows truth, columns prediction): class 0: 3 right, 1 called 1; class 1: 4 right;
    # class 2: 7 right, 1 called 0. Accuracy 14/16. IoU0 = 3/(3+1+1) = 0.6, IoU1 = 4/(4+1) = 0.8,
    # IoU2 = 7/(7+1) = 0.875; mean 2.275/3.
    scores = pixel_metrics(PRED_MAP, TRUE_MAP, n_classes=3)
    assert scores["confusion_matrix"] == [[3, 1, 0], [0, 4, 0], [1, 0, 7]]
    assert scores["pixel_accuracy"] == approx(14 / 16)
    assert scores["per_class_iou"] == approx([0.6, 0.8, 0.875])
    assert scores["mean_iou"] == approx(2.275 / 3)
    json.dumps(scores)


def test_pixel_metrics_ignore_index_and_absent_class():
    # Ignoring the truth pixel at (2,3) drops the one class-2 error: class 2 7/7 right, class 0 IoU 3/4.
    true = TRUE_MAP.copy()
    true[2, 3] = 255
    scores = pixel_metrics(PRED_MAP, true, n_classes=4, ignore_index=255)
    assert scores["confusion_matrix"] == [[3, 1, 0, 0], [0, 4, 0, 0], [0, 0, 7, 0], [0, 0, 0, 0]]
    assert scores["pixel_accuracy"] == approx(14 / 15)
    assert scores["per_class_iou"] == approx([0.75, 0.8, 1.0, None])  # class 3 in neither map: undefined
    assert scores["mean_iou"] == approx((0.75 + 0.8 + 1.0) / 3)
    with pytest.raises(ValueError):
        pixel_metrics(PRED_MAP, true, n_classes=3)  # 255 not ignored is not a class


# --- GlaS ---------------------------------------------------------------------------------------------------

def glands() -> tuple[np.ndarray, np.ndarray]:
    """A 4x12 image. Truth: G1 (id 1) rows 0-1 x cols 0-3, G2 (id 5) rows 0-1 x cols 8-11 (8 px each).
    Segmentation: S1 (id 2) rows 0-1 x cols 0-2 (6 px), S2 (id 7) rows 0-1 x cols 7-8 (4 px), S3 (id 3)
    row 3 x cols 8-11 (4 px)."""
    true = np.zeros((4, 12), dtype=np.int32)
    true[0:2, 0:4], true[0:2, 8:12] = 1, 5
    pred = np.zeros_like(true)
    pred[0:2, 0:3], pred[0:2, 7:9], pred[3, 8:12] = 2, 7, 3
    return pred, true


def test_glas_metrics_by_hand():
    # F1: S1 covers 6 of G1's 8 px (75%) -> TP; S2 covers 2 of G2's 8 (25%) -> FP; S3 overlaps nothing -> FP.
    #   TP 1, FP 2, FN 1 (G2) -> F1 = 2 / (2 + 2 + 1) = 0.4.
    # Dice, truth side (weights 8/16 each): G1-S1 2*6/(8+6) = 6/7, G2-S2 2*2/(8+4) = 1/3 -> 25/42.
    #   segmented side (weights 6/14, 4/14, 4/14): S1 6/7, S2 1/3, S3 0 -> (36/7 + 4/3) / 14 = 68/147.
    #   Object Dice = (25/42 + 68/147) / 2 = (175/294 + 136/294) / 2 = 311/588.
    # Hausdorff (pixel sets): H(G1,S1) = 1 (G1's column 3 to S1's column 2); H(G2,S2) = 3 (G2's column 11 to
    #   S2's column 8). S3 overlaps nothing: H(S3,G2) = 3 (G2's row 0 to S3's row 3), H(S3,G1) = sqrt(73)
    #   ((0,0) to (3,8)), so S3 pairs with G2 at 3. Truth side: (1 + 3)/2 = 2; segmented side:
    #   (6*1 + 4*3 + 4*3)/14 = 15/7. Object Hausdorff = (2 + 15/7) / 2 = 29/14.
    pred, true = glands()
    scores = glas_metrics(pred, true)
    assert scores["object_f1"] == approx(0.4) and (scores["tp"], scores["fp"], scores["fn"]) == (1, 2, 1)
    assert scores["object_dice"] == approx(311 / 588)
    assert scores["object_hausdorff"] == approx(29 / 14)
    json.dumps(scores)


def test_glas_metrics_swapped_roles():
    # Segmentation and truth swapped: G1 now covers all of S1 and G2 covers 2 of S2's 4 px (50%): both TP, S3
    # unfound: F1 = 4 / (4 + 0 + 1) = 0.8. Dice and Hausdorff are symmetric in the two images.
    pred, true = glands()
    scores = glas_metrics(true, pred)
    assert scores["object_f1"] == approx(0.8)
    assert scores["object_dice"] == approx(311 / 588) and scores["object_hausdorff"] == approx(29 / 14)


def test_glas_metrics_empty_images():
    pred, true = glands()
    empty = np.zeros_like(true)
    assert glas_metrics(empty, empty) == {"object_f1": 1.0, "object_dice": 1.0, "object_hausdorff": 0.0,
                                          "tp": 0, "fp": 0, "fn": 0}
    missed = glas_metrics(empty, true)
    assert missed["object_f1"] == 0.0 and missed["object_dice"] == 0.0
    assert missed["object_hausdorff"] == approx(np.hypot(4, 12)) and missed["fn"] == 2
    assert glas_metrics(pred, empty)["fp"] == 3
