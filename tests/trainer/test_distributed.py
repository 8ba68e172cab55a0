"""Two ranks under torchrun (gloo, CPU) end with the weights of one rank on the same global batch."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.conftest import train_args

pytestmark = pytest.mark.slow


def _weights(run_dir):
    folder = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(str(folder / "model" / "model.safetensors"))


def test_two_ranks_equal_one_rank(tiny_run_inputs, tmp_path):
    args = train_args(tiny_run_inputs, tmp_path / "one", steps=3)
    single = subprocess.run([sys.executable, "-m", "deepscaler.cli", "train", *args], capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stdout + single.stderr
    args = train_args(tiny_run_inputs, tmp_path / "two", steps=3)
    double = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-port=29517",
         "-m", "deepscaler.cli", "train", *args], capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, double.stdout[-3000:] + double.stderr[-3000:]
    logged = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [m["world_size"] for m in logged] == [2, 2, 2]
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    initial = load_file(str(tiny_run_inputs / "model" / "model.safetensors"))
    moved = max(float((one[k] - initial[k]).abs().max()) for k in one)
    assert moved > 1e-4  # training really changed the weights
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
