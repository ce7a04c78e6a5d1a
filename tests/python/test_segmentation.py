"""Region and gland segmentation: generators, exact polygons, blending across tiles, seam-free instances, GlaS
metrics, Mask R-CNN, semantic/instance training (accuracy, resume) and `cellbridge segment`.

Everything runs on generated data with tiny models on the CPU (one torch thread: much faster than two on busy
shared cores).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from cellbridge.cli.main import main
from cellbridge.datasets.coco import read_coco
from cellbridge.engines.instance import (
    DistanceEngine,
    MaskRCNNEngine,
    paint_masks,
)
from cellbridge.engines.registry import make_engine
from cellbridge.evaluate import glas_metrics, pixel_metrics
from cellbridge.geometry import rasterize
from cellbridge.io.qupath_geojson import read_objects
from cellbridge.merge.regions import (
    RegionMerger,
    TileProbabilities,
    blend_window,
    class_map_of,
    mask_polygons,
)
from cellbridge.merge.seams import merge_tiles
from cellbridge.models.package import ModelPackage, ModelSpec, load_model
from cellbridge.models.preprocess import preprocess_image
from cellbridge.networks.mask_rcnn import build_mask_rcnn
from cellbridge.networks.unet import build_distance_unet
from cellbridge.objects import PathClass
from cellbridge.synth.glands import GlandConfig, build_glands, gland_dataset
from cellbridge.synth.smear import (
    SMEAR_CLASSES,
    SmearConfig,
    build_smear,
    smear_dataset,
)
from cellbridge.tiling import plan_tiles
from cellbridge.train.instance import instance_task, normalised_distance
from cellbridge.train.loop import TrainConfig, fit
from cellbridge.train.semantic import (
    IGNORE,
    class_weights_from_counts,
    render_class_map,
    semantic_task,
)
from shapely.geometry import box, shape

SMEAR_NAMES = [c.name for c in SMEAR_CLASSES]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tile_view(array: np.ndarray, tile, fill: float) -> np.ndarray:
    """The (C, size, size) window of a (C, H, W) array under a tile (level 0 = array pixels), padded."""
    out = np.full((array.shape[0], tile.size, tile.size), fill, array.dtype)
    x, y = int(tile.x), int(tile.y)
    window = array[:, y:y + tile.size, x:x + tile.size]
    out[:, :window.shape[1], :window.shape[2]] = window
    return out


# ----------------------------------------------------------------------------------------------- generators


def test_generators_are_deterministic_with_exact_masks() -> None:
    config = SmearConfig(width=128, height=96, seed=7)
    a, b = build_smear(config), build_smear(config)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.class_map, b.class_map)
    assert not np.array_equal(a.rgb, build_smear(SmearConfig(width=128, height=96, seed=8)).rgb)
    classes = np.zeros(len(a.instance_classes) + 1, np.uint8)
    for label, k in a.instance_classes.items():
        classes[label] = k + 1
    assert np.array_equal(a.class_map, classes[a.instances])        # class map and instances agree pixel for pixel
    assert len(set(a.instance_classes.values())) >= 3                # several cell classes
    assert a.rgb[a.class_map == 0].mean() > a.rgb[a.class_map == 1].mean()   # pale plasma, red erythrocytes

    glands = build_glands(GlandConfig(width=256, height=256, seed=3, count=6))
    assert len(glands.glands) == glands.instances.max() >= 4
    for k, gland in enumerate(glands.glands, start=1):
        assert np.array_equal(glands.instances == k, rasterize(gland.outline, glands.instances.shape))
    assert set(np.unique(glands.class_map)) == {0, 1, 2}
    assert (glands.class_map[glands.instances == 0] == 0).all()
    assert glands.rgb[glands.class_map == 2].mean() > glands.rgb[glands.class_map == 1].mean()  # pale lumen


# ---------------------------------------------------------------------------------------------- polygons


def test_mask_polygons_are_exact_with_holes_and_4_connectivity() -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        mask = rng.random((17, 19)) < rng.uniform(0.2, 0.8)
        polygons = mask_polygons(mask)
        painted = np.zeros_like(mask)
        for polygon in polygons:
            painted |= rasterize(polygon, mask.shape)
        assert np.array_equal(painted, mask)
        assert sum(p.area for p in polygons) == mask.sum()
    ring = np.zeros((12, 12), bool)
    ring[2:10, 2:10], ring[4:7, 4:7] = True, False
    (polygon,) = mask_polygons(ring)
    assert len(polygon.interiors) == 1 and polygon.area == 64 - 9
    assert polygon.bounds == (2, 2, 10, 10)                            # pixel edges, not centres
    diagonal = np.eye(3, dtype=bool)
    assert len(mask_polygons(diagonal)) == 3                           # corner contact does not join


def test_blend_window_sums_to_one_across_the_overlap() -> None:
    size, overlap = 32, 12
    left = blend_window(size, overlap, (False, False, True, False))[0]
    right = blend_window(size, overlap, (True, False, False, False))[0]
    shared = left[size - overlap:] + right[:overlap]
    assert np.allclose(shared, 1.0)
    # sin² ramps sampled at pixel centres: never 0, the outermost pixel weighs sin²(π/2 · ½ / overlap)
    rise = np.sin(np.pi / 2 * (np.arange(overlap) + 0.5) / overlap) ** 2
    np.testing.assert_allclose(right[:overlap], rise, rtol=1e-6)
    np.testing.assert_allclose(left[size - overlap:], rise[::-1], rtol=1e-6)
    assert left.min() == right.min() == pytest.approx(np.sin(np.pi / 48) ** 2, rel=1e-6)   # 0.0043
    assert (left[:size - overlap] == 1).all() and (right[overlap:] == 1).all()
    assert left[0] == 1.0 and right[-1] == 1.0                         # no ramp on region-border sides


# ---------------------------------------------------------------------------------------- semantic merge


def _blend_smear(probabilities: np.ndarray, shape: tuple[int, int], tile_size: int, overlap: int, **options):
    plan = plan_tiles(shape[1], shape[0], tile_size=tile_size, overlap=overlap)
    classes = [PathClass.of(c.name, c.color) for c in SMEAR_CLASSES]
    merger = RegionMerger(plan, classes, mpp=0.5, **options)
    objects = []
    for tile in plan:
        objects += merger.add(tile, TileProbabilities(tile_view(probabilities, tile, 0.0)))
    objects += merger.finish()
    return objects, merger, plan


def test_semantic_tiles_blend_into_the_same_regions_as_one_tile() -> None:
    smear = build_smear(SmearConfig(width=300, height=260, seed=5))
    n = len(SMEAR_CLASSES) + 1
    onehot = np.eye(n, dtype=np.float32)[smear.class_map].transpose(2, 0, 1)
    logits = onehot * 3 + np.random.default_rng(1).normal(0, 0.6, onehot.shape).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(0)
    exact = {"simplify": 0.0, "min_area": 0.0, "min_hole_area": 0.0}
    whole, _, _ = _blend_smear(probabilities, smear.class_map.shape, 512, 0, **exact)
    expected = probabilities.argmax(0)
    assert np.array_equal(class_map_of(whole, SMEAR_NAMES, expected.shape), expected)
    for tile_size, overlap in ((64, 16), (96, 33)):
        tiled, merger, plan = _blend_smear(probabilities, smear.class_map.shape, tile_size, overlap, **exact)
        assert len(plan) > 9
        assert np.array_equal(class_map_of(tiled, SMEAR_NAMES, expected.shape), expected)   # no seam anywhere
        assert len(tiled) == len(whole)
        assert merger.peak_tiles <= 2 * plan.cols + 3                  # the documented memory bound
    # defaults: simplified outlines, specks dropped; still one region per cell and areas in µm²
    simplified, _, _ = _blend_smear(probabilities, smear.class_map.shape, 64, 16)
    truth_cells = sum(1 for i, k in smear.instance_classes.items() if (smear.instances == i).sum() >= 16)
    assert abs(len(simplified) - truth_cells) <= 2
    accuracy = pixel_metrics(class_map_of(simplified, SMEAR_NAMES, expected.shape), smear.class_map, n)
    assert accuracy["pixel_accuracy"] > 0.97
    assert all(o.object_type == "annotation" and o.measurements["Area µm^2"] == pytest.approx(o.geometry.area / 4)
               for o in simplified)


def test_regions_are_clipped_to_the_roi_and_may_be_detections() -> None:
    probabilities = np.zeros((2, 100, 100), np.float32)
    probabilities[0], probabilities[1, 20:80, 10:90] = 1.0, 2.0
    plan = plan_tiles(100, 100, tile_size=64, overlap=16, roi=box(0, 0, 50, 100))
    merger = RegionMerger(plan, [PathClass.of("Tumor")], roi=box(0, 0, 50, 100), object_type="detection")
    objects = [o for t in plan for o in merger.add(t, TileProbabilities(tile_view(probabilities, t, 0.0)))]
    objects += merger.finish()
    assert len(objects) == 1 and objects[0].object_type == "detection" and objects[0].class_name == "Tumor"
    assert objects[0].geometry.equals(box(10, 20, 50, 80))
    assert objects[0].measurements["Area px^2"] == 40 * 60


# --------------------------------------------------------------------------------------- instance merge


def _distance_engine() -> DistanceEngine:
    spec = ModelSpec(name="glands", task="instance", architecture="unet-distance", in_channels=3,
                     classes=[{"name": "Gland", "color": [0, 150, 70]}], params={"depth": 1, "width": 2})
    return make_engine(ModelPackage(spec, Path("."), build_distance_unet(spec)), torch.device("cpu"))


def _oracle_glands(glands, tile_size: int, overlap: int):
    """Per tile, the maps a perfect network would give for what the tile shows, post-processed and merged."""
    engine = _distance_engine()
    h, w = glands.instances.shape
    plan = plan_tiles(w, h, tile_size=tile_size, overlap=overlap)
    per_tile = []
    for tile in plan:
        labels = tile_view(glands.instances[None], tile, 0)[0]
        maps = np.stack([(labels > 0).astype(np.float32), normalised_distance(labels)])
        per_tile.append((tile, engine.postprocessor()(maps, np.zeros((tile_size, tile_size, 3), np.uint8), tile)))
    return merge_tiles(plan, per_tile), plan


def test_gland_instances_are_seam_free_and_scored_with_glas_metrics() -> None:
    glands = build_glands(GlandConfig(width=512, height=512, seed=11, count=14, touching=0.4))
    truth = glands.instances
    whole, _ = _oracle_glands(glands, 512, 0)
    tiled, plan = _oracle_glands(glands, 192, 80)
    assert len(plan) >= 9
    assert len(tiled) == len(whole) == len(glands.glands)
    assert {o.class_name for o in tiled} == {"Gland"} and {o.object_type for o in tiled} == {"annotation"}
    predicted = np.zeros_like(truth)
    for k, obj in enumerate(tiled, start=1):
        predicted[rasterize(obj.geometry, truth.shape)] = k
    scores = glas_metrics(predicted, truth)
    assert scores["object_f1"] == 1.0
    assert scores["object_dice"] > 0.97 and scores["object_hausdorff"] < 3.0


def test_mask_rcnn_builds_from_the_detector_and_paints_by_score() -> None:
    spec = ModelSpec(name="m", task="instance", architecture="maskrcnn_tiny", in_channels=3,
                     classes=[{"name": "Gland", "color": [0, 150, 70]}])
    module = build_mask_rcnn(spec)
    assert {"roi_heads.mask_head.0.0.weight", "roi_heads.mask_predictor.mask_fcn_logits.weight"} <= \
        set(module.state_dict())
    engine = make_engine(ModelPackage(spec, Path("."), module), torch.device("cpu"), {"score_threshold": 0.0,
                                                                                     "min_area": 1})
    assert isinstance(engine, MaskRCNNEngine)
    module.eval()
    (raw,) = engine.infer(torch.rand(1, 3, 64, 64))
    assert raw["labels"].shape == (64, 64) and len(raw["scores"]) == len(raw["classes"])
    masks = np.zeros((2, 40, 40), np.float32)
    masks[0, 5:25, 5:25], masks[1, 15:35, 15:35] = 0.9, 0.8
    labels = paint_masks(masks, np.array([0.6, 0.95]), 0.5)
    assert (labels[15:25, 15:25] == 2).all() and (labels[5:15, 5:15] == 1).all()
    tile = plan_tiles(40, 40, tile_size=40, overlap=0).tiles[0]
    objects = engine.postprocessor()({"labels": labels, "scores": np.array([0.6, 0.95], np.float32),
                                  "classes": np.array([1, 1])}, np.zeros((40, 40, 3), np.uint8), tile)
    assert sorted(round(o.geometry.area) for o in objects) == [300, 400]
    assert sorted(o.measurements["Detection probability"] for o in objects) == [0.6, 0.95]


# -------------------------------------------------------------------------------------------------- training


def test_semantic_targets_ignore_unannotated_pixels_and_weigh_rare_classes(tmp_path: Path) -> None:
    json_path = smear_dataset(tmp_path, 2, size=64, seed=4)
    dataset = read_coco(json_path)
    record = dataset.images[0]
    record.training_area = box(0, 0, 40, 64)
    index = {name: k + 1 for k, name in enumerate(dataset.classes)}
    target = render_class_map(record, index)
    assert (target[:, 40:] == IGNORE).all() and (target[:, :40] != IGNORE).all()
    assert (target[:, :40] == 0).any() and (target[:, :40] > 0).any()
    weights = class_weights_from_counts(np.array([900, 90, 10, 0]))
    assert weights[2] > weights[1] > weights[0] and weights[3] == 1.0
    assert (weights[:3] * [900, 90, 10]).sum() / 1000 == pytest.approx(1.0)
    task = semantic_task(json_path, params={"depth": 1, "width": 4}, crop=32, class_weights=[1] * 7,
                         val_split=0.5)
    assert task.weights.tolist() == [1.0] * 7


@pytest.fixture(scope="module")
def semantic_run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny U-Net trained by `cellbridge train --task semantic` on generated smears (≈25 s on one thread)."""
    folder = tmp_path_factory.mktemp("semantic")
    data = smear_dataset(folder / "data", 20, size=96, seed=1)
    out = folder / "model"
    assert main(["train", "--task", "semantic", "--data", str(data), "--out", str(out), "--epochs", "4",
                 "--batch-size", "8", "--lr", "0.005", "--width", "8", "--depth", "2", "--crop", "64",
                 "--samples-per-epoch", "320", "--no-augment", "--tile-size", "128", "--device", "cpu"]) == 0
    return data, out


@pytest.mark.slow
def test_tiny_unet_reaches_pixel_accuracy_on_generated_smears(semantic_run) -> None:
    _, out = semantic_run
    package = load_model(out)
    spec = package.spec
    assert spec.task == "semantic" and spec.class_names == sorted(SMEAR_NAMES)
    assert set(spec.training["class_weights"]) == {"Background", *SMEAR_NAMES}
    assert spec.training["validation"]["pixel_accuracy"] >= 0.9
    engine = make_engine(package, torch.device("cpu"))
    smear = build_smear(SmearConfig(width=200, height=180, seed=12345))   # never seen in training
    plan = plan_tiles(200, 180, tile_size=spec.tile_size, overlap=spec.overlap)
    merger = engine.make_merger(plan, None, 0.5)
    objects = []
    for tile in plan:
        rgb = np.ascontiguousarray(tile_view(smear.rgb.transpose(2, 0, 1), tile, 255).transpose(1, 2, 0))
        (raw,) = engine.infer(torch.from_numpy(preprocess_image(rgb, spec.preprocessing))[None])
        objects += merger.add(tile, engine.postprocessor()(raw, rgb, tile))
    objects += merger.finish()
    predicted = class_map_of(objects, SMEAR_NAMES, (180, 200))   # classes matched by name
    accuracy = pixel_metrics(predicted, smear.class_map, len(SMEAR_NAMES) + 1)["pixel_accuracy"]
    assert accuracy >= 0.9, accuracy
    assert len(plan) == 4


@pytest.mark.slow
def test_semantic_training_resumes(semantic_run, tmp_path: Path) -> None:
    data, out = semantic_run
    copy = tmp_path / "model"
    shutil.copytree(out, copy)
    assert main(["train", "--task", "semantic", "--data", str(data), "--out", str(copy), "--epochs", "5",
                 "--batch-size", "8", "--lr", "0.005", "--width", "8", "--depth", "2", "--crop", "64",
                 "--samples-per-epoch", "80", "--no-augment", "--tile-size", "128", "--device", "cpu",
                 "--resume"]) == 0
    epochs = [json.loads(line)["epoch"] for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5]
    assert torch.load(copy / "checkpoints/last.pt", weights_only=False)["epoch"] == 4


@pytest.mark.slow
def test_cli_segment_writes_qupath_annotations_with_classes_and_areas(semantic_run, tmp_path: Path,
                                                                       capsys) -> None:
    _, model = semantic_run
    smear = build_smear(SmearConfig(width=160, height=144, seed=777))
    image = tmp_path / "smear.png"
    cv2.imwrite(str(image), cv2.cvtColor(smear.rgb, cv2.COLOR_RGB2BGR))
    out, overlay = tmp_path / "regions.geojson", tmp_path / "overlay.png"
    capsys.readouterr()
    assert main(["segment", str(image), "--model", str(model), "--out", str(out), "--overlay", str(overlay),
                 "--no-tissue", "--pixel-size", "0.5", "--device", "cpu", "--tile", "64", "--overlap", "16"]) == 0
    summary = json.loads(capsys.readouterr().out)
    data = json.loads(out.read_text())
    assert data["type"] == "FeatureCollection" and data["features"]
    for feature in data["features"]:
        props = feature["properties"]
        assert props["objectType"] == "annotation"
        assert props["classification"]["name"] in SMEAR_NAMES and len(props["classification"]["color"]) == 3
        # the area of the outline written, in µm² at 0.5 µm per pixel
        assert props["measurements"]["Area µm^2"] == pytest.approx(shape(feature["geometry"]).area * 0.25, rel=1e-3)
    objects = read_objects(out)
    assert all(o.geometry.is_valid for o in objects)
    predicted = class_map_of(objects, SMEAR_NAMES, smear.class_map.shape)
    assert pixel_metrics(predicted, smear.class_map, len(SMEAR_NAMES) + 1)["pixel_accuracy"] >= 0.85
    total = sum(o.measurements["Area µm^2"] for o in objects)
    assert sum(v for k, v in summary["area"].items() if k != "unit") == pytest.approx(total, rel=1e-3)
    assert summary["area"]["unit"] == "µm^2"
    drawn = cv2.imread(str(overlay))                                    # the image itself (downsample 1), outlined
    assert drawn.shape == (144, 160, 3) and (drawn != cv2.cvtColor(smear.rgb, cv2.COLOR_RGB2BGR)).any()
    detections = tmp_path / "detections.geojson"
    assert main(["segment", str(image), "--model", str(model), "--out", str(detections), "--as", "detection",
                 "--no-tissue", "--device", "cpu"]) == 0
    assert {f["properties"]["objectType"] for f in json.loads(detections.read_text())["features"]} == {"detection"}


@pytest.mark.slow
def test_instance_training_scores_glas_metrics(tmp_path: Path) -> None:
    data = gland_dataset(tmp_path / "data", 6, size=128, seed=2, count=5, radius=(10.0, 18.0))
    task = instance_task(data, params={"depth": 2, "width": 8}, crop=96, batch_size=4, samples_per_epoch=32,
                         augment=False, tile_size=256, val_split=0.34)
    result = fit(task, TrainConfig(epochs=1, batch_size=4, lr=0.005, optimizer="adamw", step_size=0, device="cpu"),
                 tmp_path / "unet", progress=False)
    assert {"object_f1", "object_dice", "object_hausdorff"} <= set(result.best_metrics)
    spec = load_model(tmp_path / "unet").spec
    assert spec.task == "instance" and spec.overlap > spec.postprocessing["max_object_size"]
    task = instance_task(data, architecture="maskrcnn_tiny", crop=96, batch_size=2, samples_per_epoch=2,
                         tile_size=256, val_split=0.34)
    result = fit(task, TrainConfig(epochs=1, batch_size=2, device="cpu"), tmp_path / "mrcnn", progress=False)
    assert np.isfinite(result.history[0]["train_loss"]) and "val_object_f1" in result.history[0]
