"""The nuclei U-Net's optional third map: each nucleus's distance to its border, normalised to 1 on its axis.

It is taught from outlines (never from points), read back at the right channel, and used by the watershed to
place the split between touching nuclei at the neck between them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
import torch
from cellbridge.datasets.records import Annotation, ImageRecord
from cellbridge.engines.nuclei import NucleiEngine, nuclei_maps
from cellbridge.engines.nuclei_objects import segment_nuclei
from cellbridge.models.package import ModelPackage, ModelSpec, save_model
from cellbridge.networks.unet import build_nuclei_unet
from cellbridge.tiling.plan import Tile
from cellbridge.train.keypoints import _load_matching, nuclei_loss, render_targets
from shapely.geometry import Point


def spec(classes: list[str], distance_map: bool) -> ModelSpec:
    params = {"depth": 1, "width": 4, **({"distance_map": True} if distance_map else {})}
    return ModelSpec(name="t", task="nuclei", architecture="unet-nuclei", in_channels=3,
                     classes=[{"name": c, "color": [0, 0, 255]} for c in classes], params=params)


def test_distance_target_is_one_on_each_axis_falls_to_the_border_and_is_zero_outside() -> None:
    big, small = Point(30.0, 30.0).buffer(10, 64), Point(60.0, 30.0).buffer(5, 64)
    record = ImageRecord(Path("x.png"), 96, 64, [Annotation("Nucleus", big.bounds, big),
                                                 Annotation("Nucleus", small.bounds, small)])
    t = render_targets(record, {"Nucleus": 0}, sigma=2.0, edge_ignore=0)
    assert t.distance[30, 30] == pytest.approx(1.0, abs=0.06) and t.distance[30, 60] == pytest.approx(1.0, abs=0.1)
    assert t.distance[t.foreground == 0].max() == 0.0
    yy, xx = np.mgrid[0:64, 0:96] + 0.5
    r_big = np.hypot(xx - 30, yy - 30)
    rim = (t.foreground == 1) & (r_big > 9) & (r_big < 11)
    assert rim.any() and t.distance[rim].max() < 0.2   # one pixel from the border of a radius-10 nucleus
    halfway = t.distance[30, 25]     # pixel centre (25.5, 30.5): 4.5 px from the centre, 5.5 px from the border
    assert halfway == pytest.approx(0.55, abs=0.1)
    points = ImageRecord(Path("p.png"), 96, 64, [Annotation("Nucleus", (29, 29, 31, 31), point=(30.0, 30.0))])
    assert not render_targets(points, {"Nucleus": 0}, sigma=2.0).distance.any()  # points teach no distance


def test_distance_loss_is_taught_on_outlined_images_only() -> None:
    logits = torch.zeros(2, 3, 8, 8)
    batch = {"heat": torch.zeros(2, 8, 8), "foreground": torch.zeros(2, 8, 8), "valid": torch.ones(2, 8, 8),
             "classes": torch.full((2, 8, 8), -100), "distance": torch.ones(2, 8, 8),
             "outlined": torch.tensor([1.0, 0.0])}
    _, parts = nuclei_loss(logits, batch, maps=3)
    assert parts["distance"] == pytest.approx(np.log(2.0), rel=1e-4)   # BCE of logit 0 against 1
    batch["distance"][0] = 0.0  # only the point image disagrees now: it must not count
    logits[:, 2] = -20.0
    _, parts = nuclei_loss(logits, batch, maps=3)
    assert parts["distance"] < 1e-6
    assert "distance" not in nuclei_loss(logits[:, :2], batch)[1]


def test_three_map_model_reads_class_probabilities_after_the_distance_map() -> None:
    two_classes = spec(["Tumor", "Immune"], distance_map=True)
    assert nuclei_maps(two_classes) == 3 and nuclei_maps(spec(["Nucleus"], False)) == 2
    module = build_nuclei_unet(two_classes)
    assert module(torch.zeros(1, 3, 16, 16)).shape[1] == 5
    engine = NucleiEngine(ModelPackage(two_classes, Path("."), module), torch.device("cpu"), {})
    yy, xx = np.mgrid[0:32, 0:32] + 0.5
    r = np.hypot(xx - 16, yy - 16)
    maps = np.stack([np.exp(-r ** 2 / 8), (r <= 6).astype(float), np.clip(1 - r / 6, 0, 1),
                     np.full(r.shape, 0.2), np.full(r.shape, 0.8)]).astype(np.float32)  # Immune wins
    tile = Tile(index=0, row=0, col=0, x=0.0, y=0.0, size=32, downsample=1.0, core=(0, 0, 32, 32))
    (nucleus,) = engine.postprocessor()(maps, np.zeros((32, 32, 3), np.uint8), tile)
    assert nucleus.class_name == "Immune"
    assert nucleus.measurements["Class probability: Immune"] == pytest.approx(0.8, abs=1e-3)


def test_watershed_on_the_distance_map_splits_touching_nuclei_at_their_neck() -> None:
    """A nucleus of radius 10 at (22, 24) touches one of radius 5 at (36, 24): the neck between them is the chord
    where the circles cross (x ≈ 32.4). Centre heatmaps are as wide for both (as the model learns them), so their
    valley lies halfway between the centres (x = 29) and cuts into the big nucleus; the distance map's valley is
    the neck."""
    yy, xx = np.mgrid[0:48, 0:64] + 0.5
    d_big, d_small = np.hypot(xx - 22, yy - 24), np.hypot(xx - 36, yy - 24)
    heat = np.maximum(np.exp(-d_big ** 2 / 8), np.exp(-d_small ** 2 / 8)).astype(np.float32)
    foreground = ((d_big <= 10) | (d_small <= 5)).astype(np.float32)
    distance = np.where(d_big <= 10, np.clip(1 - d_big / 10, 0, 1), 0)
    distance = np.maximum(distance, np.where(d_small <= 5, np.clip(1 - d_small / 5, 0, 1), 0)).astype(np.float32)
    options = {"peak_threshold": 0.5, "min_distance": 3, "fg_threshold": 0.5}
    truth_big = (d_big <= 10) & ~((d_small <= 5) & (d_small / 5 < d_big / 10))

    def wrong_pixels(labels: np.ndarray) -> int:
        big_label = labels[24, 22]
        return int(((labels == big_label) != truth_big)[foreground > 0].sum())

    with_distance, _ = segment_nuclei(heat, foreground, np.zeros((48, 64, 3), np.uint8), options, distance)
    heat_only, _ = segment_nuclei(heat, foreground, np.zeros((48, 64, 3), np.uint8), options)
    assert len(np.unique(with_distance)) == 3 and with_distance[24, 22] != with_distance[24, 36]
    assert wrong_pixels(with_distance) <= 4 < 20 <= wrong_pixels(heat_only)
    assert shapely.Point(32.4, 24).distance(shapely.Point(22, 24)) == pytest.approx(10.4, abs=0.1)


def test_a_two_map_model_warm_starts_the_heatmap_and_foreground_of_a_three_map_one(tmp_path: Path) -> None:
    source_spec = spec(["Nucleus"], distance_map=False)
    source = build_nuclei_unet(source_spec)
    torch.nn.init.normal_(source.head.weight)
    save_model(tmp_path / "two-maps", source_spec, source)
    target = build_nuclei_unet(spec(["Nucleus"], distance_map=True))
    fresh_distance_row = target.head.weight[2].clone()
    _load_matching(target, str(tmp_path / "two-maps"))
    assert torch.equal(target.head.weight[:2], source.head.weight)
    assert torch.equal(target.head.bias[:2], source.head.bias)
    assert torch.equal(target.head.weight[2], fresh_distance_row)
    assert torch.equal(target.down[0][0].weight, source.down[0][0].weight)
