"""Training instance (gland) segmentation: U-Net + distance head, or Mask R-CNN, on COCO polygons.

Data: COCO JSON(s) as written by `cellbridge export-coco`; each polygon is one object (its class the category).
Per image an instance label image is rasterised (smaller objects painted over larger ones) together with the
training area; both move with the image through the shared augmentation, then a random crop. Targets follow:

- `unet-distance`: foreground, each object's distance transform normalised to 1 at its centre (objects touching
  each other are kept apart by their shared border), and the class map when there are several classes. Pixels
  outside the training area are left out of the loss.
- `maskrcnn_*`: one box, mask and label per object in the crop. Mask R-CNN cannot ignore pixels, so pixels
  outside the training area (and not in an annotated object) are filled with the median colour of the image's
  annotated area, as detector training does (`cellbridge.train.detect`).

Validation runs the engine's own post-processing on the full validation images and scores it with the GlaS
metrics (`cellbridge.evaluate.glas_metrics`): object F1 (summed counts), object Dice and Hausdorff (mean over
images); the loop keeps the epoch with the best mean of object F1 and object Dice (F1 alone reaches 1 early on a
small validation set, and ties keep the first epoch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from cellbridge.datasets.records import Dataset, ImageRecord
from cellbridge.engines.instance import (
    DISTANCE_DEFAULTS,
    MASK_RCNN_DEFAULTS,
    distance_watershed,
    mask_rcnn_instances,
)
from cellbridge.errors import DatasetError
from cellbridge.evaluate import aggregate_counts, glas_metrics
from cellbridge.geometry import rasterize
from cellbridge.models.package import ModelSpec
from cellbridge.models.preprocess import preprocess_image
from cellbridge.networks.mask_rcnn import MASK_RCNN_BOXES, build_mask_rcnn
from cellbridge.networks.unet import build_distance_unet
from cellbridge.objects import class_color
from cellbridge.train.augment import build_augmentation, reseed
from cellbridge.train.detect import collate_lists, read_rgb
from cellbridge.train.keypoints import masked_class_loss
from cellbridge.train.semantic import IGNORE, random_crop, read_coco_data, sampling_loader

ARCHITECTURES = ("unet-distance", *MASK_RCNN_BOXES)
MIN_BOX = 2.0   # pixels: objects narrower than this in a crop are not taught to Mask R-CNN


@dataclass
class InstanceSample:
    """One image with its instance labels (0 background, object k → k + 1), classes and training area."""

    rgb: np.ndarray
    labels: np.ndarray      # (H, W) int32
    classes: np.ndarray     # (n + 1,) int64 class index per label (index 0 unused)
    valid: np.ndarray       # (H, W) uint8: 1 inside the training area


def load_instances(record: ImageRecord, class_index: dict[str, int]) -> InstanceSample:
    """Read an image and rasterise its objects (largest first, so smaller ones stay whole on top)."""
    rgb = read_rgb(record.path)
    h, w = rgb.shape[:2]
    if (h, w) != (record.height, record.width):
        raise DatasetError(f"{record.path}: image is {w}x{h}, COCO says {record.width}x{record.height}")
    labels = np.zeros((h, w), np.int32)
    classes = [0]
    for ann in sorted(record.annotations, key=lambda a: -a.area):
        if ann.geometry is None:
            raise DatasetError(f"{record.name}: annotation of class {ann.label!r} has no polygon; instance "
                               "training needs outlines")
        if ann.label not in class_index:
            continue
        labels[rasterize(ann.geometry, (h, w))] = len(classes)
        classes.append(class_index[ann.label])
    valid = np.ones((h, w), np.uint8)
    if record.training_area is not None:
        valid = rasterize(record.training_area, (h, w)).astype(np.uint8)
    return InstanceSample(rgb, labels, np.asarray(classes, np.int64), valid)


def normalised_distance(labels: np.ndarray) -> np.ndarray:
    """Each object's Euclidean distance to its border (incl. borders with touching objects), divided by its
    maximum: 1 on the object's medial axis, small at its border, 0 outside."""
    inside = labels > 0
    if not inside.any():
        return np.zeros(labels.shape, np.float32)
    border = np.zeros_like(inside)
    for axis in (0, 1):   # a pixel whose 4-neighbour belongs to another object is on a border
        differs = np.diff(labels, axis=axis) != 0
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        border[tuple(lo)] |= differs
        border[tuple(hi)] |= differs
    distance = ndi.distance_transform_edt(inside & ~border)
    peaks = ndi.maximum(distance, labels, index=np.arange(labels.max() + 1))
    peaks = np.asarray(peaks, np.float64)
    peaks[peaks <= 0] = 1.0
    return (distance / peaks[labels]).astype(np.float32) * inside


class InstanceDataset(TorchDataset):
    """Samples for either architecture, augmented (shared pipeline) and cropped; decoded images are cached."""

    def __init__(self, records: list[ImageRecord], class_index: dict[str, int], preprocessing: dict[str, Any],
                 architecture: str, crop: int | None, augment: bool) -> None:
        self.records, self.class_index, self.preprocessing = records, class_index, preprocessing
        self.architecture, self.crop = architecture, crop
        self.transform = build_augmentation(scale=(0.85, 1.2)) if augment else None
        self._cache: dict[int, InstanceSample] = {}

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, index: int) -> InstanceSample:
        """The un-augmented sample of image `index` (for Mask R-CNN with pixels outside the area filled)."""
        if index not in self._cache:
            sample = load_instances(self.records[index], self.class_index)
            if self.architecture != "unet-distance" and not sample.valid.all():
                annotated = sample.valid.astype(bool) | (sample.labels > 0)
                if annotated.any():
                    sample.rgb = sample.rgb.copy()
                    sample.rgb[~annotated] = np.median(sample.rgb[annotated], axis=0).astype(np.uint8)
                sample.valid = np.ones_like(sample.valid)
            self._cache[index] = sample
        return self._cache[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sample = self.sample(index)
        rgb, labels, valid = sample.rgb, sample.labels, sample.valid
        if self.transform is not None:
            reseed(self.transform, int(np.random.randint(2 ** 31)))
            out = self.transform(image=rgb, masks=[labels, valid])
            rgb, (labels, valid) = out["image"], out["masks"]
        if self.crop:
            rgb, labels, valid = random_crop([rgb, labels, valid], self.crop, [255, 0, 0])
        image = torch.from_numpy(preprocess_image(rgb, self.preprocessing))
        labels = np.asarray(labels, np.int32)
        if self.architecture == "unet-distance":
            return image, distance_targets(labels, sample.classes, np.asarray(valid, np.float32))
        return image, mask_rcnn_targets(labels, sample.classes)


def distance_targets(labels: np.ndarray, classes: np.ndarray, valid: np.ndarray) -> dict[str, torch.Tensor]:
    """Foreground, normalised distance, class map (IGNORE off objects) and the loss mask of one crop."""
    class_map = np.where(labels > 0, classes[labels], IGNORE).astype(np.int64)
    return {"foreground": torch.from_numpy((labels > 0).astype(np.float32)),
            "distance": torch.from_numpy(normalised_distance(labels)),
            "classes": torch.from_numpy(class_map), "valid": torch.from_numpy(valid)}


def mask_rcnn_targets(labels: np.ndarray, classes: np.ndarray) -> dict[str, torch.Tensor]:
    """Boxes (x0, y0, x1, y1 pixel edges), 1-based labels and binary masks of the objects in one crop."""
    boxes, names, masks = [], [], []
    for label, found in enumerate(ndi.find_objects(labels), start=1):
        if found is None:
            continue
        rows, cols = found
        if cols.stop - cols.start < MIN_BOX or rows.stop - rows.start < MIN_BOX:
            continue
        boxes.append([cols.start, rows.start, cols.stop, rows.stop])
        names.append(int(classes[label]) + 1)
        masks.append(labels == label)
    h, w = labels.shape
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(names, dtype=torch.int64),
            "masks": torch.from_numpy(np.array(masks, np.uint8).reshape(-1, h, w))}


def distance_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Foreground BCE + distance BCE (soft targets) inside the training area, + class CE on object pixels."""
    valid = batch["valid"]
    denominator = valid.sum().clamp(min=1.0)
    logits = logits.float()
    fg = (F.binary_cross_entropy_with_logits(logits[:, 0], batch["foreground"], reduction="none") * valid).sum()
    dist = (F.binary_cross_entropy_with_logits(logits[:, 1], batch["distance"], reduction="none") * valid).sum()
    fg, dist = fg / denominator, dist / denominator
    total, parts = fg + 2.0 * dist, {"foreground": float(fg.item()), "distance": float(dist.item())}
    ce = masked_class_loss(logits[:, 2:], batch["classes"], valid)
    if ce is not None:
        total = total + ce
        parts["class"] = float(ce.item())
    return total, parts


def _collate_distance(items: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    images = torch.stack([image for image, _ in items])
    return images, {k: torch.stack([t[k] for _, t in items]) for k in items[0][1]}


@dataclass
class InstanceTask:
    """Training for `unet-distance` and `maskrcnn_*` packages (see `cellbridge.train.loop.TrainingTask`)."""

    train: Dataset
    val: Dataset
    classes: list[str]
    colors: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    architecture: str = "unet-distance"
    params: dict[str, Any] = field(default_factory=dict)
    name: str = "instance"
    preprocessing: dict[str, Any] = field(default_factory=lambda: {"mode": "rgb"})
    batch_size: int = 4
    crop: int | None = 256
    samples_per_epoch: int | None = None
    workers: int = 0
    augment: bool = True
    mpp: float | None = None
    downsample: float = 1.0
    tile_size: int = 512
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise DatasetError(f"unknown instance architecture {self.architecture!r}; use one of "
                               f"{', '.join(ARCHITECTURES)}")
        if self.architecture == "unet-distance":
            self.params = {"depth": 3, "width": 16, **self.params}
        self.class_index = {name: k for k, name in enumerate(self.classes)}
        self.train_set = InstanceDataset(self.train.images, self.class_index, self.preprocessing,
                                         self.architecture, self.crop, self.augment)
        self.val_set = InstanceDataset(self.val.images, self.class_index, self.preprocessing, self.architecture,
                                       None, False)
        self._spec()._validate(f"{self.name} (training settings)")

    @property
    def in_channels(self) -> int:
        return 1 if self.preprocessing["mode"] == "gray_unsharp" else 3

    def object_size(self) -> int:
        """The 99th percentile of object box sides at model scale (from the annotations)."""
        sides = [max(a.bbox[2] - a.bbox[0], a.bbox[3] - a.bbox[1]) / self.downsample
                 for image in self.train.images for a in image.annotations]
        return int(math.ceil(np.percentile(sides, 99))) if sides else 128

    def _spec(self, metrics: dict[str, float] | None = None) -> ModelSpec:
        size = self.object_size()
        overlap = min(max(64, int(math.ceil((size + 16) / 8) * 8)), self.tile_size // 2 - 8)
        defaults = DISTANCE_DEFAULTS if self.architecture == "unet-distance" else MASK_RCNN_DEFAULTS
        postprocessing = {k: v for k, v in defaults.items() if k != "max_object_size"}
        postprocessing["max_object_size"] = size
        classes = [{"name": c, "color": list(self.colors.get(c) or class_color(c))} for c in self.classes]
        return ModelSpec(
            name=self.name, task="instance", architecture=self.architecture, in_channels=self.in_channels,
            classes=classes, params=dict(self.params), preprocessing=dict(self.preprocessing), mpp=self.mpp,
            downsample=self.downsample, tile_size=self.tile_size, overlap=overlap, postprocessing=postprocessing,
            training={"task": "instance", "data": self.source, "crop": self.crop, "augment": self.augment,
                      "metrics": dict(metrics or {})})

    # --- TrainingTask protocol ---
    def build_module(self) -> torch.nn.Module:
        spec = self._spec()
        return build_distance_unet(spec) if self.architecture == "unet-distance" else build_mask_rcnn(spec)

    def train_loader(self) -> DataLoader:
        collate = _collate_distance if self.architecture == "unet-distance" else collate_lists
        return sampling_loader(self.train_set, self.batch_size, self.samples_per_epoch, self.workers, collate)

    def loss(self, module: torch.nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor,
                                                                                         dict[str, float]]:
        images, targets = batch
        if self.architecture == "unet-distance":
            targets = {k: v.to(device, non_blocking=True) for k, v in targets.items()}
            return distance_loss(module(images.to(device, non_blocking=True)), targets)
        images = [image.to(device) for image in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        parts = module(images, targets)
        return sum(parts.values()), {k.replace("loss_", ""): float(v.item()) for k, v in parts.items()}

    def predict(self, module: torch.nn.Module, rgb: np.ndarray, device: torch.device,
                options: dict[str, Any] | None = None) -> np.ndarray:
        """Instance labels of one whole image, post-processed as the engine does (`options`: model.json's)."""
        image = torch.from_numpy(preprocess_image(rgb, self.preprocessing)).to(device)
        options = options or self._spec().postprocessing
        if self.architecture == "unet-distance":
            maps = torch.sigmoid(module(image[None])[0, :2].float()).cpu().numpy()
            labels, _ = distance_watershed(maps[0], maps[1], options)
            return labels
        output = module([image])[0]
        return mask_rcnn_instances(output, float(options["score_threshold"]), float(options["mask_threshold"]),
                                   int(options["max_detections"]))["labels"]

    def validate(self, module: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """GlaS object F1 / Dice / Hausdorff of the post-processed objects (inside the training areas)."""
        scores = []
        options = self._spec().postprocessing
        for i in range(len(self.val_set)):
            sample = load_instances(self.val_set.records[i], self.class_index)   # the truth, training area kept
            valid = sample.valid.astype(bool)
            predicted = self.predict(module, self.val_set.sample(i).rgb, device, options)
            scores.append(glas_metrics(predicted * valid, sample.labels * valid))
        counts = aggregate_counts(scores)
        metrics = {"object_f1": counts["f1"], "precision": counts["precision"], "recall": counts["recall"],
                   "object_dice": float(np.mean([s["object_dice"] for s in scores])),
                   "object_hausdorff": float(np.mean([s["object_hausdorff"] for s in scores]))}
        metrics["score"] = (metrics["object_f1"] + metrics["object_dice"]) / 2   # F1 alone saturates early
        return metrics

    def spec(self, metrics: dict[str, float]) -> ModelSpec:
        return self._spec(metrics)


def instance_task(data: str | Path | Sequence[str | Path], *, architecture: str = "unet-distance",
                  val_split: float = 0.2, preprocessing: str = "rgb", params: dict[str, Any] | None = None,
                  batch_size: int = 4, crop: int | None = 256, samples_per_epoch: int | None = None, seed: int = 0,
                  workers: int = 0, augment: bool = True, name: str | None = None, mpp: float | None = None,
                  tile_size: int = 512) -> InstanceTask:
    """An instance training task from one or more COCO exports."""
    train, val, classes, summary = read_coco_data(data, val_split, seed, "instance")
    mode = {"rgb": {"mode": "rgb"}, "gray_unsharp": {"mode": "gray_unsharp"}}.get(preprocessing)
    if mode is None:
        raise DatasetError(f"unknown preprocessing {preprocessing!r}; use rgb or gray_unsharp")
    return InstanceTask(train, val, classes, dict(train.colors), architecture=architecture, params=params or {},
                        name=name or "instance", preprocessing=mode, batch_size=batch_size, crop=crop,
                        samples_per_epoch=samples_per_epoch, workers=workers, augment=augment, mpp=mpp,
                        tile_size=tile_size, source=summary)
