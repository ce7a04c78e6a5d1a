"""Scoring a nuclei model on labelled images: instance F1 / PQ at IoU 0.5 and centre F1 at 4 and 8 px.

Data layouts:
- a folder as in the 2018 Data Science Bowl release (`images/<id>.png`, `labels/<id>.png` with uint16 instance
  labels, optional `points/<id>.json` centres and `manifest.csv` with a `modality` column);
- a folder of images with centre points only (`images/`, `points/<id>.json`, EndoNuke layout,
  `cellbridge.datasets.points`): centre F1 at 4 and 8 px, no instance scores;
- a COCO JSON with nucleus polygons (as written by `cellbridge export-coco`).

Any folder can be narrowed to the fixed test or train split by image (`cellbridge.datasets.points.in_test_split`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from cellbridge.datasets.dsb import dsb_modalities, dsb_names, is_dsb_folder
from cellbridge.datasets.points import SPLITS, in_test_split, is_point_folder, point_names, read_points
from cellbridge.errors import DatasetError
from cellbridge.evaluate import aggregate_counts, glas_metrics, instance_metrics, keypoint_f1
from cellbridge.geometry import rasterize
from cellbridge.io.slides import ArraySlide


@dataclass
class LabelledImage:
    """One image with its true instance labels and centres."""

    name: str
    rgb: np.ndarray
    labels: np.ndarray | None  # None: only centres are known (point labels)
    centres: np.ndarray
    modality: str = ""


def split_names(names: list[str], split: str) -> list[str]:
    """The names of one split: "test" (held out by id, `in_test_split`), "train" (the others) or "all"."""
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return names if split == "all" else [n for n in names if in_test_split(n) == (split == "test")]


def read_label_folder(folder: str | Path, only: list[str] | None = None, modality: str | None = None,
                      split: str = "all") -> list[LabelledImage]:
    """Images of a DSB-style folder, optionally only the named ids, those whose modality contains `modality`
    and those of one split."""
    from scipy import ndimage as ndi

    folder = Path(folder)
    names = split_names(dsb_names(folder, only=only, modality=modality), split)
    if not names:
        raise DatasetError(f"{folder}: no images in split {split!r}")
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


def read_point_images(folder: str | Path, only: list[str] | None = None, split: str = "all") -> list[LabelledImage]:
    """Images of a point folder (images/, points/) with their true centres and no instance labels."""
    folder = Path(folder)
    names = point_names(folder, split)
    if only:
        missing = sorted(set(only) - set(names))
        if missing:
            raise DatasetError(f"{folder}: no image(s) named {', '.join(missing[:5])} (split {split!r})")
        names = [n for n in names if n in set(only)]
    images = []
    for name in names:
        bgr = cv2.imread(str(folder / "images" / f"{name}.png"), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"{folder}: cannot read images/{name}.png")
        centres, _, _ = read_points(folder / "points" / f"{name}.json")
        images.append(LabelledImage(name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, centres))
    return images


def read_nuclei_truth(folder: str | Path, only: list[str] | None = None, modality: str | None = None,
                      split: str = "all") -> list[LabelledImage]:
    """The labelled images of a folder: instance labels when it has labels/, else centre points from points/."""
    if is_dsb_folder(folder) or not is_point_folder(folder):
        return read_label_folder(folder, only=only, modality=modality, split=split)
    if modality:
        raise DatasetError(f"{folder}: --modality needs a manifest.csv; a point folder has none")
    return read_point_images(folder, only=only, split=split)


def score_image(image: LabelledImage, found: Sequence[BaseGeometry], glas: bool = False) -> dict[str, Any]:
    """Scores of one image's found nucleus outlines against its truth: centre F1 at 4 and 8 px (centroids), and
    with instance labels instance F1 / PQ at IoU 0.5 (and the GlaS metrics when `glas`)."""
    centres = np.array([[g.centroid.x, g.centroid.y] for g in found]).reshape(-1, 2)
    scores: dict[str, Any] = {"image": image.name, "modality": image.modality, "true": int(len(image.centres)),
                              "found": len(found)}
    if image.labels is not None:
        predicted = np.zeros(image.labels.shape, np.int32)
        for k, geometry in enumerate(found, start=1):
            predicted[rasterize(geometry, predicted.shape) & (predicted == 0)] = k
        scores["instances"] = instance_metrics(predicted, image.labels, 0.5)
        if glas:
            scores["glas"] = glas_metrics(predicted, image.labels)
    elif glas:
        raise DatasetError(f"{image.name}: gland metrics need instance labels, the image has centre points only")
    scores["centres_4px"] = keypoint_f1(centres, image.centres, 4.0)
    scores["centres_8px"] = keypoint_f1(centres, image.centres, 8.0)
    return scores


def summarize_scores(per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall scores from per-image `score_image` results (summed counts, never averaged F1)."""
    at8 = aggregate_counts([s["centres_8px"] for s in per_image])
    overall: dict[str, Any] = {"images": len(per_image), "true": sum(s["true"] for s in per_image),
                               "found": sum(s["found"] for s in per_image)}
    if per_image and all("instances" in s for s in per_image):
        instances = aggregate_counts([s["instances"] for s in per_image])
        matched = sum(s["instances"]["tp"] for s in per_image)
        mean_iou = sum(s["instances"]["iou_sum"] for s in per_image) / matched if matched else 0.0
        overall.update(f1_iou50=instances["f1"], precision=instances["precision"], recall=instances["recall"],
                       mean_matched_iou=mean_iou, pq=instances.get("pq", 0.0))
    overall.update(centre_f1_4px=aggregate_counts([s["centres_4px"] for s in per_image])["f1"],
                   centre_f1_8px=at8["f1"], centre_precision_8px=at8["precision"], centre_recall_8px=at8["recall"])
    if per_image and all("glas" in s for s in per_image):
        counts = aggregate_counts([s["glas"] for s in per_image])
        overall.update(object_f1=counts["f1"],
                       object_dice=float(np.mean([s["glas"]["object_dice"] for s in per_image])),
                       object_hausdorff=float(np.mean([s["glas"]["object_hausdorff"] for s in per_image])))
    return overall


def evaluate_nuclei(pipeline: Any, images: list[LabelledImage], pixel_size: float | None = None,
                    progress: bool = True, on_image: Callable[[dict], None] | None = None,
                    glas: bool = False) -> dict[str, Any]:
    """Run `pipeline` (a `cellbridge.pipeline.run.Pipeline`) on each image and score it against the truth
    (`score_image`, `summarize_scores`).

    `glas`: also the GlaS gland metrics per image (object F1 from summed counts, object Dice and Hausdorff
    averaged over images, as the challenge reports them) — for instance (gland) models."""
    per_image = []
    for image in tqdm(images, desc="evaluate", unit="image", disable=not progress):
        slide = ArraySlide(image.rgb, mpp=pixel_size, path=image.name)
        plans: list[Any] = []
        found = [obj.locating_geometry for obj in pipeline.objects(slide, on_plan=plans.append)]
        scores = score_image(image, found, glas=glas)
        scores["scale"] = plans[0].scale.to_json() if plans else None
        per_image.append(scores)
        if on_image is not None:
            on_image(scores)
    return {"overall": summarize_scores(per_image), "per_image": per_image}
