"""Write outputs atomically: to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask_mode() -> int:
    """The mode a plain `open()` would give a new file (0666 minus the umask); mkstemp gives 0600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _umask_mode()  # read once at import: os.umask is process-wide and not thread-safe to query


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file next to `path`; on success rename it over `path`, on error delete it.

    Readers never see a half-written file: either the old content or the complete new one.
    """
    binary = "b" in mode
    with atomic_path(path, suffix=".tmp") as tmp, open(tmp, mode, encoding=None if binary else encoding) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` for libraries that write files themselves; rename on success.

    The temporary name ends in `suffix` (default: the target's, for libraries that choose a format by it)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix if suffix is None else suffix,
                               dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_leftovers(path: str | os.PathLike[str]) -> int:
    """Delete the temporary files of `path` that a process killed while writing it left behind; how many.

    Call it only once `path` itself has been written: it cannot tell a dead writer's file from a live one's."""
    target = Path(path)
    removed = 0
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    return removed
