"""Training and evaluating box detectors (Faster R-CNN, `networks/detector.py`) on COCO or Pascal VOC data.

Data: a COCO JSON (as `cellbridge export-coco` writes it, or any COCO detection file) or a Pascal VOC folder
(e.g. BCCD). For VOC, `ImageSets/Main/<split>.txt` choose the training and validation images; without those
lists, and always for COCO, a seeded random `val_split` fraction of the images validates.

Images are read at the model's `downsample` (resized by 1/downsample, boxes too), so that the model learns at
the scale the pipeline will read slides at.

Partially annotated images (`training_area` in COCO): the image is cropped to the area's bounding box, pixels
outside the area are filled with the median colour of the pixels inside (a flat, object-free region, so
the unannotated cells there are never taught as background), and boxes whose centre lies outside the area are
dropped. Evaluation applies the same rule (predictions centred outside the area are ignored).

Validation and `evaluate_detector` use COCO box metrics (pycocotools): AP (IoU .50:.95), AP50, AP75, AR100 and
AP50 per class; the loop keeps the epoch with the best `score` (AP50 by default).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from shapely import contains_xy
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from cellbridge.datasets.coco import read_coco
from cellbridge.datasets.records import Dataset, ImageRecord, sorted_classes
from cellbridge.datasets.voc import read_voc
from cellbridge.device import resolve_device
from cellbridge.engines.detector import DEFAULTS, filter_detections
from cellbridge.errors import DatasetError
from cellbridge.evaluate.detection import coco_detection_metrics
from cellbridge.models.package import ModelPackage, ModelSpec, load_model
from cellbridge.models.preprocess import preprocess_image
from cellbridge.networks.detector import COMPACT_DEFAULTS, build_detector
from cellbridge.objects import class_color
from cellbridge.train.augment import build_augmentation, reseed

MIN_BOX = 1.0  # model pixels: narrower boxes (after resizing or augmentation) are dropped
EVAL_SCORE_THRESHOLD = 0.0  # evaluation keeps every box the model outputs (its own box_score_thresh applies)
EVAL_MAX_DETECTIONS = 100  # COCO's AR100 / AP use the top 100 per image


@dataclass
class Sample:
    """One image ready for the model: RGB at model scale and its boxes (model pixels) and 1-based labels."""

    rgb: np.ndarray
    boxes: np.ndarray  # (N, 4) float32 x0, y0, x1, y1
    labels: np.ndarray  # (N,) int64, 1..n_classes
    origin: tuple[float, float]  # image-pixel position of the sample's (0, 0) (training-area crop)
    scale: tuple[float, float]  # image pixels per sample pixel in x and y (≈ the downsample)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (gray and RGBA are converted)."""
    data = np.fromfile(str(path), np.uint8) if path.is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data is not None and data.size else None
    if image is None:
        raise DatasetError(f"{path}: cannot read the image (missing or not an image)")
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_sample(record: ImageRecord, classes: list[str], downsample: float = 1.0) -> Sample:
    """Read an image with its boxes at model scale, applying its training area (see the module docstring)."""
    rgb = read_rgb(record.path)
    boxes = np.array([a.bbox for a in record.annotations], np.float32).reshape(-1, 4)
    labels = np.array([classes.index(a.label) + 1 if a.label in classes else 0 for a in record.annotations],
                      np.int64)
    keep = labels > 0
    origin = (0.0, 0.0)
    area = record.training_area
    if area is not None and not area.is_empty:
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        keep &= contains_xy(area, centres[:, 0], centres[:, 1]) if len(boxes) else keep
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = area.bounds
        x0, y0 = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
        x1, y1 = min(int(math.ceil(x1)), w), min(int(math.ceil(y1)), h)
        if x1 > x0 and y1 > y0:
            rgb = rgb[y0:y1, x0:x1].copy()
            ys, xs = np.mgrid[y0:y1, x0:x1]
            inside = contains_xy(area, xs.ravel() + 0.5, ys.ravel() + 0.5).reshape(rgb.shape[:2])
            if inside.any() and not inside.all():
                rgb[~inside] = np.median(rgb[inside], axis=0).astype(np.uint8)
            boxes = boxes - np.array([x0, y0, x0, y0], np.float32)
            origin = (float(x0), float(y0))
    boxes, labels = boxes[keep], labels[keep]
    h, w = rgb.shape[:2]
    boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
    scale = (1.0, 1.0)
    if downsample != 1:
        size = (max(1, round(w / downsample)), max(1, round(h / downsample)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        scale = (w / size[0], h / size[1])
        boxes = boxes / np.array([*scale, *scale], np.float32)
    valid = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX)
    return Sample(rgb, boxes[valid], labels[valid], origin, scale)


def collate_lists(batch: list[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    """DataLoader collate for detection: images and targets as lists (sizes and box counts differ)."""
    return tuple(list(items) for items in zip(*batch))


class DetectionDataset(TorchDataset):
    """Records → (image tensor (C, H, W), target {boxes, labels}); decoded samples are cached in memory."""

    def __init__(self, records: list[ImageRecord], classes: list[str], preprocessing: dict[str, Any],
                 downsample: float = 1.0, augment: bool = False, cache: bool = True) -> None:
        self.records = records
        self.classes = classes
        self.preprocessing = preprocessing
        self.downsample = downsample
        self.transform = build_augmentation(boxes=True) if augment else None
        self._cache: dict[int, Sample] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, index: int) -> Sample:
        """The un-augmented sample of image `index`."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        sample = load_sample(self.records[index], self.classes, self.downsample)
        if self._cache is not None:
            self._cache[index] = sample
        return sample

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sample = self.sample(index)
        rgb, boxes, labels = sample.rgb, sample.boxes, sample.labels
        if self.transform is not None:
            reseed(self.transform, int(np.random.randint(2 ** 31)))
            out = self.transform(image=rgb, bboxes=boxes, labels=labels.tolist())
            rgb = out["image"]
            boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], np.int64).reshape(-1)
            valid = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX)
            boxes, labels = boxes[valid], labels[valid]
        image = torch.from_numpy(preprocess_image(rgb, self.preprocessing))
        return image, {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}


def coco_box_metrics(images: list[tuple[int, int]], truth: list[tuple[np.ndarray, np.ndarray]],
                     predictions: list[dict[str, np.ndarray]], classes: list[str]) -> dict[str, Any]:
    """COCO bbox metrics (`cellbridge.evaluate.detection`, i.e. pycocotools) of per-image predictions.

    `images`: (width, height) per image; `truth`: (boxes xyxy, 1-based labels) per image; `predictions`:
    {boxes, scores, labels} per image, same coordinates. Returns AP, AP50, AP75, AR100, `per_class_AP50`
    (classes with ground truth) and the counts of images, ground-truth boxes and detections.
    """
    gt: dict[str, Any] = {"images": [], "annotations": [],
                          "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)]}
    detections = []
    for image_id, ((width, height), (boxes, labels), pred) in enumerate(zip(images, truth, predictions), 1):
        gt["images"].append({"id": image_id, "width": int(width), "height": int(height)})
        for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id,
                                      "category_id": int(label), "bbox": [x0, y0, x1 - x0, y1 - y0],
                                      "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        for (x0, y0, x1, y1), score, label in zip(pred["boxes"].tolist(), pred["scores"].tolist(),
                                                  pred["labels"].tolist()):
            detections.append({"image_id": image_id, "category_id": int(label),
                               "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
    result = coco_detection_metrics(gt, detections, "bbox")
    result.update(images=len(images), ground_truth=len(gt["annotations"]), detections=len(detections))
    return result


@torch.no_grad()
def predict(module: torch.nn.Module, dataset: DetectionDataset, device: torch.device, batch_size: int = 4,
            nms_iou: float = DEFAULTS["nms_iou"], score_threshold: float = EVAL_SCORE_THRESHOLD,
            max_detections: int = EVAL_MAX_DETECTIONS) -> list[dict[str, np.ndarray]]:
    """Detections per image of `dataset` in the image's own pixel coordinates (training area applied)."""
    module.eval()
    results: list[dict[str, np.ndarray]] = []
    for start in range(0, len(dataset), batch_size):
        indices = list(range(start, min(start + batch_size, len(dataset))))
        samples = [dataset.sample(i) for i in indices]
        images = [torch.from_numpy(preprocess_image(s.rgb, dataset.preprocessing)).to(device) for s in samples]
        for sample, index, out in zip(samples, indices, module(images)):
            found = filter_detections(out["boxes"], out["scores"], out["labels"], nms_iou, score_threshold,
                                      max_detections)
            scale = np.array([*sample.scale, *sample.scale], np.float32)
            found["boxes"] = found["boxes"] * scale + np.array([*sample.origin, *sample.origin], np.float32)
            area = dataset.records[index].training_area
            if area is not None and len(found["boxes"]):
                centres = (found["boxes"][:, :2] + found["boxes"][:, 2:]) / 2
                inside = contains_xy(area, centres[:, 0], centres[:, 1])
                found = {k: v[inside] for k, v in found.items()}
            results.append(found)
    return results


def truth_in_image_coordinates(dataset: DetectionDataset) -> tuple[list[tuple[int, int]],
                                                                   list[tuple[np.ndarray, np.ndarray]]]:
    """(width, height) and (boxes, labels) per image in image pixels, with the training-area rule applied."""
    sizes, truth = [], []
    for index, record in enumerate(dataset.records):
        boxes = np.array([a.bbox for a in record.annotations], np.float32).reshape(-1, 4)
        labels = np.array([dataset.classes.index(a.label) + 1 if a.label in dataset.classes else 0
                           for a in record.annotations], np.int64)
        keep = labels > 0
        if record.training_area is not None and len(boxes):
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            keep &= contains_xy(record.training_area, centres[:, 0], centres[:, 1])
        sizes.append((record.width, record.height))
        truth.append((boxes[keep], labels[keep]))
    return sizes, truth


def evaluate_module(module: torch.nn.Module, dataset: DetectionDataset, device: torch.device,
                    batch_size: int = 4) -> dict[str, Any]:
    """COCO metrics of `module` on `dataset` (see `coco_box_metrics`)."""
    predictions = predict(module, dataset, device, batch_size)
    sizes, truth = truth_in_image_coordinates(dataset)
    return coco_box_metrics(sizes, truth, predictions, dataset.classes)


def _summary(dataset: Dataset) -> dict[str, Any]:
    return {"images": len(dataset.images), "boxes": sum(len(i.annotations) for i in dataset.images),
            "per_class": dataset.counts()}


class DetectionTask:
    """Faster R-CNN training on a Dataset, for `cellbridge.train.loop.fit`."""

    def __init__(self, train: Dataset, val: Dataset, *, architecture: str = "fasterrcnn_mobilenet_v3_large_fpn",
                 params: dict[str, Any] | None = None, preprocessing: str | dict[str, Any] = "rgb",
                 batch_size: int = 4, seed: int = 0, workers: int = 0, augment: bool = True,
                 downsample: float = 1.0, tile_size: int = 512, name: str = "detector",
                 score_metric: str = "AP50", source: dict[str, Any] | None = None) -> None:
        if not train.images:
            raise DatasetError("the training set has no images")
        if not val.images:
            raise DatasetError("the validation set has no images")
        if score_metric not in ("AP", "AP50"):
            raise ValueError(f"score_metric must be AP or AP50, got {score_metric!r}")
        self.classes = sorted_classes({*train.classes, *val.classes}, train.classes)
        self.colors = {c: tuple(train.colors.get(c) or val.colors.get(c) or class_color(c)) for c in self.classes}
        self.train_data, self.val_data = train, val
        self.architecture = architecture
        # the compact models' defaults are written out, so that the package does not depend on them
        self.params = {**COMPACT_DEFAULTS.get(architecture, {}), **(params or {})}
        self.preprocessing = {"mode": preprocessing} if isinstance(preprocessing, str) else dict(preprocessing)
        self.in_channels = 1 if self.preprocessing["mode"] == "gray_unsharp" else 3
        self.batch_size, self.seed, self.workers = batch_size, seed, workers
        self.downsample, self.tile_size, self.name = float(downsample), int(tile_size), name
        self.score_metric = score_metric
        self.source = dict(source or {})
        self.train_set = DetectionDataset(train.images, self.classes, self.preprocessing, self.downsample, augment)
        self.val_set = DetectionDataset(val.images, self.classes, self.preprocessing, self.downsample, False)
        self.base_spec()._validate(f"{name} (training settings)")

    def base_spec(self) -> ModelSpec:
        """model.json without training results."""
        size = self._object_size()
        overlap = min(max(64, int(math.ceil(size * 1.1 / 8) * 8)), self.tile_size // 2 - 8)
        return ModelSpec(
            name=self.name, task="detect", architecture=self.architecture, in_channels=self.in_channels,
            classes=[{"name": c, "color": list(self.colors[c])} for c in self.classes], params=dict(self.params),
            preprocessing=dict(self.preprocessing), mpp=None, downsample=self.downsample,
            tile_size=self.tile_size, overlap=overlap,
            postprocessing={"score_threshold": DEFAULTS["score_threshold"], "nms_iou": DEFAULTS["nms_iou"],
                            "max_detections": DEFAULTS["max_detections"], "max_object_size": size})

    def _object_size(self) -> int:
        """The 99th percentile of box sides at model scale (from the annotations, without reading images)."""
        sides = [max(a.bbox[2] - a.bbox[0], a.bbox[3] - a.bbox[1]) / self.downsample
                 for image in self.train_data.images for a in image.annotations]
        return int(math.ceil(np.percentile(sides, 99))) if sides else int(DEFAULTS["max_object_size"])

    # --- TrainingTask protocol ---
    def build_module(self) -> torch.nn.Module:
        return build_detector(self.base_spec())

    def train_loader(self) -> DataLoader:
        generator = torch.Generator()
        generator.manual_seed(int(torch.randint(0, 2 ** 31, (1,)).item()))  # follows the loop's per-epoch seed
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, collate_fn=collate_lists,
                          num_workers=self.workers, generator=generator, persistent_workers=False)

    def loss(self, module: torch.nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor,
                                                                                         dict[str, float]]:
        images, targets = batch
        images = [image.to(device) for image in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        parts = module(images, targets)
        total = sum(parts.values())
        return total, {k.replace("loss_", ""): float(v.item()) for k, v in parts.items()}

    def validate(self, module: torch.nn.Module, device: torch.device) -> dict[str, float]:
        metrics = evaluate_module(module, self.val_set, device, self.batch_size)
        flat = {k: metrics[k] for k in ("AP", "AP50", "AP75", "AR100")}
        flat.update({f"AP50 {name}": value for name, value in metrics["per_class_AP50"].items()})
        flat["score"] = metrics[self.score_metric]
        return flat

    def spec(self, metrics: dict[str, float]) -> ModelSpec:
        spec = self.base_spec()
        spec.training = {"data": {**self.source, "train": _summary(self.train_data),
                                  "val": _summary(self.val_data)},
                         "score_metric": self.score_metric, "augment": self.train_set.transform is not None,
                         "batch_size": self.batch_size, "metrics": dict(metrics)}
        return spec


def read_detection_data(data: str | Path, split: str | None = None,
                        classes: list[str] | None = None) -> tuple[Dataset, str]:
    """A VOC folder (optionally one split) or a COCO JSON (or a folder holding `annotations.json`)."""
    path = Path(data)
    if path.is_dir() and (path / "Annotations").is_dir():
        return read_voc(path, split, classes), "voc"
    if path.is_dir() and (path / "annotations.json").is_file():
        path = path / "annotations.json"
    if path.is_file() and path.suffix.lower() == ".json":
        return read_coco(path), "coco"
    raise DatasetError(f"{data}: not a Pascal VOC folder (with Annotations/), a COCO JSON file, or a folder "
                       "with annotations.json")


def _has_split(root: Path, split: str | None) -> bool:
    return bool(split) and (root / "ImageSets" / "Main" / f"{split}.txt").is_file()


def _random_split(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    if not 0 < fraction < 1:
        raise DatasetError(f"val_split must be between 0 and 1, got {fraction}")
    if len(dataset.images) < 2:
        raise DatasetError(f"need at least 2 images to split off validation images, got {len(dataset.images)}")
    order = np.random.default_rng(seed).permutation(len(dataset.images))
    count = min(max(1, round(len(order) * fraction)), len(order) - 1)
    val = [dataset.images[i] for i in sorted(order[:count])]
    train = [dataset.images[i] for i in sorted(order[count:])]
    return (Dataset(train, dataset.classes, dataset.colors), Dataset(val, dataset.classes, dataset.colors))


def detection_task(data: str, *, split_train: str = "train", split_val: str = "val", val_split: float = 0.2,
                   architecture: str = "fasterrcnn_mobilenet_v3_large_fpn", params: dict[str, Any] | None = None,
                   preprocessing: str = "rgb", batch_size: int = 4, seed: int = 0, workers: int = 0,
                   augment: bool = True, downsample: float = 1.0, tile_size: int = 512,
                   name: str | None = None, classes: list[str] | None = None) -> DetectionTask:
    """A DetectionTask from a VOC folder (split lists) or a COCO JSON (random `val_split` of its images)."""
    path = Path(data)
    source: dict[str, Any] = {"path": str(data)}
    if path.is_dir() and (path / "Annotations").is_dir():
        if _has_split(path, split_train):
            train, _ = read_detection_data(path, split_train, classes)
            source["split_train"] = split_train
        else:
            train, _ = read_detection_data(path, None, classes)
        if _has_split(path, split_val) and "split_train" in source:
            val, _ = read_detection_data(path, split_val, train.classes)
            source.update(format="voc", split_val=split_val)
        else:
            train, val = _random_split(train, val_split, seed)
            source.update(format="voc", val_split=val_split, seed=seed)
    else:
        everything, kind = read_detection_data(path)
        if classes:
            everything.classes = sorted_classes(everything.classes, classes)
        train, val = _random_split(everything, val_split, seed)
        source.update(format=kind, val_split=val_split, seed=seed)
    return DetectionTask(train, val, architecture=architecture, params=params, preprocessing=preprocessing,
                         batch_size=batch_size, seed=seed, workers=workers, augment=augment,
                         downsample=downsample, tile_size=tile_size, name=name or path.stem or "detector",
                         source=source)


def evaluate_detector(package_or_path: ModelPackage | str | Path, data: str, split: str = "test",
                      device: str = "auto", batch_size: int = 4, progress: bool = False) -> dict[str, Any]:
    """COCO AP / AP50 / AP75 / AR100 / per-class AP50 of a detector package on a dataset.

    `data`: a VOC folder (`split` picks ImageSets/Main/<split>.txt; all images when that list is missing) or a
    COCO JSON (`split` is ignored). Classes are matched by name; ground truth of classes the model does not
    know is not counted (listed under `unknown_classes`). `progress`: a bar over the batches on stderr.
    """
    from cellbridge.train.progress import validation_progress

    package = package_or_path if isinstance(package_or_path, ModelPackage) else load_model(package_or_path)
    spec = package.spec
    if spec.task != "detect":
        raise DatasetError(f"{package.path}: model task is {spec.task!r}, not a detector")
    path = Path(data)
    use_split = split if path.is_dir() and _has_split(path, split) else None
    dataset, kind = read_detection_data(path, use_split, spec.class_names)
    target = resolve_device(device)
    module = package.module.to(target).eval()
    samples = DetectionDataset(dataset.images, spec.class_names, spec.preprocessing, spec.downsample,
                               augment=False, cache=False)
    started = time.perf_counter()
    batches = (len(samples) + batch_size - 1) // batch_size
    with validation_progress(module, batches, progress, desc="evaluate"):
        metrics = evaluate_module(module, samples, target, batch_size)
    metrics.update(seconds=round(time.perf_counter() - started, 2), device=str(target), model=spec.name,
                   data=str(data), format=kind, split=use_split,
                   unknown_classes=sorted(set(dataset.classes) - set(spec.class_names)))
    return metrics
