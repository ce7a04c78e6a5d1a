"""The nuclei engine's CPU inference path (NHWC memory order) finds the same nuclei as the plain NCHW forward."""

from __future__ import annotations

import copy

import torch
from cellbridge.engines.nuclei import NucleiEngine, nuclei_maps
from cellbridge.engines.probability_maps import probability_maps
from cellbridge.evaluate.segmentation import instance_metrics_polygons
from cellbridge.models import DEFAULT_NUCLEI_MODEL
from cellbridge.models.package import load_model
from cellbridge.models.preprocess import to_batch
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
