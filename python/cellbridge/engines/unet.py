"""A small U-Net: configurable depth, width and channels; the backbone of the nuclei and semantic engines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

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


def unet_from_spec(spec: ModelSpec, out_channels: int) -> UNet:
    """The U-Net a package describes: `params` may hold `depth` (default 3) and `width` (default 16), nothing else."""
    unknown = sorted(set(spec.params) - {"depth", "width"})
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} ({spec.architecture} takes depth, width)")
    params = {"depth": 3, "width": 16, **spec.params}
    return UNet(spec.in_channels, out_channels, depth=int(params["depth"]), width=int(params["width"]))


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid of channels 0–1 (two binary maps), softmax over the rest (class probabilities, when there are any):
    the output of the nuclei and distance U-Nets as probabilities."""
    maps = [torch.sigmoid(logits[:, :2])]
    if logits.shape[1] > 2:
        maps.append(torch.softmax(logits[:, 2:], dim=1))
    return torch.cat(maps, dim=1)


FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))  # identity, left-right, up-down, both


def flip_averaged_probabilities(module: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Test-time augmentation: the probabilities of the four flips of `batch`, flipped back and averaged. The
    flips form a group, so an input that is its own mirror image gets a mirror-symmetric output."""
    total = torch.zeros(())
    for dims in FLIPS:
        out = probabilities(module(batch.flip(dims) if dims else batch).float())
        total = total + (out.flip(dims) if dims else out)
    return total / len(FLIPS)


def probability_maps(logits: torch.Tensor) -> list:
    """Per-tile float16 maps on the CPU (see `probabilities`)."""
    return to_maps(probabilities(logits))


def to_maps(probs: torch.Tensor) -> list:
    """A batch of probability maps as per-tile float16 arrays on the CPU."""
    return list(probs.to(torch.float16).cpu().numpy())
