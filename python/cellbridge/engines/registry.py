"""Architectures by name: how to build each module from model.json and which engine runs it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from cellbridge.models.package import ModelError, ModelPackage, ModelSpec

if TYPE_CHECKING:
    from cellbridge.engines.base import Engine


def _nuclei() -> tuple[Callable[[ModelSpec], torch.nn.Module], type]:
    from cellbridge.engines.nuclei import NucleiEngine, build_nuclei_unet
    return build_nuclei_unet, NucleiEngine


def _detector() -> tuple[Callable[[ModelSpec], torch.nn.Module], type]:
    from cellbridge.engines.detector import DetectorEngine, build_detector
    return build_detector, DetectorEngine


def _classical() -> tuple[Callable[[ModelSpec], torch.nn.Module], type]:
    from cellbridge.engines.classical import ClassicalEngine, build_classical
    return build_classical, ClassicalEngine


def _semantic() -> tuple[Callable[[ModelSpec], torch.nn.Module], type]:
    from cellbridge.engines.semantic import SemanticEngine, build_semantic_unet
    return build_semantic_unet, SemanticEngine


def _distance() -> tuple[Callable[[ModelSpec], torch.nn.Module], type]:
    from cellbridge.engines.instance import DistanceEngine, build_distance_unet
    return build_distance_unet, DistanceEngine


def _mask_rcnn() -> tuple[Callable[[ModelSpec], torch.nn.Module], type]:
    from cellbridge.engines.instance import MaskRCNNEngine, build_mask_rcnn
    return build_mask_rcnn, MaskRCNNEngine


# name → loader returning (module builder, engine class); loaders import lazily to keep start-up fast
ARCHITECTURES: dict[str, Callable[[], tuple[Callable[[ModelSpec], torch.nn.Module], type]]] = {
    "unet-nuclei": _nuclei,
    "classical": _classical,
    "fasterrcnn_resnet50_fpn": _detector,
    "fasterrcnn_mobilenet_v3_large_fpn": _detector,
    "fasterrcnn_small": _detector,
    "fasterrcnn_tiny": _detector,
    "unet-semantic": _semantic,
    "unet-distance": _distance,
    "maskrcnn_resnet50_fpn": _mask_rcnn,
    "maskrcnn_mobilenet_v3_large_fpn": _mask_rcnn,
    "maskrcnn_small": _mask_rcnn,
    "maskrcnn_tiny": _mask_rcnn,
}


def _lookup(spec: ModelSpec, origin: str) -> tuple[Callable[[ModelSpec], torch.nn.Module], type]:
    if spec.architecture not in ARCHITECTURES:
        raise ModelError(f"{origin}: model.json field 'architecture' is {spec.architecture!r}; known: "
                         f"{', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[spec.architecture]()


def build_module(spec: ModelSpec, origin: str = "model.json") -> torch.nn.Module:
    """The untrained module model.json describes; bad `params` give an error naming the field."""
    builder, _ = _lookup(spec, origin)
    try:
        return builder(spec)
    except (TypeError, ValueError) as error:
        raise ModelError(f"{origin}: model.json field 'params' does not fit {spec.architecture}: {error}") from None


def engine_class(spec: ModelSpec, origin: str = "model.json") -> type[Engine]:
    """The engine class that runs models of `spec` (its `DEFAULTS` name the options it takes)."""
    return _lookup(spec, origin)[1]


def make_engine(package: ModelPackage, device: torch.device, options: Mapping[str, Any] | None = None) -> Engine:
    """The engine that runs `package` on `device` (options override model.json's postprocessing)."""
    return engine_class(package.spec, str(package.path))(package, device, options)
