"""Two GRPO steps on the real model by its hub id, rollouts on each engine: metrics for both steps, a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.real.conftest import HUB_ID, cli

pytestmark = [pytest.mark.slow, pytest.mark.real_model]


@pytest.mark.parametrize("engine", ["builtin", "vllm"])
def test_two_grpo_steps(hub_env: dict, tmp_path: Path, engine: str) -> None:
    problems = tmp_path / "train.jsonl"
    problems.write_text("".join(json.dumps({"problem": f"What is {a} + {a}?", "answer": str(2 * a)}) + "\n"
                                for a in (3, 7, 12, 20)))
    out = tmp_path / "run"
    run = cli("train", f"model.path={HUB_ID}", f"data.train_files=[{problems}]", f"out_dir={out}",
              "stages.0.max_steps=2", "stages.0.prompts_per_step=2", "stages.0.samples_per_prompt=2",
              "stages.0.max_response_tokens=32", "optim.micro_batch_tokens=1024", "validation.every_steps=0",
              "checkpoint.every_steps=2", "tensorboard=false", "algorithm.kl_coef=0", "rollout.data_parallel=1",
              f"rollout.engine={engine}", env=hub_env, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2
    assert all(0 < m["response_length/max"] <= 32 for m in metrics)
    assert all(abs(m["rollout/logprob_gap"]) < 1e-2 for m in metrics)  # the engine and the trainer agree
    latest = (out / "checkpoints" / "latest").read_text().strip()
    assert (out / "checkpoints" / latest / "model" / "config.json").is_file()
