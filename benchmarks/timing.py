"""Timing helper shared by the benchmark scripts (run them as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of `repeat` calls after one warm-up."""
    return timed_together([fn], repeat)[0]


def timed_together(fns: Sequence[Callable[[], object]], repeat: int) -> list[float]:
    """Median seconds of each of `fns` over `repeat` rounds that call every one once (after one warm-up each),
    so that a shared machine's changing load falls on all of them alike."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, own in zip(fns, times):
            start = time.perf_counter()
            fn()
            own.append(time.perf_counter() - start)
    return [statistics.median(own) for own in times]
