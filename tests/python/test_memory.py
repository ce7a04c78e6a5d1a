"""Large freed buffers go back to the system (glibc), so a long run's memory does not creep up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import sys, numpy as np, psutil
if sys.argv[1] == "fix":
    from cellbridge.pipeline.memory import release_large_buffers
    assert release_large_buffers()
me = psutil.Process()
big = np.ones(16 << 20, np.uint8); del big          # glibc now serves blocks < 16 MiB from its heap
base = me.memory_info().rss
keep, buffers = [], []
for i in range(200):
    buffers.append(np.ones(1 << 20, np.uint8))       # a tile-sized buffer...
    keep.append(bytearray(2000))                      # ...and a small long-lived object after it
del buffers
print((me.memory_info().rss - base) / 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_tile_buffers_are_returned_to_the_system() -> None:
    assert retained("default") > 150   # 200 MiB freed but held by a fragmented heap
    assert retained("fix") < 20        # given back at once


def retained(mode: str) -> float:
    """MiB that a fresh process holds after freeing 200 MiB of tile-sized buffers, with `mode`'s set-up."""
    return float(run_probe(SCRIPT, mode)[-1])


def run_probe(script: str, mode: str) -> list[str]:
    # glibc's defaults: no MALLOC_* tuning inherited (a Dask nanny in this process sets MALLOC_TRIM_THRESHOLD_)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True, env=env)
    return done.stdout.split()


# After a 16 MiB free, glibc serves a 1 MiB buffer from its heap, unless the thresholds are fixed (then by mmap):
# mallinfo2's mmapped bytes (hblkhd) tell which. Also reports the change in torch's thread count.
SETTINGS_PROBE = """
import ctypes, sys, numpy as np, torch
threads = torch.get_num_threads()
from cellbridge.pipeline.run import Pipeline, RunOptions
Pipeline("classical", RunOptions(device="cpu"))
if sys.argv[1] == "entry point":
    from cellbridge.process_settings import apply_process_settings
    apply_process_settings(threads=threads + 1)
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
big = np.ones(16 << 20, np.uint8); del big
before = libc.mallinfo2().hblkhd
tile = np.ones(1 << 20, np.uint8)
print(torch.get_num_threads() - threads, (libc.mallinfo2().hblkhd - before) >= 1 << 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_making_a_pipeline_leaves_the_process_settings_to_the_entry_points() -> None:
    assert run_probe(SETTINGS_PROBE, "pipeline") == ["0", "False"]      # the constructor changed neither
    assert run_probe(SETTINGS_PROBE, "entry point") == ["1", "True"]    # what the command line, server and
                                                                         # batch workers do
