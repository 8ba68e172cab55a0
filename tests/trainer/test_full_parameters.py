"""dist.full_parameters under FSDP2 (2 ranks, gloo): the stream the rollout engine loads is the full state dict,
one parameter at a time, cast to the engine's dtype."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.conftest import free_port

pytestmark = pytest.mark.slow


def test_streamed_parameters_equal_the_full_state_dict(tiny_run_inputs):
    worker = Path(__file__).parent / "full_parameters_worker.py"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                             f"--master-port={free_port()}", str(worker), str(tiny_run_inputs / "model")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("parameters streamed") == 2
