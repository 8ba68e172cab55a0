"""A run killed with SIGKILL and resumed ends with exactly the weights of an uninterrupted run; a resume passes
over a damaged checkpoint with a warning and takes the previous one, and with none to take stops on one line."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.conftest import train_args

pytestmark = pytest.mark.slow


def _train(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "deepscaler.cli", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def _final_weights(run_dir):
    folder = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(str(folder / "model" / "model.safetensors"))


def test_sigkill_then_resume_matches_uninterrupted(tiny_run_inputs, tmp_path):
    steps = 6
    full = _train(train_args(tiny_run_inputs, tmp_path / "full", steps))
    assert full.wait(timeout=300) == 0, full.stdout.read()

    kill_after = random.Random(os.getpid()).randint(2, steps - 1)
    killed = _train(train_args(tiny_run_inputs, tmp_path / "killed", steps))
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert (tmp_path / "killed" / "checkpoints" / "latest").exists()

    resumed = _train(["--resume", str(tmp_path / "killed")])
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    expected, actual = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "killed")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    steps_logged = [line for line in metrics.read_text().splitlines() if line]
    assert len(steps_logged) == steps  # steps redone after the resume are not logged twice


def test_resume_passes_over_a_damaged_checkpoint_and_refuses_when_there_is_none(tiny_run_inputs, tmp_path):
    run = tmp_path / "run"
    first = _train(train_args(tiny_run_inputs, run, steps=2))
    assert first.wait(timeout=300) == 0, first.stdout.read()
    expected = _final_weights(run)
    shard = run / "checkpoints" / "step_000002" / "optimizer" / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 256] = bytes(256)
    shard.write_bytes(bytes(data))

    resumed = subprocess.run([sys.executable, "-m", "deepscaler.cli", "train", "--resume", str(run)],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert (f"warning: checkpoint {run / 'checkpoints' / 'step_000002'} is damaged or incomplete: "
            "optimizer/__0_0.distcp does not match its checksum") in resumed.stderr
    assert f"resuming from {run / 'checkpoints' / 'step_000001'}" in resumed.stderr
    actual = _final_weights(run)  # step 2 taken again, from step 1: the weights of the first time
    assert all(torch.equal(actual[name], expected[name]) for name in expected)

    # No checkpoint left (the same one-line error names each damaged one when all are: test_checkpoint.py).
    shutil.rmtree(run / "checkpoints")
    failed = subprocess.run([sys.executable, "-m", "deepscaler.cli", "train", "--resume", str(run)],
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.splitlines()[-1] == f"deepscaler train: error: {run}: no checkpoint to resume from " \
                                             f"(nothing in {run / 'checkpoints'})"
