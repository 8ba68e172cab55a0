"""A checkpoint resumes on another number of ranks: written by 1 process, resumed on 2 (torchrun, gloo), written
there and resumed on 1 again, under DDP and under FSDP2 (DCP reshards the saved shards). Each resume restores
exactly the checkpoint's weights and reference; the chain ends bit for bit where one process taking every step
ends, which it cannot unless the optimizer state came through too."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.checkpoint_worker import fresh, step, train_step
from tests.trainer.conftest import free_port

pytestmark = pytest.mark.slow

WORKER = Path(__file__).parent / "checkpoint_worker.py"


@pytest.fixture
def one_thread():
    """Matrix products summed in the same order as in torchrun's workers (OMP_NUM_THREADS=1): bit-equal results."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_one_rank_to_two_and_back(tiny_run_inputs, tmp_path, strategy, one_thread):
    model_dir, run = str(tiny_run_inputs / "model"), tmp_path / "run"
    policy, optimizer, _ = fresh(model_dir, strategy)
    for _ in range(3):
        train_step(policy, optimizer)
    expected = policy.state_dict()

    step(model_dir, str(run), strategy, 1)  # one process: this one
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                          f"--master-port={free_port()}", str(WORKER), model_dir, str(run), strategy, "2"],
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert two.stdout.count("of 2: step 2 done") == 2
    if strategy == "fsdp":  # each rank wrote its own shards
        assert len(list((run / "checkpoints" / "step_000002" / "optimizer").glob("*.distcp"))) == 2
    final = step(model_dir, str(run), strategy, 3)  # one process again

    initial = load_file(str(tiny_run_inputs / "model" / "model.safetensors"))
    assert max(float((expected[name] - initial[name]).abs().max()) for name in initial) > 1e-3
    for name in initial:
        assert torch.equal(final[name], expected[name]), name
