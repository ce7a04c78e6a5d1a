"""The `classical` architecture: no network (the classical engine works on the tiles' pixels alone)."""

from __future__ import annotations

import torch

from cellbridge.engines.classical import ClassicalEngine
from cellbridge.engines.registry import architecture
from cellbridge.models.package import ModelSpec


class NoWeights(torch.nn.Module):
    """The module of a `classical` package: nothing to learn (weights.pt is an empty state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@architecture("classical", engine=ClassicalEngine)
def build_classical(spec: ModelSpec) -> NoWeights:
    """The (empty) module of a `classical` package."""
    if spec.params:
        raise ValueError(f"classical takes no params, got {', '.join(sorted(spec.params))}")
    return NoWeights()
