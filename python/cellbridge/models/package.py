"""Model packages: a folder holding `model.json` (what the model is and how to feed it) and its weights.

`model.json` fields:
- `name`, `version`, `task` (`detect` | `nuclei` | `semantic` | `instance`), `architecture` (a key of
  architecture registered in `cellbridge.networks`, see
  `cellbridge.engines.registry`) and `params` (its keyword arguments);
- `in_channels` and `preprocessing` (`mode`: `rgb` | `gray_unsharp`, optional `mean`/`std` per channel);
- `mpp` (µm per pixel it was trained at, or null) and `downsample` (used when the slide's pixel size is unknown);
- `tile_size`, `overlap`, `classes` (`[{"name", "color": [r, g, b]}]`), `postprocessing` (engine options);
- `weights` (file name, a `torch.save`d state dict) and `training` (command, data, metrics).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from cellbridge.engines.registry import build_module
from cellbridge.errors import ModelError
from cellbridge.io.atomic import atomic_path, atomic_write
from cellbridge.objects import RGB, PathClass, class_color

log = logging.getLogger(__name__)

TASKS = ("detect", "nuclei", "semantic", "instance")
PREPROCESSING_MODES = ("rgb", "gray_unsharp")
MODALITIES = ("brightfield", "fluorescence")
BUILTIN_DIR = Path(__file__).parent / "builtin"
MODEL_PATH_ENV = "CELLBRIDGE_MODEL_PATH"
FORMAT_VERSION = 1


@dataclass
class ModelSpec:
    """The content of model.json."""

    name: str
    task: str
    architecture: str
    in_channels: int
    classes: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=lambda: {"mode": "rgb"})
    mpp: float | None = None
    downsample: float = 1.0
    tile_size: int = 512
    overlap: int = 64
    postprocessing: dict[str, Any] = field(default_factory=dict)
    version: str = "0.1.0"
    weights: str = "weights.pt"
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    modality: str = "brightfield"  # the images it is for: brightfield (H&E, IHC: glass is white) or fluorescence

    @property
    def class_names(self) -> list[str]:
        """Class names in the model's output order (excluding background)."""
        return [c["name"] for c in self.classes]

    def path_class(self, index: int) -> PathClass:
        """The QuPath class of output class `index` (0-based, background excluded), with its colour."""
        entry = self.classes[index]
        return PathClass.of(entry["name"], tuple(entry["color"]))

    def to_json(self) -> dict[str, Any]:
        """model.json content."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, origin: str) -> ModelSpec:
        """Validate and build from parsed model.json; errors name the field."""
        if not isinstance(data, dict):
            raise ModelError(f"{origin}: model.json must hold an object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"{origin}: unknown field(s) in model.json: {', '.join(unknown)}")
        for required in ("name", "task", "architecture", "in_channels", "classes"):
            if required not in data:
                raise ModelError(f"{origin}: model.json lacks the required field {required!r}")
        spec = cls(**data)
        spec._validate(origin)
        return spec

    def _validate(self, origin: str) -> None:
        def fail(name: str, problem: str) -> None:
            raise ModelError(f"{origin}: model.json field {name!r} {problem}")

        if not isinstance(self.name, str) or not self.name:
            fail("name", "must be a non-empty string")
        if self.task not in TASKS:
            fail("task", f"must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not isinstance(self.in_channels, int) or self.in_channels not in (1, 3):
            fail("in_channels", f"must be 1 or 3, got {self.in_channels!r}")
        if not isinstance(self.classes, list) or not self.classes:
            fail("classes", "must be a non-empty list of {name, color}")
        for i, entry in enumerate(self.classes):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                fail("classes", f"entry {i} must be an object with a string 'name'")
            color = entry.setdefault("color", list(class_color(entry["name"])))
            if not (isinstance(color, list) and len(color) == 3 and all(isinstance(v, int) and 0 <= v <= 255
                                                                          for v in color)):
                fail("classes", f"entry {i} ({entry['name']!r}) needs 'color' as three integers 0-255")
        mode = self.preprocessing.get("mode") if isinstance(self.preprocessing, dict) else None
        if mode not in PREPROCESSING_MODES:
            fail("preprocessing", f"needs 'mode' in {PREPROCESSING_MODES}, got {mode!r}")
        if mode == "gray_unsharp" and self.in_channels != 1:
            fail("in_channels", "must be 1 for gray_unsharp preprocessing")
        if mode == "rgb" and self.in_channels != 3:
            fail("in_channels", "must be 3 for rgb preprocessing")
        if self.mpp is not None and not (isinstance(self.mpp, (int, float)) and self.mpp > 0):
            fail("mpp", f"must be a positive number or null, got {self.mpp!r}")
        if not (isinstance(self.downsample, (int, float)) and self.downsample >= 1):
            fail("downsample", f"must be a number ≥ 1, got {self.downsample!r}")
        if not (isinstance(self.tile_size, int) and 64 <= self.tile_size <= 8192):
            fail("tile_size", f"must be an integer within [64, 8192], got {self.tile_size!r}")
        if not (isinstance(self.overlap, int) and 0 <= self.overlap < self.tile_size // 2):
            fail("overlap", f"must be an integer within [0, tile_size/2), got {self.overlap!r}")
        if self.modality not in MODALITIES:
            fail("modality", f"must be one of {', '.join(MODALITIES)}, got {self.modality!r}")
        if self.format_version > FORMAT_VERSION:
            fail("format_version", f"is {self.format_version}; this cellbridge reads up to {FORMAT_VERSION}")


@dataclass
class ModelPackage:
    """A loaded package: its spec, folder and the torch module with weights in place (on the CPU, eval mode)."""

    spec: ModelSpec
    path: Path
    module: torch.nn.Module

    @property
    def colors(self) -> dict[str, RGB]:
        """Class name → colour."""
        return {c["name"]: tuple(c["color"]) for c in self.spec.classes}


def model_search_path() -> list[Path]:
    """Folders searched for a model given by name: the built-ins first (their names always mean them), then
    $CELLBRIDGE_MODEL_PATH (os.pathsep-separated) in its order."""
    extra = [Path(p) for p in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep) if p]
    return [BUILTIN_DIR, *extra]


def shadowed_folders(name: str) -> list[Path]:
    """Folders on $CELLBRIDGE_MODEL_PATH named like the built-in model `name`: never used by that name."""
    if not (BUILTIN_DIR / name / "model.json").is_file():
        return []
    return [folder / name for folder in model_search_path()[1:] if (folder / name / "model.json").is_file()]


def list_models() -> list[dict[str, Any]]:
    """Every package found on the search path, as summaries (name, task, classes, folder)."""
    found: dict[str, dict[str, Any]] = {}
    for folder in model_search_path():
        if not folder.is_dir():
            continue
        for candidate in sorted(folder.iterdir()):
            meta = candidate / "model.json"
            if not meta.is_file() or candidate.name in found:
                continue
            try:
                spec = read_spec(candidate)
            except ModelError:
                continue
            found[candidate.name] = {"name": candidate.name, "task": spec.task, "architecture": spec.architecture,
                                     "classes": spec.class_names, "mpp": spec.mpp, "version": spec.version,
                                     "path": str(candidate)}
    return list(found.values())


def resolve_model_dir(path_or_name: str | os.PathLike[str]) -> Path:
    """A package folder from a path, or a name looked up on the search path."""
    given = Path(path_or_name)
    if given.is_dir():
        return given
    if given.name == "model.json" and given.is_file():
        return given.parent
    if len(given.parts) == 1:
        for shadowed in shadowed_folders(given.name):
            log.warning("model %r is the built-in one; %s has the same name and is not used (rename it, or pass "
                        "its folder path)", given.name, shadowed)
        for folder in model_search_path():
            if (folder / given.name / "model.json").is_file():
                return folder / given.name
    names = ", ".join(m["name"] for m in list_models()) or "none"
    raise ModelError(f"model {str(path_or_name)!r} not found: not a model folder, and no such name "
                     f"(available: {names})")


def read_spec(folder: Path) -> ModelSpec:
    """Parse and validate `folder/model.json`."""
    meta = folder / "model.json"
    if not meta.is_file():
        raise ModelError(f"{folder}: no model.json in this folder")
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{meta}: not valid JSON ({error})") from None
    return ModelSpec.from_json(data, str(meta))


def load_model(path_or_name: str | os.PathLike[str]) -> ModelPackage:
    """Load a package by folder or name: validate model.json, build the module, load and check the weights."""
    folder = resolve_model_dir(path_or_name)
    spec = read_spec(folder)
    module = build_module(spec, origin=str(folder / "model.json"))
    weights = folder / spec.weights
    if not weights.is_file():
        raise ModelError(f"{folder}: weights file {spec.weights!r} named in model.json is missing")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt file
        raise ModelError(f"{weights}: cannot read the weights ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict):
        raise ModelError(f"{weights}: expected a state dict, got {type(state).__name__}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise ModelError(f"{weights}: weights do not match model.json ({spec.architecture}, in_channels="
                         f"{spec.in_channels}, {len(spec.classes)} classes): "
                         f"{' '.join(line.strip() for line in first[:3])}") from None
    module.eval()
    return ModelPackage(spec, folder, module)


def save_model(folder: str | os.PathLike[str], spec: ModelSpec, module: torch.nn.Module) -> Path:
    """Write weights then model.json atomically (model.json last, so a complete folder has both)."""
    folder = Path(folder)
    spec._validate(str(folder / "model.json"))
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    with atomic_path(folder / spec.weights) as tmp:
        torch.save(state, tmp)
    with atomic_write(folder / "model.json") as handle:
        json.dump(spec.to_json(), handle, indent=2)
        handle.write("\n")
    return folder
