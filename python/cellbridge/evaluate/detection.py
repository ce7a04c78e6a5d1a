"""COCO detection and instance segmentation AP, computed by pycocotools' own COCOeval."""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def coco_detection_metrics(gt: dict[str, Any], dt: list[dict[str, Any]],
                           iou_type: Literal["bbox", "segm"] = "bbox") -> dict[str, Any]:
    """COCO scores of detections `dt` (COCO result dicts) against the COCO dataset dict `gt`.

    Returns AP (mean over IoU 0.50:0.05:0.95), AP50, AP75 and AR100 (all object sizes, up to 100 detections
    per image), and `per_class_AP50` by category name for the categories with ground truth (COCO leaves the
    others out of its means). Precision is COCO's 101-point interpolation. A result holds image_id,
    category_id, bbox [x, y, w, h], score and, for "segm", a segmentation (RLE, or polygon lists). No
    detections give 0.0; a ground truth without objects gives 1.0 without detections and 0.0 with some.
    Inputs are not modified and pycocotools prints nothing.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', not {iou_type!r}")
    gt, dt = copy.deepcopy(gt), copy.deepcopy(dt)
    for ann in gt.get("annotations", []):
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
    sizes = {image["id"]: (image["height"], image["width"]) for image in gt.get("images", [])}
    for result in dt:
        if isinstance(result.get("segmentation"), list):  # loadRes only measures RLE
            result["segmentation"] = mask_utils.merge(mask_utils.frPyObjects(result["segmentation"],
                                                                              *sizes[result["image_id"]]))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if dt:
            coco_dt = coco_gt.loadRes(dt)
        else:
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt.get("images", []), "categories": gt.get("categories", []),
                               "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # COCO marks a score with no ground truth behind it -1; here that is 1.0 or 0.0 as documented.
    stats = [float(v) if v > -1 else (0.0 if dt else 1.0) for v in evaluator.stats]
    precision_50 = evaluator.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, recall, class, all areas, 100 dets
    names = {category["id"]: category["name"] for category in gt.get("categories", [])}
    per_class = {names[category_id]: float(np.mean(precision_50[:, k]))
                 for k, category_id in enumerate(evaluator.params.catIds) if (precision_50[:, k] > -1).all()}
    return {"AP": stats[0], "AP50": stats[1], "AP75": stats[2], "AR100": stats[8],
            "per_class_AP50": per_class}
