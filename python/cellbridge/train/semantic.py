"""Training the semantic (region) U-Net: class maps rasterised from COCO polygons, class-weighted loss.

Data: COCO JSON(s) as written by `cellbridge export-coco` (polygons in `segmentation`). Targets per image:
background (0) where the annotated training area holds no polygon, class k + 1 inside a polygon of class k
(smaller polygons painted over larger ones), and the ignore label (`IGNORE`) outside the image's `training_area`,
so unannotated pixels are never taught as background. `edge_ignore` pixels along the image borders can be left out
too (export-coco lists a cut object only in the tile holding its centre).

Class weights (`class_weights`): "inverse" (default) weighs each class by the inverse of its pixel frequency in
the training targets, clipped to [`MIN_WEIGHT`, `MAX_WEIGHT`], then normalised so that the mean weight per pixel
is 1; "none" weighs all classes alike; or an explicit list (background first) or mapping name → weight
(unnamed classes 1). The weights used are recorded in model.json (`training.class_weights`).

Validation scores the full validation images: pixel accuracy, mean IoU and per-class IoU over annotated pixels;
the loop keeps the epoch with the best `score_metric` (mean IoU by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data import Dataset as TorchDataset

from cellbridge.datasets.coco import read_coco
from cellbridge.datasets.records import Dataset, ImageRecord
from cellbridge.engines.semantic import DEFAULTS as SEMANTIC_DEFAULTS
from cellbridge.errors import DatasetError
from cellbridge.evaluate import pixel_metrics
from cellbridge.geometry import rasterize
from cellbridge.models.package import ModelSpec
from cellbridge.models.preprocess import preprocess_image
from cellbridge.networks.unet import build_semantic_unet
from cellbridge.objects import class_color
from cellbridge.train.augment import build_augmentation, reseed
from cellbridge.train.detect import _random_split, read_rgb
from cellbridge.train.keypoints import IGNORE

MIN_WEIGHT, MAX_WEIGHT = 0.05, 25.0
BACKGROUND = "Background"


def render_class_map(record: ImageRecord, class_index: Mapping[str, int], edge_ignore: int = 0) -> np.ndarray:
    """int64 (H, W) target of one image: 0 background, class index k + 1, `IGNORE` outside the training area.

    Polygons are painted largest first, so a small region inside a larger one keeps its own class.
    """
    h, w = record.height, record.width
    target = np.zeros((h, w), np.int64)
    for ann in sorted(record.annotations, key=lambda a: -a.area):
        if ann.geometry is None:
            raise DatasetError(f"{record.name}: annotation of class {ann.label!r} has no polygon; semantic "
                               "training needs outlines (export polygons, not points or boxes)")
        if ann.label in class_index:
            target[rasterize(ann.geometry, (h, w))] = class_index[ann.label]
    if record.training_area is not None:
        target[~rasterize(record.training_area, (h, w))] = IGNORE
    if edge_ignore:
        e = int(edge_ignore)
        target[:e], target[-e:], target[:, :e], target[:, -e:] = IGNORE, IGNORE, IGNORE, IGNORE
    return target


def random_crop(arrays: Sequence[np.ndarray], size: int, fills: Sequence[float],
                rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """The same random `size`² window of every array (first two axes), padded with `fills` where smaller."""
    rng = rng or np.random.default_rng(np.random.randint(2 ** 31))
    h, w = arrays[0].shape[:2]
    y0 = int(rng.integers(0, max(h - size, 0) + 1))
    x0 = int(rng.integers(0, max(w - size, 0) + 1))
    out = []
    for array, fill in zip(arrays, fills):
        window = array[y0:y0 + size, x0:x0 + size]
        if window.shape[:2] != (size, size):
            padded = np.full((size, size, *array.shape[2:]), fill, array.dtype)
            padded[:window.shape[0], :window.shape[1]] = window
            window = padded
        out.append(np.ascontiguousarray(window))
    return out


def class_weights_from_counts(counts: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights from pixel counts per class: mean weight per pixel 1, clipped; absent classes 1."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        return np.ones(len(counts))
    present = counts > 0
    weights = np.ones(len(counts))
    weights[present] = total / (present.sum() * counts[present])
    weights = np.clip(weights, MIN_WEIGHT, MAX_WEIGHT)
    scale = (weights * counts).sum() / total
    return np.where(present, weights / scale, 1.0)


class SemanticDataset(TorchDataset):
    """Images and class-map targets, augmented together (the shared augmentation) and randomly cropped."""

    def __init__(self, records: list[ImageRecord], class_index: Mapping[str, int], preprocessing: dict[str, Any],
                 crop: int | None, augment: bool, edge_ignore: int = 0) -> None:
        self.records, self.class_index, self.preprocessing = records, dict(class_index), preprocessing
        self.crop, self.edge_ignore = crop, edge_ignore
        self.transform = build_augmentation(scale=(0.85, 1.2)) if augment else None
        self._targets: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.records)

    def target(self, index: int) -> np.ndarray:
        """The un-augmented target of image `index` (cached)."""
        if index not in self._targets:
            self._targets[index] = render_class_map(self.records[index], self.class_index, self.edge_ignore)
        return self._targets[index]

    def image(self, index: int) -> np.ndarray:
        """The RGB pixels of image `index`, checked against the size the annotations give."""
        record = self.records[index]
        rgb = read_rgb(record.path)
        if rgb.shape[:2] != (record.height, record.width):
            raise DatasetError(f"{record.path}: image is {rgb.shape[1]}x{rgb.shape[0]}, COCO says "
                               f"{record.width}x{record.height}")
        return rgb

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, target = self.image(index), self.target(index).astype(np.int32)
        if self.transform is not None:
            reseed(self.transform, int(np.random.randint(2 ** 31)))
            out = self.transform(image=rgb, mask=target)
            rgb, target = out["image"], out["mask"]
        if self.crop:
            rgb, target = random_crop([rgb, target], self.crop, [255, IGNORE])
        return (torch.from_numpy(preprocess_image(rgb, self.preprocessing)),
                torch.from_numpy(np.asarray(target, np.int64)))

    def pixel_counts(self, n_outputs: int) -> np.ndarray:
        """Annotated pixels per output (background first) over all targets."""
        counts = np.zeros(n_outputs, np.int64)
        for i in range(len(self)):
            t = self.target(i)
            counts += np.bincount(t[t != IGNORE].ravel(), minlength=n_outputs)[:n_outputs]
        return counts


def sampling_loader(data: TorchDataset, batch_size: int, samples_per_epoch: int | None, workers: int,
                    collate_fn: Any = None) -> DataLoader:
    """A shuffled loader over `data`: each item once per epoch, or `samples_per_epoch` items drawn with replacement
    (small sets of large images: one random crop per draw). Its order follows the loop's per-epoch torch seed."""
    generator = torch.Generator()
    generator.manual_seed(int(torch.randint(0, 2 ** 31, (1,)).item()))
    count = len(data) if samples_per_epoch is None else int(samples_per_epoch)
    sampler = RandomSampler(data, replacement=samples_per_epoch is not None, num_samples=count,
                            generator=generator)
    return DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_fn,
                      drop_last=count > batch_size)


def semantic_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None
                  ) -> torch.Tensor:
    """Class-weighted cross-entropy over annotated pixels (0 when a batch has none)."""
    if not (target != IGNORE).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, weight=weights, ignore_index=IGNORE)


@dataclass
class SemanticTask:
    """The training task for `unet-semantic` packages (see `cellbridge.train.loop.TrainingTask`)."""

    train: Dataset
    val: Dataset
    classes: list[str]
    colors: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    name: str = "semantic"
    preprocessing: dict[str, Any] = field(default_factory=lambda: {"mode": "rgb"})
    params: dict[str, Any] = field(default_factory=lambda: {"depth": 3, "width": 16})
    class_weights: str | Sequence[float] | Mapping[str, float] = "inverse"
    batch_size: int = 8
    crop: int | None = 256
    samples_per_epoch: int | None = None   # draw this many crops per epoch (with replacement); None: each image once
    workers: int = 0
    augment: bool = True
    edge_ignore: int = 0
    mpp: float | None = None
    downsample: float = 1.0
    tile_size: int = 512
    overlap: int = 64
    score_metric: str = "mean_iou"
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.score_metric not in ("mean_iou", "pixel_accuracy"):
            raise ValueError(f"score_metric must be mean_iou or pixel_accuracy, got {self.score_metric!r}")
        self.class_index = {name: k + 1 for k, name in enumerate(self.classes)}
        self.train_set = SemanticDataset(self.train.images, self.class_index, self.preprocessing, self.crop,
                                         self.augment, self.edge_ignore)
        self.val_set = SemanticDataset(self.val.images, self.class_index, self.preprocessing, None, False,
                                       self.edge_ignore)
        self.weights = self._weights()
        self._spec()._validate(f"{self.name} (training settings)")

    @property
    def n_outputs(self) -> int:
        return len(self.classes) + 1

    @property
    def in_channels(self) -> int:
        return 1 if self.preprocessing["mode"] == "gray_unsharp" else 3

    def _weights(self) -> np.ndarray:
        given = self.class_weights
        if isinstance(given, str):
            if given == "none":
                return np.ones(self.n_outputs)
            if given == "inverse":
                return class_weights_from_counts(self.train_set.pixel_counts(self.n_outputs))
            raise DatasetError(f"class weights must be 'inverse', 'none', a list or a mapping, got {given!r}")
        if isinstance(given, Mapping):
            unknown = sorted(set(given) - {BACKGROUND, *self.classes})
            if unknown:
                raise DatasetError(f"class weights name unknown class(es) {', '.join(unknown)}; classes: "
                                   f"{', '.join([BACKGROUND, *self.classes])}")
            return np.array([float(given.get(name, 1.0)) for name in [BACKGROUND, *self.classes]])
        weights = np.asarray(list(given), np.float64)
        if weights.shape != (self.n_outputs,) or (weights < 0).any():
            raise DatasetError(f"class weights need {self.n_outputs} non-negative values (background first, then "
                               f"{', '.join(self.classes)}), got {list(given)}")
        return weights

    def _spec(self, metrics: dict[str, float] | None = None) -> ModelSpec:
        classes = [{"name": c, "color": list(self.colors.get(c) or class_color(c))} for c in self.classes]
        return ModelSpec(
            name=self.name, task="semantic", architecture="unet-semantic", in_channels=self.in_channels,
            classes=classes, params=dict(self.params), preprocessing=dict(self.preprocessing), mpp=self.mpp,
            downsample=self.downsample, tile_size=self.tile_size, overlap=self.overlap,
            postprocessing={k: SEMANTIC_DEFAULTS[k] for k in ("min_area", "min_hole_area", "simplify")},
            training={"task": "semantic", "data": self.source,
                      "class_weights": {name: round(float(w), 4)
                                        for name, w in zip([BACKGROUND, *self.classes], self.weights)},
                      "crop": self.crop, "augment": self.augment, "score_metric": self.score_metric,
                      "metrics": dict(metrics or {})})

    # --- TrainingTask protocol ---
    def build_module(self) -> torch.nn.Module:
        return build_semantic_unet(self._spec())

    def train_loader(self) -> DataLoader:
        return sampling_loader(self.train_set, self.batch_size, self.samples_per_epoch, self.workers)

    def loss(self, module: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
             device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        images, targets = (t.to(device, non_blocking=True) for t in batch)
        weights = torch.as_tensor(self.weights, dtype=torch.float32, device=device)
        loss = semantic_loss(module(images), targets, weights)
        return loss, {"cross_entropy": float(loss.item())}

    def predict(self, module: torch.nn.Module, rgb: np.ndarray, device: torch.device) -> np.ndarray:
        """The class map (uint8, 0 background) of one whole image."""
        image = torch.from_numpy(preprocess_image(rgb, self.preprocessing))[None].to(device)
        return module(image).argmax(dim=1)[0].cpu().numpy().astype(np.uint8)

    def validate(self, module: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Pixel accuracy, mean IoU and per-class IoU over the annotated pixels of the validation images."""
        predictions, truths = [], []
        for i in range(len(self.val_set)):
            truth = self.val_set.target(i)
            keep = truth != IGNORE
            predictions.append(self.predict(module, self.val_set.image(i), device)[keep])
            truths.append(truth[keep])
        scores = pixel_metrics(np.concatenate(predictions), np.concatenate(truths), self.n_outputs)
        metrics = {"pixel_accuracy": scores["pixel_accuracy"], "mean_iou": scores["mean_iou"]}
        for name, iou in zip([BACKGROUND, *self.classes], scores["per_class_iou"]):
            if iou is not None:
                metrics[f"IoU {name}"] = iou
        metrics["score"] = metrics[self.score_metric]
        return metrics

    def spec(self, metrics: dict[str, float]) -> ModelSpec:
        return self._spec(metrics)


def read_coco_data(data: str | Path | Sequence[str | Path], val_split: float, seed: int,
                   require: str) -> tuple[Dataset, Dataset, list[str], dict[str, Any]]:
    """COCO export(s) → (train, val) split by a seeded shuffle, the class list and a summary for model.json.

    Images without any annotation are kept only when they have a training area (then they teach background).
    `require` names the task in error messages.
    """
    paths = [Path(p) for p in ([data] if isinstance(data, (str, Path)) else data)]
    datasets = [read_coco(p) for p in paths]
    classes = sorted({c for d in datasets for c in d.classes})
    colors = {k: v for d in datasets for k, v in (d.colors or {}).items()}
    images = [im for d in datasets for im in d.images if im.annotations or im.training_area is not None]
    if len(images) < 2:
        raise DatasetError(f"{', '.join(map(str, paths))}: {require} training needs at least 2 annotated images, "
                           f"found {len(images)}")
    train, val = _random_split(Dataset(images, classes, colors), val_split, seed)
    summary = {"source": [str(p) for p in paths], "images": len(images), "train_images": len(train.images),
               "val_images": len(val.images), "objects": {k: int(v) for k, v in train.counts().items()},
               "val_split": val_split, "seed": seed}
    return train, val, classes, summary


def semantic_task(data: str | Path | Sequence[str | Path], *, val_split: float = 0.2, preprocessing: str = "rgb",
                  params: dict[str, Any] | None = None, class_weights: Any = "inverse", batch_size: int = 8,
                  crop: int | None = 256, samples_per_epoch: int | None = None, seed: int = 0, workers: int = 0,
                  augment: bool = True, edge_ignore: int = 0, name: str | None = None, mpp: float | None = None,
                  tile_size: int = 512, overlap: int | None = None) -> SemanticTask:
    """A semantic training task from one or more COCO exports (`overlap` default: a quarter tile, at most 64)."""
    train, val, classes, summary = read_coco_data(data, val_split, seed, "semantic")
    mode = {"rgb": {"mode": "rgb"}, "gray_unsharp": {"mode": "gray_unsharp"}}.get(preprocessing)
    if mode is None:
        raise DatasetError(f"unknown preprocessing {preprocessing!r}; use rgb or gray_unsharp")
    return SemanticTask(train, val, classes, dict(train.colors), name=name or "semantic", preprocessing=mode,
                        params=params or {"depth": 3, "width": 16}, class_weights=class_weights,
                        batch_size=batch_size, crop=crop, samples_per_epoch=samples_per_epoch, workers=workers,
                        augment=augment, edge_ignore=edge_ignore, mpp=mpp, tile_size=tile_size,
                        overlap=min(64, tile_size // 4) if overlap is None else overlap, source=summary)
