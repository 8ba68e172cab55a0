"""`deepscaler eval` records the engine that ran ("builtin" or "vllm", not "auto") and resumes only with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepscaler.inference import make_tiny_model

DEEPSCALER = str(Path(sys.executable).parent / "deepscaler")
DATA_DIR = str(Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks")


def eval_cli(model: Path, out: Path, engine: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DEEPSCALER, "eval", "--model", str(model), "--engine", engine, "--benchmarks", "aime2024", "--data-dir",
         DATA_DIR, "--limit", "1", "--n", "1", "--max-tokens", "4", "--workers", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_auto_is_recorded_as_the_engine_it_picked_and_resume_names_an_engine_change(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny", preset="tiny", seed=0)
    # A machine without vLLM: a package named vllm that fails to import stands first on the path.
    (tmp_path / "no-vllm" / "vllm").mkdir(parents=True)
    (tmp_path / "no-vllm" / "vllm" / "__init__.py").write_text("raise ImportError('no vLLM on this machine')\n")
    out = tmp_path / "eval"
    first = eval_cli(model, out, "auto", env={"PYTHONPATH": str(tmp_path / "no-vllm")})
    assert first.returncode == 0, first.stderr
    assert json.loads((out / "config.json").read_text())["model"]["engine"] == "builtin"

    # Naming the engine "auto" picked resumes the run (nothing left to do); another engine is refused by name,
    # before any model loads.
    again = eval_cli(model, out, "builtin")
    assert again.returncode == 0, again.stderr
    other = eval_cli(model, out, "vllm")
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert f'{out} holds a run with other settings (earlier -> now): model.engine: "builtin" -> "vllm". ' \
        in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
