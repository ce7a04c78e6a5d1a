"""Choosing the device and running batches on it: autocast on CUDA, pinned memory, OOM → smaller batches."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch

from cellbridge.errors import CellBridgeError

T = TypeVar("T")
R = TypeVar("R")


class DeviceError(CellBridgeError):
    """The asked device is not available or not understood."""


def available_devices() -> list[str]:
    """What this machine offers, e.g. `['cpu', 'cuda:0', 'cuda:1']` or `['cpu', 'mps']`."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def available_cores() -> int:
    """The CPU cores this process may use (its affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """`auto` → CUDA, else MPS, else CPU; `cpu`, `cuda`, `cuda:N`, `mps` checked against what is there."""
    text = "auto" if name is None else str(name).strip().lower()
    present = available_devices()
    if text == "auto":
        if any(d.startswith("cuda") for d in present):
            return torch.device("cuda", 0)
        return torch.device("mps") if "mps" in present else torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps "
                          f"(this machine has: {', '.join(present)})") from None
    if device.type == "cuda":
        index = 0 if device.index is None else device.index
        if f"cuda:{index}" not in present:
            raise DeviceError(f"device {name!r} is not available (this machine has: {', '.join(present)})")
        return torch.device("cuda", index)
    if device.type == "mps" and "mps" not in present:
        raise DeviceError(f"device 'mps' is not available (this machine has: {', '.join(present)})")
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps "
                          f"(this machine has: {', '.join(present)})")
    return device


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (bf16 where supported, else fp16); a no-op elsewhere."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU tensor to `device`; pinned and non-blocking on CUDA."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


class AdaptiveBatcher:
    """Runs a function over items in batches; on out-of-memory it halves the batch and retries (down to 1)."""

    def __init__(self, batch_size: int, device: torch.device) -> None:
        if batch_size < 1:
            raise CellBridgeError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.device = device

    def run(self, items: Sequence[T], fn: Callable[[Sequence[T]], list[R]]) -> list[R]:
        """`fn` over `items` in chunks of the current batch size; results in item order."""
        results: list[R] = []
        start = 0
        while start < len(items):
            chunk = items[start:start + self.batch_size]
            try:
                results.extend(fn(chunk))
            except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
                if not is_out_of_memory(error) or self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            start += len(chunk)
        return results


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive chunks of `size`."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
