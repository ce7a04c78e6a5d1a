"""The nuclei engine's post-processing and training, on hand-made maps and generated data (no shipped model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
import torch
from cellbridge.datasets.tile_export import export_coco_tiles
from cellbridge.engines.nuclei import NucleiEngine
from cellbridge.io.slides import ArraySlide
from cellbridge.models.package import ModelPackage, ModelSpec
from cellbridge.networks.unet import build_nuclei_unet
from cellbridge.synth import SynthConfig, build_scene, render_region, truth_objects
from cellbridge.tiling.plan import Tile
from cellbridge.train.keypoints import nuclei_task, render_targets
from cellbridge.train.loop import TrainConfig, fit
from shapely.geometry import Point


def engine(**options) -> NucleiEngine:
    spec = ModelSpec(name="t", task="nuclei", architecture="unet-nuclei", in_channels=3,
                     classes=[{"name": "Nucleus", "color": [0, 0, 255]}], params={"depth": 1, "width": 2})
    return NucleiEngine(ModelPackage(spec, Path("."), build_nuclei_unet(spec)), torch.device("cpu"), options)


def touching_discs() -> np.ndarray:
    """Maps of two touching discs of radius 8 centred at (20, 20) and (36, 20): heatmap + foreground."""
    yy, xx = np.mgrid[0:48, 0:64] + 0.5
    heat = np.maximum(np.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / 8), np.exp(-((xx - 36) ** 2 + (yy - 20) ** 2) / 8))
    fg = (((xx - 20) ** 2 + (yy - 20) ** 2 <= 64) | ((xx - 36) ** 2 + (yy - 20) ** 2 <= 64)).astype(np.float32)
    return np.stack([heat, fg]).astype(np.float32)


def test_touching_nuclei_are_split_and_mapped_to_level0() -> None:
    tile = Tile(index=0, row=0, col=0, x=1000.0, y=2000.0, size=64, downsample=2.0, core=(1000, 2000, 1128, 2096))
    objects = engine().postprocessor()(touching_discs(), np.zeros((48, 64, 3), np.uint8), tile)
    assert len(objects) == 2
    centres = sorted((o.geometry.centroid.x, o.geometry.centroid.y) for o in objects)
    assert centres[0] == pytest.approx((1000 + 20 * 2, 2000 + 20 * 2), abs=1.5)
    assert centres[1] == pytest.approx((1000 + 36 * 2, 2000 + 20 * 2), abs=1.5)
    area = sum(o.geometry.area for o in objects)
    assert area == pytest.approx(2 * np.pi * 64 * 4, rel=0.1)        # two discs, ×2² at downsample 2
    assert objects[0].geometry.intersection(objects[1].geometry).area < 1.0
    assert all(o.object_type == "detection" and o.class_name == "Nucleus" for o in objects)
    assert all(0.9 < o.measurements["Detection probability"] <= 1.0 for o in objects)


def test_overlapping_nuclei_are_split_where_the_heatmap_is_lowest_between_them() -> None:
    """A disc of radius 10 at (22, 24) overlaps one of radius 6 at (37, 24); each has a Gaussian peak as wide as
    itself, so the valley of the heatmap between them is where the distances to the centres, each divided by
    its radius, are equal. The watershed of the inverted heatmap puts the split there."""
    yy, xx = np.mgrid[0:48, 0:64] + 0.5
    relative = [np.hypot(xx - 22, yy - 24) / 10, np.hypot(xx - 37, yy - 24) / 6]
    heat = np.maximum(*[np.exp(-2 * d ** 2) for d in relative])
    foreground = (relative[0] <= 1) | (relative[1] <= 1)
    maps = np.stack([heat, foreground]).astype(np.float32)
    tile = Tile(index=0, row=0, col=0, x=1000.0, y=2000.0, size=64, downsample=2.0, core=(1000, 2000, 1128, 2096))
    objects = engine().postprocessor()(maps, np.zeros((48, 64, 3), np.uint8), tile)
    assert len(objects) == 2
    big, small = sorted(objects, key=lambda o: -o.geometry.area)
    assert big.geometry.contains(Point(1000 + 2 * 22, 2000 + 2 * 24))
    assert small.geometry.contains(Point(1000 + 2 * 37, 2000 + 2 * 24))
    truth_big = foreground & (relative[0] < relative[1])
    truth_small = foreground & ~truth_big
    centres_x, centres_y = 1000 + 2 * xx, 2000 + 2 * yy
    in_big = shapely.contains_xy(big.geometry, centres_x, centres_y)
    in_small = shapely.contains_xy(small.geometry, centres_x, centres_y)
    assert not (in_big & in_small).any() and not ((in_big | in_small) & ~foreground).any()
    # every foreground pixel on its side of the split, except at most 3 whose centres lie on the split line
    wrong = (truth_big & ~in_big) | (truth_small & ~in_small)
    assert wrong.sum() <= 3, np.argwhere(wrong)
    assert (truth_big.sum(), truth_small.sum()) == (312, 112)
    assert abs(int(in_big.sum()) - 312) <= 3 and abs(int(in_small.sum()) - 112) <= 3


def test_a_peak_that_barely_rises_above_its_saddle_is_not_a_second_nucleus() -> None:
    """One large nucleus whose heatmap has two bumps 14 px apart with a shallow dip between them (about 0.2 below
    the lower bump), next to a small nucleus separated from it by a deep dip. Peaks alone give three nuclei; with
    a prominence of 0.3 the shallow bump joins the large nucleus and the small nucleus stays apart."""
    yy, xx = np.mgrid[0:48, 0:80] + 0.5
    bump = lambda x, y, s: np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s ** 2))  # noqa: E731
    heat = np.maximum(np.maximum(0.9 * bump(18, 24, 8), 0.8 * bump(32, 24, 8)), 0.9 * bump(60, 24, 3))
    large = ((xx - 25) / 16) ** 2 + ((yy - 24) / 11) ** 2 <= 1
    small = np.hypot(xx - 60, yy - 24) <= 7
    maps = np.stack([heat, large | small]).astype(np.float32)
    dip = heat[24, 18:33].min()
    assert 0.15 < 0.8 - dip < 0.25                          # a real but shallow saddle below the lower bump
    tile = Tile(index=0, row=0, col=0, x=0.0, y=0.0, size=80, downsample=1.0, core=(0, 0, 80, 48))
    rgb = np.zeros((48, 80, 3), np.uint8)
    peaks_only = engine(peak_threshold=0.5, min_distance=3).postprocessor()(maps, rgb, tile)
    prominent = engine(peak_threshold=0.5, min_distance=3, peak_prominence=0.3).postprocessor()(maps, rgb, tile)
    assert len(peaks_only) == 3
    assert len(prominent) == 2
    big, little = sorted(prominent, key=lambda o: -o.geometry.area)
    assert (shapely.contains_xy(big.geometry, xx, yy) != large).sum() <= 3          # the whole large nucleus
    assert (shapely.contains_xy(little.geometry, xx, yy) != small).sum() <= 3
    assert big.measurements["Detection probability"] == pytest.approx(0.9, abs=0.01)  # the higher bump's score


def test_cells_grow_around_nuclei_without_overlapping() -> None:
    tile = Tile(index=0, row=0, col=0, x=0.0, y=0.0, size=64, downsample=1.0, core=(0, 0, 64, 48))
    cells = engine(cell_expansion_px=5).postprocessor()(touching_discs(), np.zeros((48, 64, 3), np.uint8), tile)
    assert [c.object_type for c in cells] == ["cell", "cell"]
    for cell in cells:
        assert cell.geometry.buffer(1e-6).contains(cell.nucleus_geometry)
        assert cell.geometry.area > cell.nucleus_geometry.area * 1.5
    assert cells[0].geometry.intersection(cells[1].geometry).area < 1.0


def test_peak_threshold_and_empty_maps() -> None:
    tile = Tile(index=0, row=0, col=0, x=0.0, y=0.0, size=64, downsample=1.0, core=(0, 0, 64, 48))
    maps = touching_discs()
    assert engine(peak_threshold=1.01).postprocessor()(maps, np.zeros((48, 64, 3), np.uint8), tile) == []
    assert engine().postprocessor()(np.zeros_like(maps), np.zeros((48, 64, 3), np.uint8), tile) == []


@pytest.fixture(scope="module")
def coco_export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nuclei-data")
    config = SynthConfig(width=768, height=768, tissue_fraction=1.0, seed=21)
    scene = build_scene(config)
    slide = ArraySlide(render_region(scene, 0, 0, 768, 768), mpp=0.5)
    export_coco_tiles(slide, list(truth_objects(scene)), folder, tile_size=128, overlap=0)
    return folder / "annotations.json"


def test_targets_have_a_peak_per_nucleus_and_ignore_the_border(coco_export: Path) -> None:
    task = nuclei_task(coco_export)
    record = task.train_images[0]
    t = render_targets(record, {c: i for i, c in enumerate(task.dataset.classes)}, sigma=2.0)
    assert t.heat.max() <= 1.0 and len(t.centres) == len(record.annotations)
    inside = [(x, y) for x, y in t.centres if 12 < x < record.width - 12 and 12 < y < record.height - 12]
    for x, y in inside:
        assert t.heat[int(y), int(x)] > 0.7 and t.foreground[int(y), int(x)] == 1
    assert t.valid[:10].sum() == 0 and t.valid[20:-20, 20:-20].all()
    assert set(np.unique(t.classes[t.foreground > 0])) <= set(range(len(task.dataset.classes)))


def tiny_config(**changes) -> TrainConfig:
    values = dict(epochs=2, lr=3e-3, optimizer="adamw", step_size=0, weight_decay=0.0, max_steps_per_epoch=4,
                  device="cpu")
    values.update(changes)
    return TrainConfig(**values)


def test_training_lowers_the_loss_and_exports_a_package(coco_export: Path, tmp_path: Path) -> None:
    task = nuclei_task(coco_export, batch_size=4, crop=96, params={"depth": 2, "width": 8}, mpp=0.5)
    task.val_images = task.val_images[:2]
    result = fit(task, tiny_config(epochs=3), tmp_path / "m", progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    spec = json.loads((tmp_path / "m" / "model.json").read_text())
    assert spec["architecture"] == "unet-nuclei" and spec["mpp"] == 0.5
    assert spec["training"]["best_epoch"] == result.best_epoch
    assert [c["name"] for c in spec["classes"]] == ["Immune cells", "Stroma", "Tumor"]
    assert (tmp_path / "m" / "training.png").stat().st_size > 1000
    assert len((tmp_path / "m" / "metrics.jsonl").read_text().splitlines()) == 3


def test_thresholds_chosen_on_the_validation_images_replace_a_bad_setting(coco_export: Path, tmp_path: Path) -> None:
    """A model fine-tuned with a peak threshold no centre reaches finds nothing on its validation images; choosing
    the thresholds on those images picks the best-scoring combination of the grid and writes it into model.json."""
    from cellbridge.models.package import load_model
    from cellbridge.train.keypoints import choose_postprocessing, score_validation

    task = nuclei_task(coco_export, batch_size=2, crop=96, mpp=0.5, single_class="Nucleus",
                       init="nuclei-brightfield", postprocessing={"peak_threshold": 0.999})
    task.val_images = task.val_images[:3]
    fit(task, tiny_config(epochs=1, max_steps_per_epoch=1, lr=1e-5), tmp_path / "m", progress=False)
    grid = {"peak_threshold": (0.3, 0.6, 0.999), "min_distance": (2, 4)}
    record = choose_postprocessing(task, tmp_path / "m", grid)
    spec = json.loads((tmp_path / "m" / "model.json").read_text())
    assert record["score_before"] == 0.0 and record["score_after"] > 0.2
    assert len(record["grid"]) == 6 and record["score_after"] == max(row["score"] for row in record["grid"])
    chosen = {k: spec["postprocessing"][k] for k in grid}
    assert chosen == record["chosen"] and chosen["peak_threshold"] < 0.5
    init_fg = load_model("nuclei-brightfield").spec.postprocessing["fg_threshold"]
    assert spec["postprocessing"]["fg_threshold"] == init_fg        # outside the grid: the init model's, kept
    assert spec["training"]["thresholds_chosen"]["score_after"] == record["score_after"]

    package = load_model(tmp_path / "m")
    with torch.no_grad():
        again = score_validation(task.validation_maps(package.module.eval(), torch.device("cpu")),
                                 package.spec.postprocessing)
    assert round(again["score"], 4) == record["score_after"]


def test_resume_after_interruption_matches_an_uninterrupted_run(coco_export: Path, tmp_path: Path) -> None:
    def task():
        t = nuclei_task(coco_export, batch_size=2, crop=64, params={"depth": 1, "width": 4})
        t.val_images = t.val_images[:1]
        return t

    # a step schedule (halved every 2 epochs): the resumed run must go on with the schedule where it stopped
    def config(epochs: int) -> TrainConfig:
        return tiny_config(epochs=epochs, step_size=2, gamma=0.5, max_steps_per_epoch=2)

    straight = fit(task(), config(3), tmp_path / "straight", progress=False)
    fit(task(), config(1), tmp_path / "resumed", progress=False)
    with pytest.raises(Exception, match="already holds a training run"):
        fit(task(), config(3), tmp_path / "resumed", progress=False)
    resumed = fit(task(), config(3), tmp_path / "resumed", resume=True, progress=False)
    lr = config(1).lr
    # the rate after each epoch's scheduler step: lr, lr/2 (epoch 2 ends a period), lr/2
    assert [h["lr"] for h in straight.history] == pytest.approx([lr, lr / 2, lr / 2])
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in straight.history]
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    assert a["scheduler"] == b["scheduler"] and b["scheduler"]["last_epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["optimizer"]["state"][0]["exp_avg"].equal(b["optimizer"]["state"][0]["exp_avg"])


def test_partial_annotation_outside_the_training_area_is_not_taught(coco_export: Path) -> None:
    from shapely.geometry import box

    task = nuclei_task(coco_export)
    record = task.train_images[0]
    record.training_area = box(0, 0, 64, 128)
    t = render_targets(record, {c: i for i, c in enumerate(task.dataset.classes)}, sigma=2.0, edge_ignore=0)
    assert t.valid[:, :64].all() and not t.valid[:, 64:].any()
    logits = torch.zeros(1, 2 + len(task.dataset.classes), 128, 128)
    batch = {"heat": torch.from_numpy(t.heat)[None], "foreground": torch.from_numpy(t.foreground.astype(np.float32))[None],
             "classes": torch.from_numpy(t.classes)[None], "valid": torch.from_numpy(t.valid.astype(np.float32))[None]}
    from cellbridge.train.keypoints import nuclei_loss

    logits.requires_grad_(True)
    loss, _ = nuclei_loss(logits, batch)
    loss.backward()
    assert logits.grad[..., 64:].abs().sum() == 0 and logits.grad[..., :64].abs().sum() > 0
