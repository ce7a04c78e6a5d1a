"""Scoring a nuclei model on labelled images: instance F1 / PQ at IoU 0.5 and centre F1 at 4 and 8 px.

Data layouts:
- a folder as in the 2018 Data Science Bowl release (`images/<id>.png`, `labels/<id>.png` with uint16 instance
  labels, optional `points/<id>.json` centres and `manifest.csv` with a `modality` column);
- a COCO JSON with nucleus polygons (as written by `cellbridge export-coco`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from cellbridge.datasets.dsb import dsb_modalities, dsb_names
from cellbridge.errors import DatasetError
from cellbridge.evaluate import aggregate_counts, glas_metrics, instance_metrics, keypoint_f1
from cellbridge.geometry import rasterize
from cellbridge.io.slides import ArraySlide


@dataclass
class LabelledImage:
    """One image with its true instance labels and centres."""

    name: str
    rgb: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    modality: str = ""


def read_label_folder(folder: str | Path, only: list[str] | None = None, modality: str | None = None) -> list[LabelledImage]:
    """Images of a DSB-style folder, optionally only the named ids or those whose modality contains `modality`."""
    from scipy import ndimage as ndi

    folder = Path(folder)
    names = dsb_names(folder, only=only, modality=modality)
    modalities = dsb_modalities(folder)
    images = []
    for name in names:
        bgr = cv2.imread(str(folder / "images" / f"{name}.png"), cv2.IMREAD_COLOR)
        labels = cv2.imread(str(folder / "labels" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        if bgr is None or labels is None:
            raise DatasetError(f"{folder}: cannot read image or labels of {name}")
        points_path = folder / "points" / f"{name}.json"
        if points_path.is_file():
            centres = np.asarray(json.loads(points_path.read_text()), float).reshape(-1, 2)
        else:
            ids = np.unique(labels)[1:]
            centres = np.array(ndi.center_of_mass(np.ones_like(labels), labels, ids))[:, ::-1].reshape(-1, 2) + 0.5
        images.append(LabelledImage(name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), labels.astype(np.int32), centres,
                                    modalities.get(name, "")))
    return images


def evaluate_nuclei(pipeline: Any, images: list[LabelledImage], pixel_size: float | None = None,
                    progress: bool = True, on_image: Callable[[dict], None] | None = None,
                    glas: bool = False) -> dict[str, Any]:
    """Run `pipeline` (a `cellbridge.pipeline.run.Pipeline`) on each image and score it against the truth.

    `glas`: also the GlaS gland metrics per image (object F1 from summed counts, object Dice and Hausdorff
    averaged over images, as the challenge reports them) — for instance (gland) models."""
    per_image = []
    for image in tqdm(images, desc="evaluate", unit="image", disable=not progress):
        slide = ArraySlide(image.rgb, mpp=pixel_size, path=image.name)
        found = list(pipeline.objects(slide))
        predicted = np.zeros(image.labels.shape, np.int32)
        for k, obj in enumerate(found, start=1):
            predicted[rasterize(obj.locating_geometry, predicted.shape) & (predicted == 0)] = k
        centres = np.array([[o.locating_geometry.centroid.x, o.locating_geometry.centroid.y] for o in found])
        centres = centres.reshape(-1, 2)
        scores = {"image": image.name, "modality": image.modality, "true": int(len(image.centres)),
                  "found": len(found), "instances": instance_metrics(predicted, image.labels, 0.5),
                  "centres_4px": keypoint_f1(centres, image.centres, 4.0),
                  "centres_8px": keypoint_f1(centres, image.centres, 8.0)}
        if glas:
            scores["glas"] = glas_metrics(predicted, image.labels)
        per_image.append(scores)
        if on_image is not None:
            on_image(scores)
    instances = aggregate_counts([s["instances"] for s in per_image])
    matched = sum(s["instances"]["tp"] for s in per_image)
    mean_iou = sum(s["instances"]["iou_sum"] for s in per_image) / matched if matched else 0.0
    overall = {"images": len(per_image), "f1_iou50": instances["f1"], "precision": instances["precision"],
               "recall": instances["recall"], "mean_matched_iou": mean_iou, "pq": instances.get("pq", 0.0),
               "centre_f1_4px": aggregate_counts([s["centres_4px"] for s in per_image])["f1"],
               "centre_f1_8px": aggregate_counts([s["centres_8px"] for s in per_image])["f1"]}
    if glas:
        counts = aggregate_counts([s["glas"] for s in per_image])
        overall.update(object_f1=counts["f1"],
                       object_dice=float(np.mean([s["glas"]["object_dice"] for s in per_image])),
                       object_hausdorff=float(np.mean([s["glas"]["object_hausdorff"] for s in per_image])))
    return {"overall": overall, "per_image": per_image}
