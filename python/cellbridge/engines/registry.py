"""Architectures by name, the way torchvision registers its models: each network builder in `cellbridge.networks`
is decorated with `@architecture(name, engine=EngineClass)`, which records how to build the module model.json
describes and which engine runs it.

    @architecture("unet-nuclei", engine=NucleiEngine)
    def build_nuclei_unet(spec: ModelSpec) -> UNet: ...

The builders register when their modules are imported; `architectures()` imports every module of
`cellbridge.networks` the first time a name is looked up, so `import cellbridge` stays free of torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from cellbridge.errors import ModelError

if TYPE_CHECKING:
    import torch

    from cellbridge.engines.base import Engine
    from cellbridge.models.package import ModelPackage, ModelSpec

NETWORKS_PACKAGE = "cellbridge.networks"
Builder = TypeVar("Builder", bound=Callable[..., Any])


@dataclass(frozen=True)
class Architecture:
    """One model.json `architecture`: its name, the builder of its untrained module and the engine that runs it."""

    name: str
    build: Callable[[ModelSpec], torch.nn.Module]
    engine: type[Engine]


_registered: dict[str, Architecture] = {}
_networks_loaded = False


def architecture(*names: str, engine: type[Engine]) -> Callable[[Builder], Builder]:
    """Register the decorated builder under each of `names`, run by `engine`; a name registered twice is an error."""
    if not names:
        raise ValueError("architecture() needs at least one name")

    def register(build: Builder) -> Builder:
        for name in names:
            known = _registered.get(name)
            if known is not None and (known.build, known.engine) != (build, engine):
                raise ValueError(f"architecture {name!r} is registered twice ({known.build.__module__}."
                                 f"{known.build.__qualname__} and {build.__module__}.{build.__qualname__})")
            _registered[name] = Architecture(name, build, engine)
        return build

    return register


def architectures() -> Mapping[str, Architecture]:
    """Every registered architecture by name (the network builders' modules are imported on first use)."""
    global _networks_loaded
    if not _networks_loaded:
        package = importlib.import_module(NETWORKS_PACKAGE)
        for module in pkgutil.iter_modules(package.__path__, f"{NETWORKS_PACKAGE}."):
            importlib.import_module(module.name)
        _networks_loaded = True
    return dict(_registered)


def lookup(spec: ModelSpec, origin: str = "model.json") -> Architecture:
    """The architecture model.json names; an unknown name is an error listing the known ones."""
    known = architectures()
    if spec.architecture not in known:
        raise ModelError(f"{origin}: model.json field 'architecture' is {spec.architecture!r}; known: "
                         f"{', '.join(sorted(known))}")
    return known[spec.architecture]


def build_module(spec: ModelSpec, origin: str = "model.json") -> torch.nn.Module:
    """The untrained module model.json describes; bad `params` give an error naming the field."""
    found = lookup(spec, origin)
    try:
        return found.build(spec)
    except (TypeError, ValueError) as error:
        raise ModelError(f"{origin}: model.json field 'params' does not fit {spec.architecture}: {error}") from None


def engine_class(spec: ModelSpec, origin: str = "model.json") -> type[Engine]:
    """The engine class that runs models of `spec` (its `DEFAULTS` name the options it takes)."""
    return lookup(spec, origin).engine


def make_engine(package: ModelPackage, device: torch.device, options: Mapping[str, Any] | None = None) -> Engine:
    """The engine that runs `package` on `device` (options override model.json's postprocessing)."""
    return engine_class(package.spec, str(package.path))(package, device, options)
