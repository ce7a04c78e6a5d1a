"""The scripts under benchmarks/, loaded as modules so that tests can call their functions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def script(name: str) -> Path:
    """The path of benchmarks/<name>.py."""
    return BENCHMARKS / f"{name}.py"


def load_benchmark(name: str) -> ModuleType:
    """Run benchmarks/<name>.py as a module named `name` (its `__main__` block does not run) and return it."""
    spec = importlib.util.spec_from_file_location(name, script(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
