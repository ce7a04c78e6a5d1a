"""Faster R-CNN detector: building from model.json, training on generated images, engine output in level-0
coordinates, class-aware NMS, weights/model.json mismatches, training areas, augmentation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from cellbridge.datasets.coco import write_coco
from cellbridge.datasets.records import Annotation, Dataset, ImageRecord
from cellbridge.engines.detector import filter_detections
from cellbridge.engines.registry import make_engine
from cellbridge.models.package import (
    ModelError,
    ModelPackage,
    ModelSpec,
    load_model,
    save_model,
)
from cellbridge.models.preprocess import to_batch
from cellbridge.networks.detector import build_detector
from cellbridge.objects import SCORE_MEASUREMENT
from cellbridge.tiling.plan import Tile
from cellbridge.train.augment import build_augmentation, reseed
from cellbridge.train.detect import detection_task, evaluate_detector, load_sample
from cellbridge.train.loop import TrainConfig, fit
from shapely.geometry import Point, Polygon, box

TINY = {"width": 8, "fpn_channels": 32, "representation_size": 128}
CLASSES = ["round", "square"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_spec(**changes: object) -> ModelSpec:
    fields = {"name": "tiny", "task": "detect", "architecture": "fasterrcnn_tiny", "in_channels": 3,
              "classes": [{"name": c} for c in CLASSES], "params": dict(TINY), "tile_size": 128, "overlap": 32}
    fields.update(changes)
    spec = ModelSpec(**fields)
    spec._validate("test")
    return spec


def synthetic_images(folder: Path, count: int, seed: int, size: int = 112) -> Path:
    """Light noisy images with 1-4 non-touching dark blue ellipses ('round') and red rectangles ('square')."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        image = np.full((size, size, 3), 225, np.float32) + rng.normal(0, 8, (size, size, 3))
        annotations: list[Annotation] = []
        placed: list[tuple[float, ...]] = []
        for _ in range(int(rng.integers(1, 5))):
            for _attempt in range(20):
                w, h = rng.uniform(16, 36, 2)
                x0, y0 = round(rng.uniform(2, size - 2 - w)), round(rng.uniform(2, size - 2 - h))
                x1, y1 = round(x0 + w), round(y0 + h)
                if all(x1 < p[0] - 2 or p[2] < x0 - 2 or y1 < p[1] - 2 or p[3] < y0 - 2 for p in placed):
                    break
            else:
                continue
            placed.append((x0, y0, x1, y1))
            if rng.integers(2) == 0:
                cv2.ellipse(image, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2), 0, 0, 360,
                            (70, 60, 150), -1)
                annotations.append(Annotation("round", (x0, y0, x1, y1)))
            else:
                cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), (150, 50, 80), -1)
                annotations.append(Annotation("square", (x0, y0, x1, y1)))
        image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
        path = folder / f"image{index:03d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        records.append(ImageRecord(path, size, size, annotations))
    write_coco(Dataset(records, list(CLASSES)), folder / "annotations.json")
    return folder / "annotations.json"


def test_tiny_detector_learns_generated_boxes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train_json = synthetic_images(tmp_path / "train", 48, seed=1)
    test_json = synthetic_images(tmp_path / "test", 24, seed=2)
    task = detection_task(str(train_json), architecture="fasterrcnn_tiny", params=TINY, val_split=0.2,
                          batch_size=4, tile_size=128, name="synthetic")
    config = TrainConfig(epochs=6, lr=0.003, optimizer="adamw", weight_decay=1e-4, step_size=0, device="cpu")
    result = fit(task, config, tmp_path / "model", progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    package = load_model(tmp_path / "model")
    assert package.spec.class_names == CLASSES
    assert package.spec.training["data"]["train"]["images"] == 38
    metrics = evaluate_detector(package, str(test_json), device="cpu", progress=True)
    assert metrics["images"] == 24
    shown = capsys.readouterr().err                          # a bar over the 24 / 4 = 6 batches
    assert "evaluate: 100%" in shown and "6/6" in shown, shown
    assert metrics["AP50"] >= 0.8, metrics
    assert min(metrics["per_class_AP50"].values()) >= 0.6, metrics


def _package(spec: ModelSpec) -> ModelPackage:
    torch.manual_seed(0)
    return ModelPackage(spec, Path("."), build_detector(spec).eval())


def test_postprocess_maps_boxes_to_level0_with_offset_and_downsample() -> None:
    engine = make_engine(_package(tiny_spec()), torch.device("cpu"))
    tile = Tile(index=0, row=0, col=0, x=1000.0, y=2000.0, size=128, downsample=4.0,
                core=(1000.0, 2000.0, 1512.0, 2512.0))
    raw = {"boxes": np.array([[10, 20, 30, 60], [0, 0, 5, 5]], np.float32),
           "scores": np.array([0.9, 0.6], np.float32), "labels": np.array([2, 1], np.int64)}
    objects = engine.postprocessor()(raw, np.zeros((128, 128, 3), np.uint8), tile)
    assert [o.class_name for o in objects] == ["square", "round"]
    assert objects[0].geometry.bounds == pytest.approx((1040.0, 2080.0, 1120.0, 2240.0))
    assert objects[0].geometry.equals(box(1040, 2080, 1120, 2240))
    assert objects[1].geometry.bounds == pytest.approx((1000.0, 2000.0, 1020.0, 2020.0))
    assert objects[0].object_type == "detection"
    assert objects[0].measurements[SCORE_MEASUREMENT] == pytest.approx(0.9)
    assert objects[0].path_class.color == tuple(engine.spec.classes[1]["color"])
    points = make_engine(engine.package, torch.device("cpu"), {"output": "points"}).postprocessor()(
        raw, np.zeros((128, 128, 3), np.uint8), tile)
    assert isinstance(points[0].geometry, Point)
    assert (points[0].geometry.x, points[0].geometry.y) == pytest.approx((1080.0, 2160.0))


def test_engine_infer_returns_filtered_numpy_per_tile() -> None:
    engine = make_engine(_package(tiny_spec()), torch.device("cpu"), {"score_threshold": 0.0, "max_detections": 7})
    tiles = [np.full((128, 128, 3), 200, np.uint8), np.full((128, 128, 3), 90, np.uint8)]
    raw = engine.infer(to_batch(tiles, engine.spec.preprocessing))
    assert len(raw) == 2
    for out in raw:
        assert out["boxes"].shape[1] == 4 and out["boxes"].dtype == np.float32
        assert len(out["boxes"]) == len(out["scores"]) == len(out["labels"]) <= 7
        assert set(out["labels"].tolist()) <= {1, 2}
        assert np.all(np.diff(out["scores"]) <= 0)
        # no resizing inside the model: boxes stay within the tile's own pixels
        assert out["boxes"].size == 0 or (out["boxes"].min() >= 0 and out["boxes"].max() <= 128)


def test_gray_unsharp_model_builds_and_runs() -> None:
    spec = tiny_spec(in_channels=1, preprocessing={"mode": "gray_unsharp"})
    module = build_detector(spec)
    assert module.backbone.body.stem[0].in_channels == 1
    engine = make_engine(_package(spec), torch.device("cpu"), {"score_threshold": 0.0})
    batch = to_batch([np.full((96, 96, 3), 180, np.uint8)], spec.preprocessing)
    assert batch.shape == (1, 1, 96, 96)
    assert len(engine.infer(batch)) == 1
    for architecture in ("fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn"):
        first = next(m for m in build_detector(tiny_spec(architecture=architecture, params={}, in_channels=1,
                                                         preprocessing={"mode": "gray_unsharp"})).backbone.body
                     .modules() if isinstance(m, torch.nn.Conv2d))
        assert first.in_channels == 1


@pytest.mark.parametrize("change, named", [
    ({"classes": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}, "cls_score"),
    ({"in_channels": 1, "preprocessing": {"mode": "gray_unsharp"}}, "stem.0.weight"),
])
def test_mismatched_weights_give_model_error(tmp_path: Path, change: dict, named: str) -> None:
    spec = tiny_spec()
    save_model(tmp_path, spec, build_detector(spec))
    assert load_model(tmp_path).spec.architecture == "fasterrcnn_tiny"
    wrong = tiny_spec(**change)
    wrong.weights = spec.weights
    save_model(tmp_path / "other", wrong, build_detector(wrong))
    (tmp_path / "other" / spec.weights).write_bytes((tmp_path / spec.weights).read_bytes())
    with pytest.raises(ModelError, match="weights do not match model.json") as error:
        load_model(tmp_path / "other")
    assert named in str(error.value)


def test_unknown_or_bad_params_name_the_problem(tmp_path: Path) -> None:
    from cellbridge.engines.registry import build_module

    with pytest.raises(ModelError, match="'params'.*unknown parameter.*anchor_size"):
        build_module(tiny_spec(params={"anchor_size": [8]}))
    with pytest.raises(ModelError, match="anchor_sizes"):
        build_module(tiny_spec(params={**TINY, "anchor_sizes": [8, 16]}))


def test_class_aware_nms_keeps_other_classes_and_suppresses_duplicates() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60], [0, 0, 10, 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.3])
    labels = torch.tensor([1, 1, 2, 1, 2])
    kept = filter_detections(boxes, scores, labels, iou=0.5, score_threshold=0.0, max_detections=100)
    # box 1 duplicates box 0 (same class), box 4 duplicates box 2; box 2 overlaps box 0 but is another class
    assert kept["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert kept["labels"].tolist() == [1, 2, 1]
    assert filter_detections(boxes, scores, labels, 0.5, 0.65, 100)["scores"].tolist() == pytest.approx([0.9, 0.7])
    assert len(filter_detections(boxes, scores, labels, 0.5, 0.0, 2)["scores"]) == 2


def test_training_area_drops_outside_boxes_and_fills_outside_pixels(tmp_path: Path) -> None:
    image = np.full((100, 120, 3), 200, np.uint8)
    image[60:80, 80:100] = 0  # an unannotated object outside the area
    path = tmp_path / "tile.png"
    cv2.imwrite(str(path), image)
    area = Polygon([(10, 10), (70, 10), (70, 90), (10, 90)])
    record = ImageRecord(path, 120, 100, [Annotation("round", (20, 20, 40, 40)), Annotation("square", (60, 20, 90, 40))],
                         training_area=area)
    sample = load_sample(record, CLASSES, downsample=2.0)
    assert sample.origin == (10.0, 10.0)
    assert sample.rgb.shape == (40, 30, 3)
    assert sample.labels.tolist() == [1]  # the square's centre (75, 30) lies outside the area
    assert sample.boxes.tolist() == [[5.0, 5.0, 15.0, 15.0]]
    assert sample.scale == (2.0, 2.0)
    assert sample.rgb.min() == 200  # no pixel of the unannotated object reaches training


def test_augmentation_moves_boxes_keypoints_and_masks_with_the_image() -> None:
    image = np.zeros((64, 80, 3), np.uint8)
    image[10:20, 30:50] = 255
    mask = (image[..., 0] > 0).astype(np.uint8)
    pipeline = build_augmentation(boxes=True, keypoints=True, color=0, stain=0, blur=0, scale=None)
    for seed in range(8):
        reseed(pipeline, seed)
        out = pipeline(image=image, mask=mask, bboxes=[(30, 10, 50, 20)], labels=[1], keypoints=[(40, 15)],
                       keypoint_labels=[1])
        ys, xs = np.nonzero(out["image"][..., 0])
        assert tuple(out["bboxes"][0]) == pytest.approx((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        assert np.array_equal(out["mask"] > 0, out["image"][..., 0] > 0)
        kx, ky = out["keypoints"][0][:2]
        assert (xs.min() + xs.max() + 1) / 2 == pytest.approx(kx, abs=1)
        assert (ys.min() + ys.max() + 1) / 2 == pytest.approx(ky, abs=1)


BCCD = Path(__file__).resolve().parents[3] / "shared" / "data" / "bccd"


def test_shipped_bccd_model_loads_and_is_small() -> None:
    package = load_model("bccd-frcnn")
    assert package.spec.class_names == ["Platelets", "RBC", "WBC"]
    assert (package.path / package.spec.weights).stat().st_size <= 25 * 2 ** 20
    assert package.spec.training["command"] and package.spec.training["data"]["train"]["images"] == 205


@pytest.mark.skipif(not BCCD.exists(), reason="BCCD data (../shared/data/bccd) is not present on this machine")
def test_shipped_bccd_model_finds_the_white_cells_of_test_images() -> None:
    from cellbridge.datasets.voc import box_iou, read_voc
    from cellbridge.train.detect import read_rgb

    engine = make_engine(load_model("bccd-frcnn"), torch.device("cpu"))
    ds = engine.spec.downsample
    for record in read_voc(BCCD, split="test").images[:3]:
        rgb = read_rgb(record.path)
        small = cv2.resize(rgb, (round(rgb.shape[1] / ds), round(rgb.shape[0] / ds)), interpolation=cv2.INTER_AREA)
        tile = Tile(0, 0, 0, 0.0, 0.0, max(small.shape[:2]), ds, (0.0, 0.0, float(rgb.shape[1]), float(rgb.shape[0])))
        objects = engine.postprocessor()(engine.infer(to_batch([small], engine.spec.preprocessing))[0], small, tile)
        found = [o.geometry.bounds for o in objects if o.class_name == "WBC"]
        for truth in (a.bbox for a in record.annotations if a.label == "WBC"):
            assert max((box_iou(truth, f) for f in found), default=0.0) >= 0.5, (record.name, truth, found)
