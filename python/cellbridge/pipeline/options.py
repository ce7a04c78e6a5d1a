"""Run options, declared once: the CLI flags, the bridge's request keys, batch and Dask workers all build the
same `RunOptions` from the table below, with the same checks and the same error messages.

A `RunOptions` is immutable. A loaded model (`pipeline.run.Pipeline`) never stores a run's options: each run
gets its own `RunOptions`, merged with the model's defaults (model.json) for that call only.

Pixel sizes: a value given by the user must lie in `PLAUSIBLE_PIXEL_SIZE_UM` (else a clear error); a file's
own metadata outside it is treated as unknown (with a warning), and the scale is then estimated from the
nuclei.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellbridge.errors import CellBridgeError

PLAUSIBLE_PIXEL_SIZE_UM = (0.02, 10.0)  # µm/px: beyond-40x scans to overviews where nuclei are ~1 px across
ESTIMATE = "estimate"                    # --pixel-size estimate: the default when the file gives none
MAX_BATCH_SIZE = 256
TILE_SIZE_RANGE = (64, 8192)             # as model.json allows
MAX_CELL_EXPANSION_UM = 100.0


class OptionError(CellBridgeError):
    """An option with an unknown name or a value outside what it accepts."""


# ---- value checks: each takes the value and the name to print, returns the checked value or raises ------
def _integer(low: int, high: int) -> Callable[[Any, str], int]:
    def check(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            what = {0: f"a non-negative integer ≤ {high}", 1: f"a positive integer ≤ {high}"}.get(
                low, f"an integer within {low}–{high}")
            raise OptionError(f"{name} must be {what}, got {value!r}")
        return value
    return check


def _number(low: float, high: float, what: str) -> Callable[[Any, str], float]:
    def check(value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high:
            raise OptionError(f"{name} must be {what}, got {value!r}")
        return float(value)
    return check


def _boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise OptionError(f"{name} must be true or false, got {value!r}")
    return value


def _device(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OptionError(f"{name} must be a device name (auto, cpu, cuda, cuda:N, mps), got {value!r}")
    return value.strip()


def check_pixel_size(value: Any, name: str = "the pixel size") -> float | None:
    """A pixel size given by the user: a number of µm/px in the plausible range, or None / 'estimate' (find
    it: from the file, else from the nuclei)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == ESTIMATE):
        return None
    if isinstance(value, str):
        raise OptionError(f"{name} must be a positive number (µm per pixel, e.g. 0.25) or '{ESTIMATE}', "
                          f"got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise OptionError(f"{name} must be a positive number, got {value!r}")
    low, high = PLAUSIBLE_PIXEL_SIZE_UM
    if not low <= value <= high:
        raise OptionError(f"{name} {value:g} µm/px is outside the plausible range {low:g}–{high:g} µm/px")
    return float(value)


def plausible_pixel_size(value: float | None) -> bool:
    """True when `value` (µm/px) lies in the plausible range."""
    return value is not None and PLAUSIBLE_PIXEL_SIZE_UM[0] <= value <= PLAUSIBLE_PIXEL_SIZE_UM[1]


def _stain(value: Any, name: str) -> str:
    if value not in ("he", "ihc-dab"):
        raise OptionError(f"{name} must be 'he' or 'ihc-dab', got {value!r}")
    return value


def _stain_vectors(value: Any, name: str) -> Any:
    if isinstance(value, str) and value or isinstance(value, (dict, list)):
        return value
    raise OptionError(f"{name} must be 'estimate', 'default', a JSON file or stain vectors, got {value!r}")


def _positivity(value: Any, name: str) -> tuple[float, ...]:
    from cellbridge.ihc import parse_thresholds

    try:
        return tuple(parse_thresholds(value))
    except CellBridgeError as error:
        raise OptionError(f"{name}: {error}") from None


# ---- the table ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Declared:
    """How a `RunOptions` field is spelt and checked outside Python: request key, CLI flag, help."""

    key: str                         # the bridge request's key (docs/protocol.md); "" when not on the wire
    flag: str | None                 # the CLI flag; None when the CLI does not offer it
    help: str
    check: Callable[[Any, str], Any]
    negative_flag: bool = False      # a boolean the CLI turns off with `flag` (e.g. --no-tissue)


def _option(default: Any, key: str, flag: str | None, help: str, check: Callable[[Any, str], Any],
            negative_flag: bool = False) -> Any:
    return field(default=default, metadata={"declared": Declared(key, flag, help, check, negative_flag)})


@dataclass(frozen=True)
class RunOptions:
    """How to run a model over one image (None: the model package's own value). Immutable: change with
    `dataclasses.replace` or `with_changes`."""

    device: str = _option("auto", "device", "--device", "auto (CUDA > MPS > CPU), cpu, cuda, cuda:N, mps",
                          _device)
    batch_size: int = _option(4, "batchSize", "--batch-size",
                              "tiles per forward pass; halves itself on out-of-memory (default 4)",
                              _integer(1, MAX_BATCH_SIZE))
    tile_size: int | None = _option(None, "tileSize", "--tile", "tile size in model pixels (default: the "
                                    "model's)", _integer(*TILE_SIZE_RANGE))
    overlap: int | None = _option(None, "overlap", "--overlap",
                                  "tile overlap in model pixels (default: the model's)",
                                  _integer(0, TILE_SIZE_RANGE[1] // 2))
    pixel_size: float | None = _option(
        None, "pixelSize", "--pixel-size",
        "µm per pixel of the input (instead of the file's), or 'estimate': the default for files that do not "
        f"say, found from the nuclei (plausible range {PLAUSIBLE_PIXEL_SIZE_UM[0]:g}–"
        f"{PLAUSIBLE_PIXEL_SIZE_UM[1]:g} µm/px)", check_pixel_size)
    tissue: bool = _option(True, "tissue", "--no-tissue", "process every tile, not only tissue", _boolean,
                           negative_flag=True)
    threshold: float | None = _option(None, "threshold", "--threshold",
                                      "score threshold (detectors) / peak threshold (nuclei); default: the "
                                      "model's", _number(0.0, 1.0, "a number within 0–1"))
    cell_expansion: float = _option(
        0.0, "cellExpansion", "--cell-expansion",
        "grow cells this many µm around nuclei (px when the pixel size is unknown); cells never overlap "
        "(default 0: nuclei only)", _number(0.0, MAX_CELL_EXPANSION_UM, f"a number of µm within 0–"
                                                                        f"{MAX_CELL_EXPANSION_UM:g}"))
    tta: bool = _option(False, "tta", "--tta", "nuclei models: average the maps of each tile's four flips (test-time "
                        "augmentation; about 4× the forward time)", _boolean)
    measure: bool = _option(True, "measure", None, "measure each object (intensity, shape)", _boolean)
    stain: str = _option("he", "stain", None, "he, or ihc-dab: score each nucleus's DAB optical density",
                         _stain)
    stains: Any = _option("estimate", "stainVectors", None,
                          "ihc-dab: estimate (Macenko, per image), default, or stain vectors", _stain_vectors)
    positivity: tuple[float, ...] = _option((0.2, 0.4, 0.6), "positivity", None,
                                            "DAB OD thresholds: three (Negative/1+/2+/3+) or one",
                                            _positivity)
    # set by the program, not by users
    readers: int = 2
    postprocess_workers: int = 2
    postprocess_processes: bool | None = None  # worker processes (None: on Linux, for runs of ≥ 48 tiles)
    engine: Mapping[str, Any] = field(default_factory=dict)  # engine options by model.json name (it checks)
    classifier: str | Path | None = None     # a classifier file (colours or trained), after measuring
    stain_vectors: Any = None                # cellbridge.ihc.StainVectors resolved for this image (IHC)
    derive_classes: bool = False             # IHC: keep the model's class as parent (e.g. "Tumor: 2+")
    progress: bool = False

    def __post_init__(self) -> None:
        for name, d in declared().items():  # the same checks whoever builds the options
            value = getattr(self, name)
            if value is not None or name == "pixel_size":
                object.__setattr__(self, name, d.check(value, f"option '{d.key}'"))

    def with_changes(self, **changes: Any) -> RunOptions:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_request(cls, values: Any, pixel_size: Any = None, **internal: Any) -> RunOptions:
        """Options from a bridge request's `options` object (and its `image.pixelSize`); unknown keys and bad
        values raise OptionError naming them."""
        if not isinstance(values, dict):
            raise OptionError("'options' must be an object")
        by_key = {d.key: name for name, d in declared().items() if d.key and d.key != "pixelSize"}
        unknown = sorted(set(values) - set(by_key))
        if unknown:
            raise OptionError(f"unknown option(s): {', '.join(unknown)} (known: {', '.join(sorted(by_key))})")
        checked = {by_key[k]: declared()[by_key[k]].check(v, f"option '{k}'")
                   for k, v in values.items() if v is not None}
        checked["pixel_size"] = check_pixel_size(pixel_size, "'image.pixelSize'")
        return cls(**checked, **internal)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **internal: Any) -> RunOptions:
        """Options from parsed CLI arguments (only the flags the command offers), plus program-set fields."""
        values: dict[str, Any] = {}
        for name, d in declared().items():
            dest = _dest(d.flag) if d.flag else None
            if dest is None or not hasattr(args, dest):
                continue
            value = getattr(args, dest)
            if d.negative_flag:
                values[name] = not value
            elif value is not None:
                values[name] = value
        return cls(**{**values, **internal})


def declared() -> dict[str, Declared]:
    """The user-facing fields of RunOptions, by field name."""
    return {f.name: f.metadata["declared"] for f in dataclasses.fields(RunOptions)
            if "declared" in f.metadata}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_run_arguments(parser: argparse.ArgumentParser | Any, *names: str,
                      help: Mapping[str, str] | None = None) -> None:
    """Add the CLI flags of the named RunOptions fields (checked as the request parser checks them)."""
    table = declared()
    for name in names:
        d = table[name]
        if d.flag is None:
            raise ValueError(f"RunOptions.{name} has no CLI flag")
        text = (help or {}).get(name, d.help)
        if d.negative_flag:
            parser.add_argument(d.flag, action="store_true", help=text)
        elif d.check is _boolean:
            parser.add_argument(d.flag, action="store_true", default=None, help=text)
        else:
            parser.add_argument(d.flag, type=_argparse_type(d, name), help=text,
                                default=None if name != "device" else "auto")


def _typed(text: str) -> Any:
    """A command-line word as the value a request would carry: an integer, a number, or the word itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _argparse_type(d: Declared, name: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = d.check(_typed(text), d.flag or name)
        except OptionError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return value
    convert.__name__ = name  # argparse names the type in its messages
    return convert
