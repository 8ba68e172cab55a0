"""The engines package's modules import one another without a cycle, and each imports on its own."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

import deepscaler.inference.engines

PACKAGE = "deepscaler.inference.engines"
FOLDER = Path(deepscaler.inference.engines.__file__).parent
MODULES = sorted(path.stem for path in FOLDER.glob("*.py") if path.stem != "__init__")


def engine_imports(module: str) -> set[str]:
    """The engines modules that `module` imports anywhere in its source, deferred imports in functions included
    (a deferred import only postpones a cycle to the first call)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse((FOLDER / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE + "."):
            found.add(node.module.removeprefix(PACKAGE + "."))
        elif isinstance(node, ast.Import):
            found.update(alias.name.removeprefix(PACKAGE + ".") for alias in node.names)
    return found & set(MODULES)


def test_the_engines_import_graph_has_no_cycle() -> None:
    graph = {module: engine_imports(module) for module in MODULES}
    assert {"scheduler", "parallel"} <= graph["builtin"] and "builtin" in graph["worker"]  # the parser sees them
    with pytest.raises(graphlib.CycleError):  # and the check catches the cycle there was (builtin <-> parallel)
        graphlib.TopologicalSorter({**graph, "parallel": graph["parallel"] | {"builtin"}}).prepare()
    order = list(graphlib.TopologicalSorter(graph).static_order())
    assert order.index("builtin") > order.index("parallel") and order.index("worker") > order.index("builtin")


def test_each_engines_module_imports_on_its_own() -> None:
    # One interpreter (a fresh one per module would cost seconds each): deepscaler's modules are dropped before
    # each import, so each module runs its imports from scratch; third-party packages stay loaded.
    script = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m == 'deepscaler' or m.startswith('deepscaler.')]:\n"
        "        del sys.modules[loaded]\n"
        f"    importlib.import_module('{PACKAGE}.' + name)\n"
        "    print(name)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, *MODULES], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == MODULES
