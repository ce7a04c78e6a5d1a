"""The Engine contract: what every engine provides to the pipeline.

- `infer(batch)`: the forward pass on a device batch, one raw output per tile, on the CPU;
- `postprocessor()`: the per-tile post-processing, a callable `(raw, rgb, tile) -> item` that worker threads (or,
  when `process_safe`, worker processes) run; `item` is what the engine's merger takes;
- `make_merger(plan, roi, mpp)`: the merger of one run, which turns the items of every tile into the final objects
  (by default `SeamMerger`: the items are lists of objects, merged seam-free across tiles);
- `objects_per_tile`: whether the items are objects (measured, classified and scored per tile by the pipeline)
  or something the merger turns into objects itself (the semantic engine's class probabilities).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch
from shapely.geometry.base import BaseGeometry

from cellbridge.errors import CellBridgeError
from cellbridge.merge.seams import SeamMerger
from cellbridge.objects import REGION_OBJECT_TYPES, PathObject
from cellbridge.tiling.plan import Tile, TilePlan

if TYPE_CHECKING:
    from cellbridge.models.package import ModelPackage

#: the per-tile post-processing of an engine: (raw output, RGB pixels, tile) → what its merger takes
Postprocessor = Callable[[Any, np.ndarray, Tile], Any]


class Merger(Protocol):
    """Turns the post-processed items of a run's tiles into final objects, as soon as each is final."""

    def add(self, tile: Tile, item: Any) -> Iterable[PathObject]: ...

    def finish(self) -> Iterable[PathObject]: ...


class EngineOptionError(CellBridgeError):
    """An engine option (model.json `postprocessing` or a run's) with an unknown name or a value of the wrong type."""


def check_object_type(options: Mapping[str, Any]) -> None:
    """Refuse an `object_type` option that a region or instance engine cannot emit."""
    if options["object_type"] not in REGION_OBJECT_TYPES:
        raise EngineOptionError(f"option 'object_type' must be one of {REGION_OBJECT_TYPES}, got "
                                f"{options['object_type']!r}")


class Engine(abc.ABC):
    """A model ready for one run: `infer` on the device, then each tile's `postprocessor()` on the CPU, then the
    run's `make_merger` merger.

    Its options are fixed when it is made: `DEFAULTS`, then model.json `postprocessing`, then the run's own
    (`options`); a name not in `DEFAULTS` or a value of the wrong type is an error naming it. The loaded module is
    shared by every engine made from the same package; an engine is cheap to make, one per run.
    The postprocessor gives objects in level-0 coordinates (or the merger's input) and must be safe to call from
    worker threads.
    """

    compartment: ClassVar[str | None] = None  # measurement prefix for non-cell objects (e.g. "Nucleus")
    flip_tta: ClassVar[bool] = False          # averages the outputs of flipped tiles when its options say "tta"
    process_safe: ClassVar[bool] = False      # the postprocessor pickles and imports no torch: worker processes
    objects_per_tile: ClassVar[bool] = True   # the postprocessor gives objects (False: input for its merger)
    DEFAULTS: ClassVar[Mapping[str, Any]] = {"max_object_size": 64}
    threshold_option: ClassVar[str | None] = None  # the option the run's `threshold` sets
    channels_last_on_cpu: ClassVar[bool] = False   # a plain conv net: NHWC weights and inputs on the CPU

    def __init__(self, package: ModelPackage, device: torch.device, options: Mapping[str, Any] | None = None) -> None:
        self.package = package
        self.spec = package.spec
        self.device = device
        self.given = frozenset(package.spec.postprocessing) | frozenset(options or {})  # not from DEFAULTS
        self.options = {**self.DEFAULTS,
                        **self.checked(package.spec.postprocessing, f"{package.path}: model.json 'postprocessing'"),
                        **self.checked(options or {}, f"model {package.spec.name!r}: engine options")}
        self.module = package.module.to(device).eval()
        if self.runs_channels_last:
            # oneDNN's convolutions run the U-Nets about 1.5x faster on CPU in NHWC order, with the same outputs
            # (docs/performance.md, "CPU variants")
            self.module = self.module.to(memory_format=torch.channels_last)

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

    @property
    def runs_channels_last(self) -> bool:
        """Whether the module's weights and inputs are NHWC: `channels_last_on_cpu` engines on the CPU."""
        return self.channels_last_on_cpu and self.device.type == "cpu"

    def in_module_layout(self, batch: torch.Tensor) -> torch.Tensor:
        """`batch` in the memory order the module's weights are in (see `runs_channels_last`)."""
        return batch.contiguous(memory_format=torch.channels_last) if self.runs_channels_last else batch

    @abc.abstractmethod
    def infer(self, batch: torch.Tensor) -> list[Any]:
        """Run the model on a preprocessed batch already on the device; per-tile outputs on the CPU."""

    @abc.abstractmethod
    def postprocessor(self) -> Postprocessor:
        """The post-processing of one tile: its raw output and RGB pixels → its objects in level-0 coordinates
        (or, when not `objects_per_tile`, what `make_merger`'s merger takes). Picklable and torch-free when the
        engine is `process_safe`."""

    def make_merger(self, plan: TilePlan, roi: BaseGeometry | None = None, mpp: float | None = None) -> Merger:
        """The merger of one run over `plan`: objects merged seam-free across tiles, kept inside `roi`."""
        return SeamMerger(plan, roi=roi)

    @property
    def object_size(self) -> float:
        """The largest expected object diameter in model pixels (the overlap must exceed it for clean seams)."""
        return float(self.options.get("max_object_size", 64))
