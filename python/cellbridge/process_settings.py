"""Process-wide settings that the entry points apply (the command line, the server, batch workers), never a
library constructor: glibc's malloc thresholds (`cellbridge.pipeline.memory`) and torch's thread count."""

from __future__ import annotations

from cellbridge.pipeline.memory import release_large_buffers


def apply_process_settings(threads: int | None = None) -> None:
    """Set up this process for long runs: freed large buffers go back to the system (a whole slide's peak memory
    stays flat), and torch uses `threads` threads when given (else its default)."""
    release_large_buffers()
    if threads:
        import torch

        torch.set_num_threads(threads)
