"""Keep a long run's memory flat: large buffers go back to the system when freed (glibc only).

glibc serves allocations above its mmap threshold with mmap and returns them on free, but it raises that
threshold after the first large free, up to 32 MiB. Tile buffers (a 512² RGB tile is 768 KiB; model outputs and
label images are larger) then come from the heap, which fragments: on a 40,000² slide the peak grew to 1.5 GB
against 1.2 GB on a 20,000² one. Fixing the threshold at 128 KiB keeps the peak flat (1.09 GB on both;
benchmarks/whole_slide.py). Dask sets `MALLOC_TRIM_THRESHOLD_` in its workers for the same reason.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 128 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_done = False


def release_large_buffers() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once; not where the user set them through the
    environment). True when glibc took the setting."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return False
    _done = True
    if _set_at_start("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, MMAP_THRESHOLD) == 1
    log.debug("glibc mmap/trim thresholds set to %d bytes: %s", MMAP_THRESHOLD, ok)
    return ok


def _set_at_start(*names: str) -> bool:
    """Whether the process started with one of these variables (glibc reads them then; later changes to
    os.environ, such as a Dask nanny's, do not count)."""
    try:
        start = Path("/proc/self/environ").read_bytes().split(b"\0")
    except OSError:
        return any(name in os.environ for name in names)
    return any(entry.split(b"=", 1)[0].decode(errors="replace") in names for entry in start)
