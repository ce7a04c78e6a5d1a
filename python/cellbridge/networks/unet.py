"""A small U-Net (configurable depth, width and channels) and the three architectures built on it:
`unet-nuclei` (centre heatmap + foreground (+ normalised distance) + class logits), `unet-semantic` (background + one output per class)
and `unet-distance` (foreground + normalised distance + class logits)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from cellbridge.engines.instance import DistanceEngine
from cellbridge.engines.nuclei import NucleiEngine, nuclei_maps
from cellbridge.engines.registry import architecture
from cellbridge.engines.semantic import SemanticEngine
from cellbridge.networks import TRAINABLE_PARTS

if TYPE_CHECKING:
    from cellbridge.models.package import ModelSpec


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with `depth` poolings and `width`·2^k channels at level k; output has `out_channels` logits.

    Inputs of any size work: they are padded to a multiple of 2^depth and the output cropped back.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 2, depth: int = 3, width: int = 16) -> None:
        super().__init__()
        self.depth = depth
        widths = [width * 2 ** k for k in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_channels, widths[0])] +
                                  [_block(widths[k - 1], widths[k]) for k in range(1, depth + 1)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[k], widths[k - 1], 2, stride=2)
                                 for k in range(depth, 0, -1)])
        self.merge = nn.ModuleList([_block(2 * widths[k - 1], widths[k - 1]) for k in range(depth, 0, -1)])
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self._fixed: list[nn.Module] = []   # parts kept as they are while training (see `train_only`)

    def train_only(self, part: str) -> None:
        """Let only `part` learn: "all", "decoder" (the up path and the head) or "head" (the 1×1 output
        convolution). The other parts keep their weights and their batch-norm statistics (they stay in eval
        mode while the rest trains), as fine-tuning on a few images needs."""
        if part not in TRAINABLE_PARTS:
            raise ValueError(f"unknown trainable part {part!r}; use {', '.join(TRAINABLE_PARTS)}")
        self._fixed = {"all": [], "decoder": [self.down], "head": [self.down, self.up, self.merge]}[part]
        for fixed in self._fixed:
            fixed.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "UNet":
        super().train(mode)
        for fixed in self._fixed:
            fixed.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        multiple = 2 ** self.depth
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)[..., :h, :w]


def unet_from_spec(spec: ModelSpec, out_channels: int, extra_params: tuple[str, ...] = ()) -> UNet:
    """The U-Net a package describes: `params` may hold `depth` (default 3) and `width` (default 16), and the
    architecture's `extra_params`, nothing else."""
    allowed = ("depth", "width", *extra_params)
    unknown = sorted(set(spec.params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} ({spec.architecture} takes {', '.join(allowed)})")
    params = {"depth": 3, "width": 16, **spec.params}
    return UNet(spec.in_channels, out_channels, depth=int(params["depth"]), width=int(params["width"]))


def head_channels(n_classes: int, maps: int = 2) -> int:
    """Output channels of a nuclei or distance U-Net for `n_classes` classes: `maps` maps (+ class logits when > 1)."""
    return maps + (n_classes if n_classes > 1 else 0)


@architecture("unet-nuclei", engine=NucleiEngine)
def build_nuclei_unet(spec: ModelSpec) -> UNet:
    """The U-Net of a `unet-nuclei` package: centre heatmap, foreground (+ normalised distance, + class logits)."""
    module = unet_from_spec(spec, head_channels(len(spec.classes), nuclei_maps(spec)), extra_params=("distance_map",))
    with torch.no_grad():
        module.head.bias[0] = -4.0  # centres are rare: start the heatmap near 0 (trained weights replace this)
    return module


@architecture("unet-semantic", engine=SemanticEngine)
def build_semantic_unet(spec: ModelSpec) -> UNet:
    """The U-Net of a `unet-semantic` package: background + one output per class."""
    return unet_from_spec(spec, len(spec.classes) + 1)


@architecture("unet-distance", engine=DistanceEngine)
def build_distance_unet(spec: ModelSpec) -> UNet:
    """The U-Net of a `unet-distance` package: foreground, normalised distance (+ class logits)."""
    return unet_from_spec(spec, head_channels(len(spec.classes)))
