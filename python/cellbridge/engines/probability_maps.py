"""U-Net outputs as probabilities: the nuclei and distance engines' maps, and flip test-time augmentation."""

from __future__ import annotations

import torch
from torch import nn


def probabilities(logits: torch.Tensor, maps: int = 2) -> torch.Tensor:
    """Sigmoid of the first `maps` channels (binary or [0, 1] maps), softmax over the rest (class probabilities,
    when there are any): the output of the nuclei and distance U-Nets as probabilities."""
    out = [torch.sigmoid(logits[:, :maps])]
    if logits.shape[1] > maps:
        out.append(torch.softmax(logits[:, maps:], dim=1))
    return torch.cat(out, dim=1)


FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))  # identity, left-right, up-down, both


def flip_averaged_probabilities(module: nn.Module, batch: torch.Tensor, maps: int = 2) -> torch.Tensor:
    """Test-time augmentation: the probabilities of the four flips of `batch`, flipped back and averaged. The
    flips form a group, so an input that is its own mirror image gets a mirror-symmetric output."""
    total = torch.zeros(())
    for dims in FLIPS:
        out = probabilities(module(batch.flip(dims) if dims else batch).float(), maps)
        total = total + (out.flip(dims) if dims else out)
    return total / len(FLIPS)


def probability_maps(logits: torch.Tensor, maps: int = 2) -> list:
    """Per-tile float16 maps on the CPU (see `probabilities`)."""
    return to_maps(probabilities(logits, maps))


def to_maps(probs: torch.Tensor) -> list:
    """A batch of probability maps as per-tile float16 arrays on the CPU, C-contiguous (whatever the memory
    format of the model's output)."""
    return list(probs.to(torch.float16).contiguous().cpu().numpy())
