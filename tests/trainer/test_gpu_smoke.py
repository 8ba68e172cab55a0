"""bench/gpu_smoke.py: its CPU dry run goes through the whole smoke (model, trainer, sampler, 2 steps); without a
GPU and without the flag it refuses clearly."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_smoke.py"


def test_cpu_dry_run_takes_two_steps():
    result = subprocess.run([sys.executable, str(SCRIPT), "--cpu-dry-run"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    steps = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert len(steps) == 2 and all("mean response 64 tokens" in line for line in steps), result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the smoke would run")
def test_without_a_gpu_it_exits_2():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "needs a CUDA GPU" in result.stderr, result.stderr
