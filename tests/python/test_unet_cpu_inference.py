"""The U-Net engines' CPU inference path (NHWC memory order) gives what the plain NCHW forward gives: the same
nuclei for the nuclei engine, the same maps for the semantic and distance engines."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from cellbridge.engines.instance import DistanceEngine
from cellbridge.engines.nuclei import NucleiEngine, nuclei_maps
from cellbridge.engines.probability_maps import probabilities, probability_maps
from cellbridge.engines.semantic import SemanticEngine
from cellbridge.evaluate.segmentation import instance_metrics_polygons
from cellbridge.models import DEFAULT_NUCLEI_MODEL
from cellbridge.models.package import ModelPackage, ModelSpec, load_model
from cellbridge.models.preprocess import to_batch
from cellbridge.networks.unet import build_distance_unet, build_semantic_unet
from cellbridge.synth import SynthConfig, build_scene, render_region
from cellbridge.tiling.plan import Tile


def test_cpu_inference_is_channels_last_and_finds_the_same_nuclei() -> None:
    package = load_model(DEFAULT_NUCLEI_MODEL)
    plain = copy.deepcopy(package.module).to(memory_format=torch.contiguous_format).eval()
    engine = NucleiEngine(package, torch.device("cpu"))
    assert engine.module.down[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.down[0][0].weight.is_contiguous(memory_format=torch.channels_last)

    scene = build_scene(SynthConfig(width=512, height=512, tissue_fraction=1.0, seed=9))
    rgb = render_region(scene, 0, 0, 256, 256)
    batch = to_batch([rgb], package.spec.preprocessing)
    with torch.inference_mode():
        expected = probability_maps(plain(batch).float(), nuclei_maps(package.spec))[0]
    raw = engine.infer(batch)[0]
    assert raw.flags.c_contiguous and raw.shape == expected.shape
    assert abs(raw.astype("float32") - expected.astype("float32")).max() <= 1e-3  # float16 rounding at most

    tile = Tile(0, 0, 0, 0.0, 0.0, 256, 1.0, (0, 0, 256, 256))
    post = engine.postprocessor()
    nuclei, reference = post(raw, rgb, tile), post(expected, rgb, tile)
    assert len(reference) > 20
    scores = instance_metrics_polygons([n.geometry for n in nuclei], [n.geometry for n in reference])
    assert len(nuclei) == len(reference) == scores["tp"]
    assert scores["mean_matched_iou"] > 0.999


@pytest.mark.parametrize(("architecture", "build", "engine_class"),
                         [("unet-semantic", build_semantic_unet, SemanticEngine),
                          ("unet-distance", build_distance_unet, DistanceEngine)])
def test_semantic_and_distance_engines_run_channels_last_on_the_cpu_with_the_same_maps(architecture, build,
                                                                                         engine_class) -> None:
    torch.manual_seed(0)
    spec = ModelSpec(name="t", task="segment", architecture=architecture, in_channels=3,
                     classes=[{"name": "A", "color": [0, 0, 255]}, {"name": "B", "color": [0, 255, 0]}],
                     params={"depth": 3, "width": 8})
    module = build(spec).eval()
    plain = copy.deepcopy(module)
    engine = engine_class(ModelPackage(spec, Path("."), module), torch.device("cpu"), {})
    assert engine.module.down[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    batch = torch.rand(2, 3, 96, 96)
    with torch.inference_mode():
        expected = plain(batch).float()
        semantic = architecture == "unet-semantic"
        expected = torch.softmax(expected, 1) if semantic else probabilities(expected, 2)
    tiles = engine.infer(batch)
    raw = np.stack(tiles).astype(np.float32)
    assert raw.shape == tuple(expected.shape) and all(tile.flags.c_contiguous for tile in tiles)
    assert np.abs(raw - expected.numpy()).max() <= 1e-3    # float16 rounding at most
