"""What every engine provides to the pipeline: a forward pass on a device batch and per-tile post-processing."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from cellbridge.models.package import ModelPackage
from cellbridge.objects import PathObject
from cellbridge.tiling.plan import Tile


class Engine(abc.ABC):
    """A loaded model ready to run: `infer` on the device, then `postprocess` each tile on the CPU.

    `postprocess` returns objects in level-0 coordinates and must be safe to call from worker threads.
    """

    compartment: str | None = None  # measurement prefix for non-cell objects (e.g. "Nucleus")

    def __init__(self, package: ModelPackage, device: torch.device, options: dict[str, Any] | None = None) -> None:
        self.package = package
        self.spec = package.spec
        self.device = device
        self.options = {**package.spec.postprocessing, **(options or {})}
        self.module = package.module.to(device).eval()

    @abc.abstractmethod
    def infer(self, batch: torch.Tensor) -> list[Any]:
        """Run the model on a preprocessed batch already on the device; per-tile outputs on the CPU."""

    @abc.abstractmethod
    def postprocess(self, raw: Any, rgb: np.ndarray, tile: Tile) -> list[PathObject]:
        """Objects of one tile (level-0 coordinates) from its raw output and its RGB pixels."""

    def postprocessor(self) -> Callable[[Any, np.ndarray, Tile], list[PathObject]] | None:
        """`postprocess` as a picklable callable that imports no torch, so worker processes can run it; None when
        the engine has none (its post-processing then runs in threads)."""
        return None

    @property
    def object_size(self) -> float:
        """The largest expected object diameter in model pixels (the overlap must exceed it for clean seams)."""
        return float(self.options.get("max_object_size", 64))
