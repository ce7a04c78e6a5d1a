"""Every cellbridge module imports on its own, and no two modules import each other (directly or round a loop)."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import cellbridge

PACKAGE_DIR = Path(cellbridge.__file__).parent
# each module imported alone: cellbridge's modules are dropped from sys.modules before the next one (the
# libraries they use stay loaded, which keeps this fast)
IMPORT_EACH = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "cellbridge" or m.startswith("cellbridge.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failed.append(f"{name}: {type(error).__name__}: {error}")
print("\\n".join(failed))
"""


def module_names() -> list[str]:
    """Every module of the package (`__main__`, which runs the command line, aside)."""
    names = ["cellbridge"]
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], "cellbridge."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return sorted(names)


def module_file(name: str) -> Path | None:
    """The source file of a cellbridge module (its `__init__.py` for a package), None for a name that is not one."""
    path = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def top_level_imports(name: str) -> set[str]:
    """The cellbridge modules that `name` imports when it is loaded (imports inside functions and under
    `if TYPE_CHECKING:` run later or never, so they are left out)."""
    tree = ast.parse(module_file(name).read_text(encoding="utf-8"))
    package = name if module_file(name).name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(tree.body)
    return {m for m in found if m.startswith("cellbridge.") and m != name and module_file(m) is not None}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The loops of a directed graph (its strongly connected components of more than one module), Tarjan's way."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_every_module_imports_on_its_own() -> None:
    names = module_names()
    assert {"cellbridge.engines.registry", "cellbridge.networks.unet", "cellbridge.cli.main"} <= set(names)
    done = subprocess.run([sys.executable, "-c", IMPORT_EACH, *names], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"modules that fail to import alone:\n{done.stdout}"


def test_no_module_level_import_cycle() -> None:
    graph = {name: top_level_imports(name) for name in module_names()}
    assert graph["cellbridge.networks.unet"] >= {"cellbridge.engines.registry", "cellbridge.engines.nuclei"}
    # an import of an enclosing package (`from cellbridge import __version__`) never loops: Python loads a package
    # before anything inside it
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not name.startswith(f"{t}.")}
    assert import_cycles(graph) == []


def test_the_cycle_finder_finds_loops() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
