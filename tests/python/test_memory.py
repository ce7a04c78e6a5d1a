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
    # glibc's defaults: no MALLOC_* tuning inherited (a Dask nanny in this process sets MALLOC_TRIM_THRESHOLD_)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def retained(mode: str) -> float:
        done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                              env=env)
        return float(done.stdout.strip())

    assert retained("default") > 150   # 200 MiB freed but held by a fragmented heap
    assert retained("fix") < 20        # given back at once
