"""Training the nuclei U-Net: Gaussian centre heatmaps, foreground and class maps from polygons or points.

Data: COCO JSONs as written by `cellbridge export-coco` (polygons in `segmentation`; an image's
`training_area` limits where the loss looks, so unannotated pixels are never taught as background),
DSB-2018-style folders (images/, labels/ instance PNGs, manifest.csv modality; see `cellbridge.datasets.dsb`)
and point folders (images/, points/ centres; see `cellbridge.datasets.points`). Point-only images teach the
centre heatmap and nothing about the foreground.

Scale: every image is brought to the model's pixel size the way a run does it: its own pixel size when known,
else the one estimated from its nuclei (`cellbridge.pipeline.scale`), so training sees nuclei at the size the
model will see them on an uncalibrated image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from shapely import affinity
from torch.nn import functional as F
from torch.utils.data import DataLoader

from cellbridge.datasets.coco import read_coco
from cellbridge.datasets.records import Dataset, ImageRecord
from cellbridge.engines.nuclei_objects import segment_nuclei
from cellbridge.errors import DatasetError
from cellbridge.geometry import rasterize
from cellbridge.models.package import ModelSpec
from cellbridge.models.preprocess import preprocess_image
from cellbridge.networks import TRAINABLE_PARTS
from cellbridge.networks.unet import build_nuclei_unet

IGNORE = -100  # class target of pixels without a class (torch's cross-entropy ignore_index)


STAIN_JITTER = ("mild", "strong")


def nuclei_augmentation(crop: int | None, seed: int, scale: tuple[float, float] = (0.8, 1.25),
                        stain: str = "mild") -> A.Compose:
    """Random rescale (factor in `scale`), crop, flips, rot90, H&E stain / colour jitter, blur and noise.

    `stain`: "mild" (moderate stain and colour jitter) or "strong" (labs, scanners and hematoxylin-only stains: wider HED
    intensities, larger hue / saturation shifts, sometimes gray). Albumentations keeps its own random
    generator: `seed` makes a run reproducible (and resumable).
    """
    if stain not in STAIN_JITTER:
        raise ValueError(f"stain jitter must be one of {', '.join(STAIN_JITTER)}, got {stain!r}")
    low, high = scale
    if not 0 < low <= high:
        raise ValueError(f"scale range must satisfy 0 < low <= high, got {scale}")
    strong = stain == "strong"
    geometric = [A.PadIfNeeded(crop, crop, border_mode=cv2.BORDER_REFLECT_101), A.RandomCrop(crop, crop)] if crop else []
    return A.Compose([
        A.RandomScale(scale_limit=(low - 1.0, high - 1.0), p=0.8 if strong else 0.5),
        *geometric,
        A.HorizontalFlip(), A.VerticalFlip(), A.RandomRotate90(),
        A.HEStain(method="random_preset", intensity_scale_range=(0.5, 1.5) if strong else (0.75, 1.25),
                  intensity_shift_range=(-0.25, 0.25) if strong else (-0.1, 0.1), p=0.8 if strong else 0.5),
        A.HueSaturationValue(hue_shift_limit=25 if strong else 12, sat_shift_limit=40 if strong else 25,
                             val_shift_limit=25 if strong else 15, p=0.8 if strong else 0.6),
        A.RandomBrightnessContrast(0.25 if strong else 0.15, 0.3 if strong else 0.2, p=0.5),
        *([A.ToGray(p=0.1), A.RandomGamma((70, 150), p=0.3)] if strong else []),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.01, 0.05))], p=0.4),
        *([A.ImageCompression(quality_range=(40, 90), p=0.3)] if strong else []),
    ], seed=seed)


@dataclass
class Targets:
    """Per-pixel training targets of one image."""

    heat: np.ndarray      # float32 Gaussian centre heatmap, peak 1
    foreground: np.ndarray  # uint8 0/1
    classes: np.ndarray   # int64 class index per nucleus pixel, IGNORE elsewhere
    valid: np.ndarray     # uint8: 1 where the loss applies (training area)
    centres: np.ndarray   # (n, 2) x, y
    distance: np.ndarray  # float32 distance to the nucleus border / its largest, 1 on the medial axis, 0 outside
    outlined: bool = True  # False: centres only (points), so the foreground and classes are not taught


EDGE_IGNORE = 10  # pixels at image borders left out of the loss (see render_targets)


def render_targets(record: ImageRecord, class_index: dict[str, int], sigma: float,
                   edge_ignore: int = EDGE_IGNORE) -> Targets:
    """Rasterise an image's nucleus polygons into heatmap, foreground, class map and training-area mask.

    Exported tiles list an object only when its centre is inside, so a nucleus cut by the tile border with its
    centre outside is missing from the labels: `edge_ignore` pixels along the borders are kept out of the loss
    rather than taught as background. An image whose annotations are all points gives the heatmap only
    (`outlined` False); points and outlines are not mixed in one image.
    """
    h, w = record.height, record.width
    foreground = np.zeros((h, w), np.uint8)
    classes = np.full((h, w), IGNORE, np.int64)
    heat = np.zeros((h, w), np.float32)
    distance = np.zeros((h, w), np.float32)
    centres = []
    radius = int(np.ceil(3 * sigma))
    outlined = any(ann.geometry is not None and ann.geometry.area > 0 for ann in record.annotations)
    for ann in record.annotations:
        if outlined:
            if ann.geometry is None or ann.geometry.area <= 0:
                raise DatasetError(f"{record.name}: annotation of class {ann.label!r} has no outline while others "
                                   "do; label an image with outlines or with points, not both")
            inside = rasterize(ann.geometry, (h, w))
            foreground[inside] = 1
            classes[inside] = class_index[ann.label]
            _paint_normalised_distance(distance, inside, ann.geometry.bounds)
            cx, cy = ann.geometry.centroid.x, ann.geometry.centroid.y
        elif ann.point is not None:
            cx, cy = ann.point
        else:
            raise DatasetError(f"{record.name}: annotation of class {ann.label!r} has neither outline nor point")
        centres.append((cx, cy))
        x0, x1 = max(int(cx) - radius, 0), min(int(cx) + radius + 1, w)
        y0, y1 = max(int(cy) - radius, 0), min(int(cy) + radius + 1, h)
        if x0 >= x1 or y0 >= y1:
            continue
        gx = np.arange(x0, x1) + 0.5 - cx
        gy = np.arange(y0, y1)[:, None] + 0.5 - cy
        np.maximum(heat[y0:y1, x0:x1], np.exp(-(gx ** 2 + gy ** 2) / (2 * sigma ** 2)), out=heat[y0:y1, x0:x1])
    valid = np.ones((h, w), np.uint8)
    if record.training_area is not None:
        valid = rasterize(record.training_area, (h, w)).astype(np.uint8)
    if edge_ignore:
        valid[:edge_ignore], valid[-edge_ignore:], valid[:, :edge_ignore], valid[:, -edge_ignore:] = 0, 0, 0, 0
    return Targets(heat, foreground, classes, valid, np.array(centres, float).reshape(-1, 2), distance, outlined)


def _paint_normalised_distance(distance: np.ndarray, inside: np.ndarray, bounds: tuple[float, ...]) -> None:
    """Write into `distance`, over the pixels of one nucleus, their distance to its border divided by the largest
    (the nucleus drawn last wins where outlines overlap, as for the foreground and classes)."""
    from scipy import ndimage as ndi

    h, w = inside.shape
    x0, y0 = max(int(bounds[0]) - 1, 0), max(int(bounds[1]) - 1, 0)
    x1, y1 = min(int(np.ceil(bounds[2])) + 2, w), min(int(np.ceil(bounds[3])) + 2, h)
    crop = inside[y0:y1, x0:x1]
    if not crop.any():
        return
    edt = ndi.distance_transform_edt(np.pad(crop, 1))[1:-1, 1:-1]  # the crop's edge is not the nucleus border
    region = distance[y0:y1, x0:x1]
    region[crop] = (edt / edt.max())[crop]


def rescaled_record(record: ImageRecord, factor: float) -> ImageRecord:
    """The record with its size and geometries multiplied by `factor` (its image is resized to match)."""
    from dataclasses import replace

    if factor == 1.0:
        return record

    def scaled(geometry: Any) -> Any:
        return None if geometry is None else affinity.scale(geometry, factor, factor, origin=(0, 0))

    annotations = [replace(a, bbox=tuple(v * factor for v in a.bbox), geometry=scaled(a.geometry),
                           point=None if a.point is None else (a.point[0] * factor, a.point[1] * factor))
                   for a in record.annotations]
    return replace(record, width=max(1, int(round(record.width * factor))),
                   height=max(1, int(round(record.height * factor))), annotations=annotations,
                   training_area=scaled(record.training_area),
                   mpp=None if record.mpp is None else record.mpp / factor)


def model_scale_factor(rgb: np.ndarray, record: ImageRecord, model_mpp: float | None) -> float:
    """How much to resize an image to bring it to the model's pixel size: by its own pixel size when known, else
    by the one estimated from its nuclei (as a run on an uncalibrated image does); 1 when either is unknown."""
    from cellbridge.pipeline.scale import estimate_pixel_size

    if not model_mpp:
        return 1.0
    mpp = record.mpp
    if mpp is None:
        mpp, _ = estimate_pixel_size(rgb)
    return 1.0 if mpp is None else float(mpp / model_mpp)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (alpha dropped)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"{path}: cannot read image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_scaled(record: ImageRecord, factor: float) -> tuple[np.ndarray, ImageRecord]:
    """An image and its record at `factor` times the file's size."""
    rgb = read_rgb(record.path)
    if rgb.shape[:2] != (record.height, record.width):
        raise DatasetError(f"{record.path}: image is {rgb.shape[1]}x{rgb.shape[0]}, the labels say "
                           f"{record.width}x{record.height}")
    if factor == 1.0:
        return rgb, record
    record = rescaled_record(record, factor)
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(rgb, (record.width, record.height), interpolation=interpolation), record


class NucleiDataset(torch.utils.data.Dataset):
    """Images + targets, augmented consistently (targets move with the image)."""

    def __init__(self, dataset: Dataset, images: list[ImageRecord], preprocessing: dict[str, Any], sigma: float,
                 augment: bool, crop: int | None, scale: tuple[float, float] = (0.8, 1.25),
                 stain: str = "mild", factors: dict[Path, float] | None = None) -> None:
        self.dataset, self.images, self.preprocessing = dataset, images, preprocessing
        self.factors = factors or {}  # image file → resize factor to the model's pixel size
        self.class_index = {name: i for i, name in enumerate(dataset.classes)}
        self.sigma = sigma
        seed = int(torch.randint(0, 2 ** 31 - 1, ()).item())  # from the loop's per-epoch torch seed
        self.transform = nuclei_augmentation(crop, seed, scale, stain) if augment else None
        self.crop = crop

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rgb, record = load_scaled(self.images[i], self.factors.get(self.images[i].path, 1.0))
        t = render_targets(record, self.class_index, self.sigma)
        masks = [t.heat, t.foreground, t.classes.astype(np.int32), t.valid, t.distance]
        if self.transform is not None:
            out = self.transform(image=rgb, masks=masks)
            rgb, masks = out["image"], out["masks"]
        elif self.crop:
            rgb, masks = rgb[:self.crop, :self.crop], [m[:self.crop, :self.crop] for m in masks]
        return {"image": torch.from_numpy(preprocess_image(rgb, self.preprocessing)),
                "heat": torch.from_numpy(np.ascontiguousarray(masks[0], np.float32)),
                "foreground": torch.from_numpy(np.ascontiguousarray(masks[1], np.float32)),
                "classes": torch.from_numpy(np.ascontiguousarray(masks[2], np.int64)),
                "valid": torch.from_numpy(np.ascontiguousarray(masks[3], np.float32)),
                "distance": torch.from_numpy(np.ascontiguousarray(masks[4], np.float32)),
                "outlined": torch.tensor(float(t.outlined))}


def _reseed_worker(worker_id: int) -> None:
    """Give each loader process its own augmentation stream (derived from torch's per-worker seed)."""
    info = torch.utils.data.get_worker_info()
    if info is not None and info.dataset.transform is not None:
        info.dataset.transform.set_random_seed(torch.initial_seed() % 2 ** 31)


def masked_class_loss(logits: torch.Tensor, classes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor | None:
    """Cross-entropy of per-pixel class logits over the labelled pixels inside `valid`; None when there are no
    class logits or no labelled pixel."""
    if logits.shape[1] == 0:
        return None
    classes = classes.masked_fill(valid < 0.5, IGNORE)
    if not (classes != IGNORE).any():
        return None
    return F.cross_entropy(logits, classes, ignore_index=IGNORE)


def nuclei_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor],
                maps: int = 2) -> tuple[torch.Tensor, dict[str, float]]:
    """Heatmap BCE (peaks weighted up) + foreground BCE (+ normalised distance BCE when `maps` is 3) + class CE on
    nucleus pixels, all inside `valid`; the foreground, distance and class terms only on outlined images
    (`outlined`: 1 per image, 0 for points only)."""
    valid = batch["valid"]
    heat_target = batch["heat"]
    weight = valid * (1.0 + 9.0 * heat_target)
    heat = (F.binary_cross_entropy_with_logits(logits[:, 0], heat_target, reduction="none") * weight).sum()
    heat = heat / weight.sum().clamp(min=1.0)
    outlined = valid * batch.get("outlined", torch.ones(len(valid), device=valid.device))[:, None, None]
    fg = (F.binary_cross_entropy_with_logits(logits[:, 1], batch["foreground"], reduction="none") * outlined).sum()
    fg = fg / outlined.sum().clamp(min=1.0)
    total, parts = heat * 4.0 + fg, {"heat": float(heat.item()), "foreground": float(fg.item())}
    if maps > 2:
        dist = F.binary_cross_entropy_with_logits(logits[:, 2], batch["distance"], reduction="none")
        dist = (dist * outlined).sum() / outlined.sum().clamp(min=1.0)
        total = total + 2.0 * dist
        parts["distance"] = float(dist.item())
    ce = masked_class_loss(logits[:, maps:], batch["classes"], outlined)
    if ce is not None:
        total = total + ce
        parts["class"] = float(ce.item())
    return total, parts


@dataclass
class NucleiTask:
    """The training task for `unet-nuclei` packages (see `cellbridge.train.loop.TrainingTask`)."""

    dataset: Dataset
    train_images: list[ImageRecord]
    val_images: list[ImageRecord]
    name: str = "nuclei"
    preprocessing: dict[str, Any] = field(default_factory=lambda: {"mode": "rgb"})
    params: dict[str, Any] = field(default_factory=lambda: {"depth": 3, "width": 16})
    sigma: float = 2.0
    batch_size: int = 8
    crop: int | None = 256
    workers: int = 0
    augment: bool = True
    mpp: float | None = None
    data_summary: dict[str, Any] = field(default_factory=dict)
    scale: tuple[float, float] = (0.8, 1.25)   # augmentation rescale range
    stain: str = "mild"                        # augmentation stain jitter: mild or strong
    init: str | None = None                    # model package whose matching weights start the training
    postprocessing: dict[str, Any] = field(default_factory=dict)  # model.json postprocessing overrides
    factors: dict[Path, float] = field(default_factory=dict)  # image file → resize to the model's pixel size
    trainable: str = "all"                     # the part of the U-Net that learns (see UNet.train_only)

    @property
    def maps(self) -> int:
        """Maps before the class logits (see `cellbridge.engines.nuclei.nuclei_maps`)."""
        return 3 if self.params.get("distance_map") else 2

    @property
    def in_channels(self) -> int:
        return 1 if self.preprocessing["mode"] == "gray_unsharp" else 3

    def _spec(self, metrics: dict[str, float] | None = None) -> ModelSpec:
        colors = self.dataset.colors or {}
        classes = [{"name": c, "color": list(colors.get(c) or _default_color(c))} for c in self.dataset.classes]
        return ModelSpec(name=self.name, task="nuclei", architecture="unet-nuclei", in_channels=self.in_channels,
                         classes=classes, params=dict(self.params), preprocessing=dict(self.preprocessing),
                         mpp=self.mpp, tile_size=512, overlap=64,
                         postprocessing={"peak_threshold": 0.3, "min_distance": 3, "fg_threshold": 0.5,
                                         **self.postprocessing},
                         training={"task": "keypoints", "data": self.data_summary, "sigma": self.sigma,
                                   "augmentation": {"scale": list(self.scale), "stain": self.stain},
                                   **({"init": self.init} if self.init else {}),
                                   **({"trainable": self.trainable} if self.trainable != "all" else {}),
                                   "metrics": metrics or {}})

    def build_module(self) -> torch.nn.Module:
        module = build_nuclei_unet(self._spec())
        if self.init:
            _load_matching(module, self.init)
        module.train_only(self.trainable)
        # NHWC weights: oneDNN trains the U-Net about 1.4x faster on the CPU (same values, other strides)
        return module.to(memory_format=torch.channels_last)

    def train_loader(self) -> DataLoader:
        data = NucleiDataset(self.dataset, self.train_images, self.preprocessing, self.sigma, self.augment,
                             self.crop, self.scale, self.stain, factors=self.factors)
        return DataLoader(data, batch_size=self.batch_size, shuffle=True, num_workers=self.workers,
                          drop_last=len(data) > self.batch_size, persistent_workers=False,
                          worker_init_fn=_reseed_worker)

    def loss(self, module: torch.nn.Module, batch: dict[str, torch.Tensor],
             device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        return nuclei_loss(module(batch["image"]), batch, self.maps)

    def validate(self, module: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Keypoint F1 at 4 px, instance F1 / mean IoU at IoU 0.5 and panoptic quality (the score: it rewards
        finding every nucleus and outlining it well) of the post-processed nuclei, at the model's pixel size.
        Images labelled with points only count for the keypoint scores; the score is the panoptic quality of the
        outlined images, the keypoint F1 of the point images, or their mean when there are both."""
        return score_validation(self.validation_maps(module, device), self._spec().postprocessing)

    def validation_maps(self, module: torch.nn.Module, device: torch.device) -> list[ValidationImage]:
        """The model's maps of each validation image, with what scoring them needs (see `score_validation`)."""
        data = NucleiDataset(self.dataset, self.val_images, self.preprocessing, self.sigma, False, None,
                             factors=self.factors)
        images = []
        for i in range(len(data)):
            item = data[i]
            logits = module(item["image"][None].to(device)).float()
            maps = torch.sigmoid(logits[0, :self.maps]).cpu().numpy()
            record = rescaled_record(self.val_images[i], self.factors.get(self.val_images[i].path, 1.0))
            targets = render_targets(record, data.class_index, self.sigma)
            truth = _instance_labels(record) if targets.outlined else None
            images.append(ValidationImage(maps, item["valid"].numpy() > 0.5, targets.centres, truth))
        return images

    def spec(self, metrics: dict[str, float]) -> ModelSpec:
        return self._spec(metrics)


@dataclass
class ValidationImage:
    """One validation image's maps (heatmap, foreground[, distance]), where it is scored, its true centres and,
    when outlined, its true instance labels."""

    maps: np.ndarray
    valid: np.ndarray
    centres: np.ndarray
    truth: np.ndarray | None


def score_validation(images: list[ValidationImage], options: dict[str, Any]) -> dict[str, float]:
    """The validation metrics (see `NucleiTask.validate`) of the maps post-processed with `options`."""
    from cellbridge.evaluate import aggregate_counts, instance_metrics, keypoint_f1

    point_scores, instance_scores, point_only = [], [], []
    for image in images:
        maps, valid = image.maps, image.valid
        labels, _ = segment_nuclei(maps[0], maps[1], None, options, maps[2] if len(maps) > 2 else None)
        score = keypoint_f1(_in_mask(_label_centres(labels), valid), _in_mask(image.centres, valid), 4.0)
        point_scores.append(score)
        if image.truth is not None:
            instance_scores.append(instance_metrics(labels * valid, image.truth * valid, 0.5))
        else:
            point_only.append(score)
    points = aggregate_counts(point_scores)
    metrics = {"keypoint_f1_4px": points["f1"], "precision": points["precision"], "recall": points["recall"]}
    parts = []
    if instance_scores:
        instances = aggregate_counts(instance_scores)
        mean_iou = float(np.mean([s["mean_matched_iou"] for s in instance_scores if s["tp"] > 0] or [0.0]))
        metrics.update(panoptic_quality=instances["pq"], instance_f1_iou50=instances["f1"], mean_matched_iou=mean_iou)
        parts.append(instances["pq"])
    if point_only:
        metrics["point_images_keypoint_f1_4px"] = aggregate_counts(point_only)["f1"]
        parts.append(metrics["point_images_keypoint_f1_4px"])
    return {"score": float(np.mean(parts)), **metrics}


THRESHOLD_GRID: dict[str, tuple[float, ...]] = {
    "peak_threshold": (0.3, 0.4, 0.5, 0.6, 0.7),
    "min_distance": (3, 5, 7),
    "peak_prominence": (0.0, 0.3),
    "fg_threshold": (0.3, 0.5),
}


def choose_postprocessing(task: NucleiTask, model_dir: str | Path,
                          grid: dict[str, tuple[float, ...]] | None = None) -> dict[str, Any]:
    """Choose the trained package's post-processing thresholds on its own validation images (as StarDist
    optimises its thresholds): every combination of `grid` is scored with `score_validation` on maps computed
    once, the best score wins and is written into model.json with the table of scores. Returns the record."""
    import itertools

    from cellbridge.models.package import load_model, save_model

    package = load_model(model_dir)
    package.module.eval()
    with torch.no_grad():
        images = task.validation_maps(package.module, torch.device("cpu"))
    grid = grid or THRESHOLD_GRID
    names = list(grid)
    base = dict(package.spec.postprocessing)
    rows = []
    for values in itertools.product(*(grid[n] for n in names)):
        options = {**base, **dict(zip(names, values))}
        rows.append({**dict(zip(names, values)), "score": round(score_validation(images, options)["score"], 4)})
    best = max(rows, key=lambda r: r["score"])
    before = round(score_validation(images, base)["score"], 4)
    spec = package.spec
    spec.postprocessing = {**base, **{n: best[n] for n in names}}
    record = {"on": f"{len(images)} validation images", "score_before": before, "score_after": best["score"],
              "chosen": {n: best[n] for n in names}, "grid": rows}
    spec.training = {**(spec.training or {}), "thresholds_chosen": record}
    save_model(model_dir, spec, package.module)
    return record


def _in_mask(points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The points (x, y) that fall on true pixels of `mask`."""
    if len(points) == 0:
        return points
    rows = np.clip(points[:, 1].astype(int), 0, mask.shape[0] - 1)
    cols = np.clip(points[:, 0].astype(int), 0, mask.shape[1] - 1)
    return points[mask[rows, cols]]


def _label_centres(labels: np.ndarray) -> np.ndarray:
    """Centroid (x, y) in pixel-edge coordinates of each label."""
    from scipy import ndimage as ndi

    ids = np.unique(labels)
    ids = ids[ids > 0]
    if len(ids) == 0:
        return np.empty((0, 2))
    centres = np.array(ndi.center_of_mass(np.ones_like(labels), labels, ids))
    return centres[:, ::-1] + 0.5


def _instance_labels(record: ImageRecord) -> np.ndarray:
    labels = np.zeros((record.height, record.width), np.int32)
    for k, ann in enumerate(record.annotations, start=1):
        labels[rasterize(ann.geometry, labels.shape)] = k
    return labels


def _load_matching(module: torch.nn.Module, model: str) -> None:
    """Copy into `module` the weights of package `model` whose names and shapes match (e.g. all but the head
    when the class count differs): a warm start from another nuclei model."""
    from cellbridge.models.package import load_model

    source = load_model(model).module.state_dict()
    target = module.state_dict()
    matching = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    if not matching:
        raise DatasetError(f"--init {model}: no weights match this model's architecture")
    for key in ("head.weight", "head.bias"):  # a head with other outputs: keep the heatmap and foreground rows
        if key in source and key in target and key not in matching and source[key].shape[1:] == target[key].shape[1:]:
            head = target[key].clone()
            head[:2] = source[key][:2]
            matching[key] = head
    module.load_state_dict(matching, strict=False)


def _default_color(name: str) -> tuple[int, int, int]:
    from cellbridge.objects import class_color
    return class_color(name)


def read_nuclei_data(paths: list[Path], modality: str | None = None, split: str = "train") -> list[Dataset]:
    """Each source as a Dataset: a COCO JSON (`cellbridge export-coco`), a DSB-style folder (images/, labels/;
    `modality` keeps the folder's images whose manifest modality contains it) or a point folder (images/,
    points/; `split` picks its fixed train or test images, or all)."""
    from cellbridge.datasets.dsb import is_dsb_folder, read_dsb_folder
    from cellbridge.datasets.points import is_point_folder, read_point_folder

    def read(path: Path) -> Dataset:
        if is_dsb_folder(path):
            return read_dsb_folder(path, modality=modality)
        if is_point_folder(path):
            return read_point_folder(path, split=split)
        return read_coco(path)

    return [read(p) for p in paths]


def _source_pixel_sizes(paths: list[Path], source_mpp: dict[str, float]) -> dict[Path, float]:
    """Each data source named in `source_mpp` → its images' pixel size; an error for a name that is no source."""
    sizes = {}
    for name, size in source_mpp.items():
        named = Path(name).resolve()
        matches = [p for p in paths if p.resolve() == named]
        if not matches:
            raise DatasetError(f"pixel size given for {name!r}, which is not one of the training data sources "
                               f"({', '.join(map(str, paths))})")
        if not 0 < size <= 100:
            raise DatasetError(f"pixel size of {name!r} must be between 0 and 100 µm, got {size}")
        sizes.update((p, float(size)) for p in matches)
    return sizes


def scale_factors(images: list[ImageRecord], model_mpp: float | None, progress: bool = True) -> dict[Path, float]:
    """Image file → the resize that brings it to `model_mpp` (see `model_scale_factor`); factors of 1 left out."""
    from tqdm import tqdm

    factors = {}
    if not model_mpp:
        return factors
    for record in tqdm(images, desc="pixel sizes", unit="image", disable=not progress, leave=False):
        factor = model_scale_factor(read_rgb(record.path), record, model_mpp)
        if factor != 1.0:
            factors[record.path] = factor
    return factors


def merge_classes(dataset: Dataset, name: str) -> Dataset:
    """The same images with every annotation relabelled `name` (a single-class model from multi-class data)."""
    from dataclasses import replace

    images = [replace(im, annotations=[replace(a, label=name) for a in im.annotations]) for im in dataset.images]
    color = (dataset.colors or {}).get(name)
    return Dataset(images, [name], {name: color} if color else {})


def nuclei_task(data: str | Path | list[str | Path], *, val_split: float = 0.2, preprocessing: str = "rgb",
                params: dict | None = None, batch_size: int = 8, crop: int | None = 256, sigma: float = 2.0,
                seed: int = 0, workers: int = 0, augment: bool = True, name: str | None = None,
                mpp: float | None = None, modality: str | None = None, single_class: str | None = None,
                scale: tuple[float, float] = (0.8, 1.25), stain: str = "mild", init: str | None = None,
                postprocessing: dict[str, Any] | None = None, split: str = "train", trainable: str = "all",
                source_mpp: dict[str, float] | None = None, progress: bool = True) -> NucleiTask:
    """A nuclei training task from COCO exports, DSB-style folders and/or point folders; images split into
    train/val by a seeded shuffle. `single_class` relabels every nucleus with that one class (needed to mix
    classed and class-less data). `mpp` is the pixel size of the COCO images (tiles exported from slides),
    `source_mpp` that of the images of the named sources (e.g. a points folder of tiles cut at one pixel size); the
    model's pixel size, post-processing and distance map are the `init` model's, else `mpp` and the defaults. Images
    are brought to the model's pixel size from their own (COCO with `mpp`), else from the one estimated from their
    nuclei, as a run does on an uncalibrated image. `trainable` is the part of the U-Net that learns: all, decoder
    or head (the rest keeps the `init` model's weights and batch-norm statistics).
    """
    if trainable not in TRAINABLE_PARTS:
        raise DatasetError(f"unknown trainable part {trainable!r}; use {', '.join(TRAINABLE_PARTS)}")
    if trainable != "all" and not init:
        raise DatasetError(f"training only the {trainable} needs --init: the model to fine-tune")
    paths = [Path(p) for p in (data if isinstance(data, list) else [data])]
    datasets = read_nuclei_data(paths, modality, split)
    given = _source_pixel_sizes(paths, source_mpp or {})
    for source, dataset in zip(paths, datasets):
        # given for this source, else for COCO exports: tiles at the pixel size they were exported for
        source_size = given.get(source) or (mpp if source.suffix.lower() == ".json" else None)
        for record in dataset.images:
            record.mpp = record.mpp or source_size
    if init:  # the pixel size and post-processing thresholds come with the model being fine-tuned
        from cellbridge.models.package import read_spec, resolve_model_dir

        init_spec = read_spec(resolve_model_dir(init))
        mpp = init_spec.mpp or mpp
        postprocessing = {**init_spec.postprocessing, **(postprocessing or {})}
        if init_spec.params.get("distance_map"):  # keep the maps the starting model has
            params = {**(params or {"depth": 3, "width": 16}), "distance_map": True}
    if single_class:
        datasets = [merge_classes(d, single_class) for d in datasets]
    classes = sorted({c for d in datasets for c in d.classes})
    colors = {k: v for d in datasets for k, v in (d.colors or {}).items()}
    dataset = Dataset([im for d in datasets for im in d.images], classes, colors)
    images = [im for im in dataset.images if im.annotations]
    if len(images) < 2:
        raise DatasetError(f"{', '.join(map(str, paths))}: nuclei training needs at least 2 images with nuclei, "
                           f"found {len(images)}")
    order = np.random.default_rng(seed).permutation(len(images))
    n_val = max(1, int(round(len(images) * val_split)))
    val = [images[i] for i in order[:n_val]]
    train = [images[i] for i in order[n_val:]]
    factors = scale_factors(images, mpp, progress)
    summary = {"source": [str(p) for p in paths], "images": len(images), "train_images": len(train),
               "val_images": len(val), "objects": {k: int(v) for k, v in dataset.counts().items()}}
    if factors:
        values = np.array(list(factors.values()))
        summary["rescaled_to_model_pixel_size"] = {"images": len(factors), "median_factor": round(float(np.median(values)), 3),
                                                   "min_factor": round(float(values.min()), 3),
                                                   "max_factor": round(float(values.max()), 3)}
    if given:
        summary["pixel_size_given"] = {str(p): size for p, size in given.items()}
    if modality:
        summary["modality"] = modality
    if single_class:
        summary["single_class"] = single_class
    mode = {"rgb": {"mode": "rgb"}, "gray_unsharp": {"mode": "gray_unsharp"}}.get(preprocessing)
    if mode is None:
        raise DatasetError(f"unknown preprocessing {preprocessing!r}; use rgb or gray_unsharp")
    return NucleiTask(dataset, train, val, name=name or "nuclei", preprocessing=mode,
                      params=params or {"depth": 3, "width": 16}, sigma=sigma, batch_size=batch_size, crop=crop,
                      workers=workers, augment=augment, mpp=mpp, data_summary=summary, scale=tuple(scale),
                      stain=stain, init=init, postprocessing=dict(postprocessing or {}), factors=factors,
                      trainable=trainable)
