"""Architectures by name: each network builder registers with the engine that runs it, under one contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cellbridge.engines.base import Engine, EngineOptionError
from cellbridge.engines.detector import DetectorEngine
from cellbridge.engines.registry import architecture, architectures, build_module, engine_class, make_engine
from cellbridge.errors import ModelError
from cellbridge.merge.regions import RegionMerger, TileProbabilities
from cellbridge.merge.seams import SeamMerger
from cellbridge.models.package import ModelPackage, ModelSpec
from cellbridge.networks.unet import UNet, build_nuclei_unet
from cellbridge.tiling import plan_tiles

ENGINES = {"unet-nuclei": "NucleiEngine", "classical": "ClassicalEngine", "unet-semantic": "SemanticEngine",
           "unet-distance": "DistanceEngine", "fasterrcnn_resnet50_fpn": "DetectorEngine",
           "fasterrcnn_mobilenet_v3_large_fpn": "DetectorEngine", "fasterrcnn_small": "DetectorEngine",
           "fasterrcnn_tiny": "DetectorEngine", "maskrcnn_resnet50_fpn": "MaskRCNNEngine",
           "maskrcnn_mobilenet_v3_large_fpn": "MaskRCNNEngine", "maskrcnn_small": "MaskRCNNEngine",
           "maskrcnn_tiny": "MaskRCNNEngine"}


def spec(architecture: str, **changes) -> ModelSpec:
    fields = dict(name="t", task="nuclei", architecture=architecture, in_channels=3, params={"depth": 2, "width": 4},
                  classes=[{"name": "Tumor", "color": [200, 0, 0]}, {"name": "Stroma", "color": [0, 150, 0]}])
    return ModelSpec(**{**fields, **changes})


def test_every_architecture_is_registered_with_the_engine_that_runs_it() -> None:
    found = architectures()
    assert {name: a.engine.__name__ for name, a in found.items()} == ENGINES
    for registered in found.values():
        assert issubclass(registered.engine, Engine)
        assert not hasattr(registered.engine, "postprocess")   # one way to post-process: postprocessor()
    assert found["unet-nuclei"].build is build_nuclei_unet
    module = build_module(spec("unet-semantic"))
    assert isinstance(module, UNet) and module.head.out_channels == 3    # background + two classes


def test_a_name_taken_by_another_builder_is_refused_and_the_first_stays() -> None:
    with pytest.raises(ValueError, match="'unet-nuclei' is registered twice"):
        architecture("unet-nuclei", engine=DetectorEngine)(lambda s: torch.nn.Identity())
    architecture("unet-nuclei", engine=architectures()["unet-nuclei"].engine)(build_nuclei_unet)   # same: no-op
    assert architectures()["unet-nuclei"].build is build_nuclei_unet
    assert engine_class(spec("unet-nuclei")).__name__ == "NucleiEngine"


def test_an_unknown_architecture_names_the_known_ones() -> None:
    with pytest.raises(ModelError, match=r"model.json field 'architecture' is 'unet-3d'; known: classical, .*unet-"):
        build_module(spec("unet-3d"))
    with pytest.raises(ModelError, match="'params' does not fit unet-nuclei: unknown parameter"):
        build_module(spec("unet-nuclei", params={"depth": 2, "kernel": 5}))


def test_the_engine_contract_object_and_region_engines() -> None:
    plan = plan_tiles(256, 256, tile_size=128, overlap=16)
    tile = plan.tiles[0]
    nuclei = make_engine(ModelPackage(spec("unet-nuclei"), None, build_nuclei_unet(spec("unet-nuclei"))),
                         torch.device("cpu"))
    assert isinstance(nuclei.make_merger(plan), SeamMerger) and nuclei.objects_per_tile and nuclei.process_safe
    maps = np.zeros((4, 128, 128), np.float32)
    yy, xx = np.mgrid[:128, :128]
    distance2 = (yy - 63) ** 2 + (xx - 63) ** 2
    maps[0] = np.exp(-distance2 / 8.0)              # one centre peak inside a round foreground
    maps[1] = (distance2 <= 64).astype(np.float32)
    maps[2], maps[3] = 0.2, 0.8   # class probabilities: Stroma
    (found,) = nuclei.postprocessor()(maps, np.full((128, 128, 3), 255, np.uint8), tile)
    assert found.class_name == "Stroma" and found.geometry.contains(found.geometry.centroid)

    semantic_spec = spec("unet-semantic", task="semantic")
    semantic = make_engine(ModelPackage(semantic_spec, None, build_module(semantic_spec)), torch.device("cpu"))
    assert not semantic.objects_per_tile and not semantic.process_safe
    assert isinstance(semantic.make_merger(plan, None, 0.5), RegionMerger)
    probabilities = np.full((3, 128, 128), 1 / 3, np.float16)
    assert isinstance(semantic.postprocessor()(probabilities, np.zeros((128, 128, 3), np.uint8), tile),
                      TileProbabilities)
    with pytest.raises(EngineOptionError, match="option 'object_type' must be one of .*, got 'cell'"):
        make_engine(semantic.package, torch.device("cpu"), {"object_type": "cell"})
