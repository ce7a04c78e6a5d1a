"""Nuclei training from a lab's own images: point folders and their fixed split, point-only targets, images brought
to the model's pixel size, and fine-tuning a package with --init (generated data, tiny models)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from cellbridge.datasets.points import in_test_split, read_point_folder
from cellbridge.datasets.records import ImageRecord
from cellbridge.errors import DatasetError
from cellbridge.geometry import rasterize
from cellbridge.models import DEFAULT_NUCLEI_MODEL
from cellbridge.models.package import read_spec, resolve_model_dir
from cellbridge.synth import SynthConfig, build_scene, render_region, truth_objects
from cellbridge.train.keypoints import model_scale_factor, nuclei_loss, nuclei_task, render_targets
from cellbridge.train.loop import CHECKPOINT, TrainConfig, fit, load_checkpoint

MPP = 0.5  # the synthetic slides' pixel size


def synthetic_tile(seed: int, size: int = 192) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB, instance labels and centres (x, y) of a fully tissue-covered synthetic H&E tile at 0.5 µm/px."""
    scene = build_scene(SynthConfig(width=size, height=size, tissue_fraction=1.0, seed=seed))
    rgb = render_region(scene, 0, 0, size, size)
    labels = np.zeros((size, size), np.int32)
    nuclei = [o.geometry for o in truth_objects(scene)]
    for k, polygon in enumerate(nuclei, start=1):
        labels[rasterize(polygon, labels.shape) & (labels == 0)] = k
    centres = np.array([[p.centroid.x, p.centroid.y] for p in nuclei]).reshape(-1, 2)
    return rgb, labels, centres


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """A DSB-style folder (images/, labels/) and a point folder (images/, points/) of the same 6 tiles."""
    root = tmp_path_factory.mktemp("lab-data")
    for i in range(5):
        rgb, labels, centres = synthetic_tile(40 + i, size=160)
        write_png(root / "outlines" / "images" / f"{i}.png", rgb)
        write_png(root / "outlines" / "labels" / f"{i}.png", labels.astype(np.uint16))
        write_png(root / "points" / "images" / f"{i}.png", rgb)
        (root / "points" / "points").mkdir(exist_ok=True)
        (root / "points" / "points" / f"{i}.json").write_text(json.dumps(
            {"width": 160, "height": 160, "points": [{"x": x, "y": y, "class": "stroma"} for x, y in centres]}))
    return root / "outlines", root / "points"


def test_point_folder_split_is_fixed_by_image_id(folders) -> None:
    _, points = folders
    assert [in_test_split(str(i)) for i in range(11)] == [i % 5 == 0 for i in range(11)]
    train, test = read_point_folder(points, "train"), read_point_folder(points, "test")
    assert [r.name for r in train.images] == ["1", "2", "3", "4"] and [r.name for r in test.images] == ["0"]
    truth = json.loads((points / "points" / "3.json").read_text())["points"]
    assert [a.point for a in train.images[2].annotations] == [(p["x"], p["y"]) for p in truth]
    assert train.classes == ["Nucleus"] and all(a.geometry is None for a in train.images[2].annotations)


def test_point_only_images_teach_the_heatmap_and_not_the_foreground(folders) -> None:
    _, points = folders
    record = read_point_folder(points, "train").images[0]
    targets = render_targets(record, {"Nucleus": 0}, sigma=2.0, edge_ignore=0)
    assert not targets.outlined and targets.foreground.sum() == 0
    for x, y in targets.centres:
        assert targets.heat[int(y), int(x)] > 0.75
    batch = {"heat": torch.from_numpy(targets.heat)[None], "foreground": torch.zeros(1, 160, 160),
             "classes": torch.full((1, 160, 160), -100), "valid": torch.ones(1, 160, 160),
             "outlined": torch.zeros(1)}
    logits = torch.zeros(1, 2, 160, 160)
    other = logits.clone()
    other[:, 1] = 5.0  # a very different foreground guess changes nothing on a point-only image
    assert nuclei_loss(logits, batch)[0].item() == pytest.approx(nuclei_loss(other, batch)[0].item(), rel=1e-6)
    batch["outlined"] = torch.ones(1)
    assert nuclei_loss(other, batch)[0].item() > nuclei_loss(logits, batch)[0].item() + 1.0


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.0])
def test_training_images_are_brought_to_the_model_pixel_size(factor: float) -> None:
    rgb, _, _ = synthetic_tile(7, size=320)
    resized = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    unknown = ImageRecord(Path("x.png"), resized.shape[1], resized.shape[0])
    estimated = model_scale_factor(resized, unknown, MPP)
    assert estimated * factor == pytest.approx(1.0, rel=0.2)          # undoes the resampling, from the nuclei
    known = ImageRecord(Path("x.png"), resized.shape[1], resized.shape[0], mpp=MPP / factor)
    assert model_scale_factor(resized, known, MPP) == pytest.approx(1 / factor)
    assert model_scale_factor(resized, unknown, None) == 1.0


def test_a_source_given_its_pixel_size_is_rescaled_by_it_and_not_by_an_estimate(folders) -> None:
    outlines, points = folders
    point_files = {r.path for r in read_point_folder(points, "train").images}
    given = nuclei_task([outlines, points], init=DEFAULT_NUCLEI_MODEL, source_mpp={str(points): 0.25}, progress=False)
    assert [given.factors[path] for path in point_files] == pytest.approx([0.25 / given.mpp] * len(point_files))
    assert given.data_summary["pixel_size_given"] == {str(points): 0.25}
    estimated = nuclei_task([outlines, points], init=DEFAULT_NUCLEI_MODEL, progress=False)
    assert all(estimated.factors.get(path, 1.0) == pytest.approx(1.0, rel=0.2) for path in point_files)
    assert {p: f for p, f in given.factors.items() if p not in point_files} == \
        {p: f for p, f in estimated.factors.items() if p not in point_files}      # the other source keeps its estimate
    with pytest.raises(DatasetError, match="not one of the training data sources"):
        nuclei_task([outlines], init=DEFAULT_NUCLEI_MODEL, source_mpp={str(points): 0.25}, progress=False)


def test_a_source_pixel_size_that_is_not_source_equals_microns_is_refused_at_parsing() -> None:
    for value in ("data/points", "data/points=0", "=0.5", "data/points=nan"):
        done = subprocess.run([sys.executable, "-m", "cellbridge", "train", "--task", "nuclei", "--data", "d",
                               "--out", "o", "--source-mpp", value], capture_output=True, text=True)
        assert done.returncode == 2 and "--source-mpp" in done.stderr, (value, done.stderr)


def test_fine_tuning_the_default_model_lowers_the_loss_and_the_cli_runs_it(folders, tmp_path: Path) -> None:
    outlines, points = folders
    config = TrainConfig(epochs=3, lr=1e-3, optimizer="adamw", step_size=0, weight_decay=0.0, max_steps_per_epoch=2,
                         device="cpu")
    task = nuclei_task([outlines, points], batch_size=2, crop=96, val_split=0.25, init=DEFAULT_NUCLEI_MODEL,
                       augment=False, progress=False)
    assert task.mpp == read_spec(resolve_model_dir(DEFAULT_NUCLEI_MODEL)).mpp   # the pixel size comes with --init
    assert {r.name for r in task.train_images} & {"1", "2", "3", "4"}            # point images' train split only
    result = fit(task, config, tmp_path / "tuned", progress=False)
    losses = [h["train_loss"] for h in result.history if h["epoch"] > 0]
    assert losses[-1] < losses[0]
    assert result.history[0]["epoch"] == 0 and "val_score" in result.history[0]   # the starting model, scored
    spec = json.loads((tmp_path / "tuned" / "model.json").read_text())
    assert spec["training"]["init"] == DEFAULT_NUCLEI_MODEL and [c["name"] for c in spec["classes"]] == ["Nucleus"]
    assert spec["postprocessing"] == read_spec(resolve_model_dir(DEFAULT_NUCLEI_MODEL)).postprocessing  # its thresholds
    image = outlines / "images" / "0.png"
    out = tmp_path / "nuclei.geojson"
    done = subprocess.run([sys.executable, "-m", "cellbridge", "nuclei", str(image), "--model", str(tmp_path / "tuned"),
                           "--pixel-size", "0.5", "--device", "cpu", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["type"] == "FeatureCollection"


def test_training_only_the_head_keeps_every_other_weight_and_batch_norm_statistic(folders, tmp_path: Path) -> None:
    outlines, _ = folders
    task = nuclei_task([outlines], batch_size=2, crop=96, val_split=0.2, init=DEFAULT_NUCLEI_MODEL,
                       augment=False, trainable="head", progress=False)
    module = task.build_module()
    assert module.down[0][0].weight.is_contiguous(memory_format=torch.channels_last)   # trained NHWC on the CPU
    start = module.state_dict()
    config = TrainConfig(epochs=2, lr=1e-2, optimizer="adamw", step_size=0, weight_decay=0.0, max_steps_per_epoch=2,
                         device="cpu")
    fit(task, config, tmp_path / "head", progress=False)
    tuned = load_checkpoint(tmp_path / "head" / CHECKPOINT)["model"]    # the weights after the last epoch
    changed = {name for name, value in start.items() if not torch.equal(value, tuned[name])}
    assert changed == {"head.weight", "head.bias"}          # running means/variances of every block unchanged too
    spec = json.loads((tmp_path / "head" / "model.json").read_text())
    assert spec["training"]["trainable"] == "head"
    decoder = nuclei_task([outlines], batch_size=2, crop=96, init=DEFAULT_NUCLEI_MODEL, trainable="decoder",
                          progress=False).build_module()
    learning = {name for name, p in decoder.named_parameters() if p.requires_grad}
    assert learning and all(name.startswith(("up.", "merge.", "head.")) for name in learning)
    decoder.train()
    assert not decoder.down[0][1].training and decoder.merge[0][1].training


def test_fine_tuning_that_makes_the_model_worse_keeps_the_starting_model(folders, tmp_path: Path) -> None:
    """A learning rate that wrecks the output layer: every epoch scores below the starting model on the validation
    images, so the package written is the starting model (epoch 0), weights and all."""
    outlines, _ = folders
    task = nuclei_task([outlines], batch_size=2, crop=96, val_split=0.2, init=DEFAULT_NUCLEI_MODEL,
                       augment=False, trainable="head", progress=False)
    start = {k: v.clone() for k, v in task.build_module().state_dict().items()}
    config = TrainConfig(epochs=2, lr=5.0, optimizer="adamw", step_size=0, weight_decay=0.0, max_steps_per_epoch=2,
                         device="cpu")
    result = fit(task, config, tmp_path / "wrecked", progress=False)
    scores = [h["val_score"] for h in result.history]
    assert [h["epoch"] for h in result.history] == [0, 1, 2] and max(scores[1:]) < scores[0]
    assert result.best_epoch == 0 and result.best_metrics["score"] == scores[0]
    kept = torch.load(tmp_path / "wrecked" / "weights.pt", weights_only=True)
    assert all(torch.equal(start[name], kept[name]) for name in start)
    spec = json.loads((tmp_path / "wrecked" / "model.json").read_text())
    assert spec["training"]["best_epoch"] == 0 and spec["training"]["validation"]["score"] == scores[0]
    last = load_checkpoint(tmp_path / "wrecked" / CHECKPOINT)["model"]
    assert not torch.equal(last["head.weight"], start["head.weight"])       # it did train; it was not kept


def test_training_only_a_part_needs_a_model_to_start_from(folders) -> None:
    outlines, _ = folders
    with pytest.raises(DatasetError, match="needs --init"):
        nuclei_task([outlines], trainable="head", progress=False)
    with pytest.raises(DatasetError, match="unknown trainable part 'encoder'"):
        nuclei_task([outlines], init=DEFAULT_NUCLEI_MODEL, trainable="encoder", progress=False)
