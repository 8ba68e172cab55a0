"""Colocated vLLM under torchrun (2 ranks, gloo), against the stand-in in fake_vllm/: the engine's options, the
sleep / wake / weight-load order of every step, and weights streamed one parameter at a time. No GPU, no vLLM."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from tests.trainer.conftest import free_port, train_args

pytestmark = pytest.mark.slow

FAKE_VLLM = Path(__file__).parent / "fake_vllm"
SYNC = ["sleep", "wake_up:weights", "reload_weights", "reset_prefix_cache", "wake_up:kv_cache"]


def _train(inputs, tmp_path, extra):
    """Two FSDP ranks, 2 steps, validation after the second; returns each rank's log of engine calls."""
    logs = tmp_path / "engine_calls"
    logs.mkdir()
    env = dict(os.environ, FAKE_VLLM_LOG=str(logs),
               PYTHONPATH=os.pathsep.join([str(FAKE_VLLM), *filter(None, [os.environ.get("PYTHONPATH")])]))
    args = train_args(inputs, tmp_path / "run", steps=2, extra=[
        "rollout.engine=vllm", "rollout.enable_sleep_mode=true", "rollout.gpu_memory_utilization=0.35",
        "data.max_prompt_tokens=200", "distributed.strategy=fsdp", "checkpoint.every_steps=10",
        "validation.every_steps=2", "validation.max_problems=2", "validation.samples_per_problem=2", *extra])
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={free_port()}",
         "-m", "deepscaler.cli", "train", *args], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [[json.loads(line) for line in (logs / f"rank{rank}.jsonl").read_text().splitlines()] for rank in (0, 1)]


def _sequence(calls):
    return [call["event"] + (":" + ",".join(call["tags"]) if call["event"] == "wake_up" else "") for call in calls]


def test_colocated_engine_protocol(tiny_run_inputs, tmp_path):
    ranks = _train(tiny_run_inputs, tmp_path, [])
    for rank, calls in enumerate(ranks):
        assert calls[0]["kwargs"].items() >= {
            "distributed_executor_backend": "external_launcher", "tensor_parallel_size": 1,
            "gpu_memory_utilization": 0.35, "enable_sleep_mode": True,
            "max_model_len": 200 + 24,  # data.max_prompt_tokens + the stage's max_response_tokens
        }.items()
        # Each step generates awake, sleeps for the trainer's passes, wakes the weights, takes the new ones, then
        # wakes the KV cache; validation (each rank its share of the problems) runs on the engine the last sync woke.
        assert _sequence(calls) == ["init", "generate", *SYNC, "generate", *SYNC, "generate", "shutdown"], rank
        assert all(call["level"] == 2 for call in calls if call["event"] == "sleep")

    # Every parameter once, in order, cast to the engine's dtype, as a stream: never more than the current tensor
    # and the tied embedding (kept for the output head) alive at once.
    names = [name for name, _ in AutoModelForCausalLM.from_pretrained(tiny_run_inputs / "model").named_parameters()]
    loads = [call for calls in ranks for call in calls if call["event"] == "reload_weights"]
    assert len(loads) == 4
    for load in loads:
        assert load["names"] == [*names, "lm_head.weight"]
        assert load["dtypes"] == ["torch.bfloat16"]
        assert load["iterator"] and not load["mapping"]
        assert load["most_alive"] <= 2

    # Each rank samples its own block of prompts.
    first_steps = [next(call for call in calls if call["event"] == "generate") for calls in ranks]
    assert [len(call["prompts"]) for call in first_steps] == [2, 2]
    assert first_steps[0]["prompts"] != first_steps[1]["prompts"]


def test_tensor_parallel_ranks_send_one_engine_the_same_requests(tiny_run_inputs, tmp_path):
    ranks = _train(tiny_run_inputs, tmp_path, ["rollout.tensor_parallel_size=2"])
    assert [calls[0]["kwargs"]["tensor_parallel_size"] for calls in ranks] == [2, 2]
    generated = [[(call["prompts"], call["seeds"]) for call in calls if call["event"] == "generate"] for calls in ranks]
    # Both steps' 4 prompts (both ranks' blocks) and the validation, on both ranks of the one engine.
    assert generated[0] == generated[1] and len(generated[0]) == 3
    assert [len(prompts) for prompts, _ in generated[0][:2]] == [4, 4]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["world_size"] for m in metrics] == [2, 2] and "val/pass@1" in metrics[-1]
