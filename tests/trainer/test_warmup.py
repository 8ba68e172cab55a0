"""optim.warmup_steps: a linear warm-up over optimizer steps, then the constant optim.lr; the count of optimizer
steps lives in trainer_state.json, so a resumed run carries on along the schedule where it stopped."""

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from deepscaler.trainer.config import OptimConfig, TrainConfig
from deepscaler.trainer.update import learning_rate, update_policy
from tests.trainer.conftest import train_args
from tests.trainer.test_shared_prompt import PAD, TEMPERATURE, make_samples


def test_learning_rate_rises_linearly_then_holds():
    warm = OptimConfig(lr=1e-3, warmup_steps=4)
    assert [learning_rate(warm, k) for k in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert [learning_rate(OptimConfig(lr=1e-3), k) for k in range(3)] == [1e-3] * 3  # warmup_steps=0: constant


def test_update_policy_steps_at_the_scheduled_rates(tiny_run_inputs):
    model = AutoModelForCausalLM.from_pretrained(tiny_run_inputs / "model", dtype=torch.float32).train()
    samples = make_samples((6, 9, 6, 4))
    for sample in samples:
        sample.rollout_logp = torch.zeros(len(sample.response))
    config = TrainConfig()
    config.optim.lr, config.optim.warmup_steps, config.optim.mini_batches = 1e-3, 4, 2
    used = []
    optimizer = torch.optim.SGD(model.parameters(), lr=123.0)  # overwritten before each step
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    metrics = update_policy(model, optimizer, samples, 4, config, 16, PAD, TEMPERATURE, seed=0, optimizer_step=1)
    assert used == pytest.approx([5e-4, 7.5e-4])  # optimizer steps 1 and 2 of the warm-up (0-based)
    assert metrics["optimizer_steps"] == 2 and metrics["lr"] == pytest.approx(7.5e-4)


@pytest.mark.slow
def test_warm_up_carries_on_across_a_resume(tiny_run_inputs, tmp_path):
    # Two optimizer steps per training step (optim.mini_batches=2), a warm-up of 6: the last rate of each step is
    # 2/6, 4/6, then 6/6 of optim.lr. Step 3 is then redone from step 2's checkpoint: counting from zero again
    # after the resume would give 2/6.
    out = tmp_path / "run"
    extra = ["optim.warmup_steps=6", "optim.mini_batches=2", "algorithm.kl_coef=0", "checkpoint.keep_last=3"]

    def train(*args):
        result = subprocess.run([sys.executable, "-m", "deepscaler.cli", "train", *args], capture_output=True,
                                text=True, stdin=subprocess.DEVNULL, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return [json.loads(line)["actor/lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]

    assert train(*train_args(tiny_run_inputs, out, steps=3, extra=extra)) == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3])
    checkpoints = out / "checkpoints"
    second = sorted(p for p in checkpoints.iterdir() if p.is_dir())[1]
    assert json.loads((second / "trainer_state.json").read_text())["optimizer_steps"] == 4
    (checkpoints / "latest").write_text(second.name)
    assert train("--resume", str(out)) == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3])
