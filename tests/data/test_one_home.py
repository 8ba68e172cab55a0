"""Issue 19's "one home" rules, checked on the source: data/ sits below eval/, and the DeepScaleR instruction and
the default benchmark list are spelled out in prompting.py alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import deepscaler
import deepscaler.prompting
from deepscaler.prompting import DEFAULT_BENCHMARKS

SOURCE = Path(deepscaler.__file__).parent
HOME = Path(deepscaler.prompting.__file__)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, deferred imports inside functions included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_nothing_in_data_imports_eval():
    files = sorted((SOURCE / "data").glob("*.py"))
    assert any("deepscaler.data.problems" in imported_modules(path) for path in files)  # the parser sees imports
    offenders = {path.name: sorted(m for m in imported_modules(path) if m.startswith("deepscaler.eval"))
                 for path in files}
    assert {name: found for name, found in offenders.items() if found} == {}
    # Nor through what it imports: loading the whole data package leaves eval unloaded.
    script = "import sys, deepscaler.data; print(sorted(m for m in sys.modules if m.startswith('deepscaler.eval')))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def spelled_out(path: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    """A file's string constants, and its tuples and lists made of string constants alone."""
    strings, sequences = [], []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.append(node.value)
        elif isinstance(node, (ast.Tuple, ast.List)) and node.elts and all(
                isinstance(item, ast.Constant) and isinstance(item.value, str) for item in node.elts):
            sequences.append(tuple(item.value for item in node.elts))
    return strings, sequences


def test_the_instruction_and_the_benchmark_list_live_in_prompting_alone():
    spelled = {path.relative_to(SOURCE).as_posix(): spelled_out(path) for path in sorted(SOURCE.rglob("*.py"))}
    assert "prompting.py" in spelled and "cli/eval.py" in spelled  # the scan reaches the home and the subpackages
    instruction = [name for name, (strings, _) in spelled.items()
                   if any("output the final answer within" in text for text in strings)]
    assert instruction == ["prompting.py"]
    joined = ",".join(DEFAULT_BENCHMARKS)
    benchmark_lists = [name for name, (strings, sequences) in spelled.items()
                       if DEFAULT_BENCHMARKS in sequences or any(joined in s for s in strings)]
    assert benchmark_lists == ["prompting.py"]
