"""optim.skip_zero_advantage: with no KL or entropy term, samples of advantage 0 add nothing to the gradient, so
the update leaves them out of its passes; the weights come out as they would have with every sample computed."""

import copy
import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from deepscaler.trainer.config import TrainConfig
from deepscaler.trainer.update import update_policy
from tests.trainer.conftest import train_args
from tests.trainer.test_shared_prompt import PAD, TEMPERATURE, make_samples

GROUPS = 4


@pytest.fixture(scope="module")
def start(tiny_run_inputs):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_run_inputs / "model", dtype=torch.float32).train()


def config(skip: bool, kl_coef: float = 0.0) -> TrainConfig:
    config = TrainConfig()
    config.algorithm.kl_coef, config.algorithm.entropy_coef = kl_coef, 0.0
    config.optim.lr, config.optim.mini_batches, config.optim.skip_zero_advantage = 1e-3, 1, skip
    return config


def samples_with_zero_groups(zero_groups: set[int], seed: int = 0):
    samples = make_samples((6, 9, 6, 4), seed=seed)
    for sample in samples:
        sample.rollout_logp = torch.zeros(len(sample.response))
        sample.ref_logp = torch.zeros(len(sample.response))
        if sample.group in zero_groups:
            sample.advantage = 0.0  # a group that all solved or all failed
    return samples


def run_steps(start, steps, skip, kl_coef=0.0, adam=True):
    """The model after one update per (samples) in steps, by AdamW or plain SGD; the tokens each step's forward
    passes saw and each step's metrics."""
    model = copy.deepcopy(start)
    optimizer = (torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01) if adam
                 else torch.optim.SGD(model.parameters(), lr=1.0))
    seen: list[int] = []
    hook = model.get_input_embeddings().register_forward_hook(lambda module, args, out: seen.append(args[0].numel()))
    tokens, metrics = [], []
    for samples in steps:
        seen.clear()
        metrics.append(update_policy(model, optimizer, samples, GROUPS, config(skip, kl_coef), 16, PAD, TEMPERATURE,
                                     seed=0))
        tokens.append(sum(seen))
    hook.remove()
    return model, tokens, metrics


def params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_the_same_update_with_less_compute(start):
    # SGD at rate 1: the weights move by the gradient itself (Adam would magnify the last bits of gradients near
    # its epsilon, which summing the micro-batches in another order changes).
    samples = samples_with_zero_groups({0, 2})
    full, full_tokens, full_metrics = run_steps(start, [samples], skip=False, adam=False)
    lean, lean_tokens, lean_metrics = run_steps(start, [samples], skip=True, adam=False)
    computed = sum(s.length for s in samples if s.group not in {0, 2})
    assert full_tokens == [sum(s.length for s in samples)] and lean_tokens == [computed]
    assert lean_metrics[0]["skipped_samples"] == 0.5 and full_metrics[0]["skipped_samples"] == 0.0
    before, after, reference = params(start), params(lean), params(full)
    assert max(float((before[n] - after[n]).abs().max()) for n in before) > 1e-5  # far beyond the tolerance
    for name in reference:
        torch.testing.assert_close(after[name], reference[name], rtol=0, atol=1e-8)


def test_a_step_with_no_signal_still_steps_the_optimizer(start):
    # Step 1 gives AdamW momentum; step 2 has advantage 0 everywhere: no forward over the samples at all, yet the
    # weights move by the momentum and the decay exactly as when every sample is computed.
    steps = [samples_with_zero_groups(set()), samples_with_zero_groups(set(range(GROUPS)), seed=1)]
    full, full_tokens, _ = run_steps(start, steps, skip=False)
    lean, lean_tokens, lean_metrics = run_steps(start, steps, skip=True)
    assert lean_tokens[0] == full_tokens[0] and lean_tokens[1] == 2  # one empty 2-token pass
    assert lean_metrics[1]["skipped_samples"] == 1.0 and "logprob_gap_sum" not in lean_metrics[1]
    assert full_tokens[1] == sum(s.length for s in steps[1])
    reference = params(full)
    assert all(torch.equal(value, reference[name]) for name, value in params(lean).items())


def test_a_kl_term_keeps_every_sample(start):
    samples = samples_with_zero_groups({0, 2})
    _, tokens, metrics = run_steps(start, [samples], skip=True, kl_coef=0.01)
    assert tokens == [sum(s.length for s in samples)] and metrics[0]["skipped_samples"] == 0.0


@pytest.mark.slow
def test_a_run_that_never_scores_reports_no_gap(tiny_run_inputs, tmp_path):
    # The random tiny model never boxes the right answer: every group fails, every sample is left out, and the
    # engine-vs-trainer log-prob gap, measured inside the update, has nothing to be measured on.
    out = tmp_path / "run"
    extra = ["algorithm.kl_coef=0", "algorithm.entropy_coef=0", "optim.mini_batches=1", "checkpoint.every_steps=2"]
    run = subprocess.run([sys.executable, "-m", "deepscaler.cli", "train", *train_args(tiny_run_inputs, out, 2, extra)],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["reward/mean"] for m in metrics] == [0.0, 0.0]
    assert [m["actor/skipped_samples"] for m in metrics] == [1.0, 1.0]
    assert all("rollout/logprob_gap" not in m for m in metrics)
    assert run.stdout.count(" gap - ") == 2
