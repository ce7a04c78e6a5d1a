"""What every engine provides to the pipeline: a forward pass on a device batch and per-tile post-processing."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from cellbridge.errors import CellBridgeError
from cellbridge.models.package import ModelPackage
from cellbridge.objects import PathObject
from cellbridge.tiling.plan import Tile


class EngineOptionError(CellBridgeError):
    """An engine option (model.json `postprocessing` or a run's) with an unknown name or a value of the wrong type."""


class Engine(abc.ABC):
    """A model ready for one run: `infer` on the device, then `postprocess` each tile on the CPU.

    Its options are fixed when it is made: `DEFAULTS`, then model.json `postprocessing`, then the run's own
    (`options`); a name not in `DEFAULTS` or a value of the wrong type is an error naming it. The loaded module is
    shared by every engine made from the same package; an engine is cheap to make, one per run.
    `postprocess` returns objects in level-0 coordinates and must be safe to call from worker threads.
    """

    compartment: str | None = None  # measurement prefix for non-cell objects (e.g. "Nucleus")
    flip_tta: bool = False          # averages the outputs of flipped tiles when its options say "tta"
    DEFAULTS: ClassVar[Mapping[str, Any]] = {"max_object_size": 64}
    threshold_option: ClassVar[str | None] = None  # the option the run's `threshold` sets

    def __init__(self, package: ModelPackage, device: torch.device, options: Mapping[str, Any] | None = None) -> None:
        self.package = package
        self.spec = package.spec
        self.device = device
        self.given = frozenset(package.spec.postprocessing) | frozenset(options or {})  # not from DEFAULTS
        self.options = {**self.DEFAULTS,
                        **self.checked(package.spec.postprocessing, f"{package.path}: model.json 'postprocessing'"),
                        **self.checked(options or {}, f"model {package.spec.name!r}: engine options")}
        self.module = package.module.to(device).eval()

    @classmethod
    def checked(cls, options: Mapping[str, Any], where: str) -> dict[str, Any]:
        """`options` with every name known to the engine and every value of its default's type."""
        unknown = sorted(set(options) - set(cls.DEFAULTS))
        if unknown:
            raise EngineOptionError(f"{where}: unknown option(s) {', '.join(unknown)} (known: "
                                    f"{', '.join(sorted(cls.DEFAULTS))})")
        for name, value in options.items():
            problem = cls.type_problem(name, value)
            if problem:
                raise EngineOptionError(f"{where}: option {name!r} {problem}, got {value!r}")
        return dict(options)

    @classmethod
    def type_problem(cls, name: str, value: Any) -> str | None:
        """Why `value` does not fit option `name` (None when it does): numbers stay finite numbers, booleans
        booleans and words words."""
        default = cls.DEFAULTS[name]
        if isinstance(default, bool):
            return None if isinstance(value, bool) else "must be true or false"
        if isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            return None if ok else "must be a finite number"
        if isinstance(default, str):
            return None if isinstance(value, str) else "must be a string"
        return None

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
