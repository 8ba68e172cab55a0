"""The shared-prompt forward (each distinct prompt run once, its keys and values reused by its samples' responses)
against the plain forward of every whole sequence, on the tiny Qwen2: the same per-token log-probs, the same
parameter gradients, the same reference log-probs and the same optimizer step."""

import copy
import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from deepscaler.trainer.config import TrainConfig
from deepscaler.trainer.sequences import (
    Sample,
    can_share_prompts,
    collate_responses,
    fill_logprobs,
    left_padded_causal_mask,
    pack_by_prompt,
    plan_micro_batches,
    prefix_causal_mask,
    prompt_layout,
    response_logprobs,
    shared_prompt_size,
)
from deepscaler.trainer.update import update_policy

PAD = 0
TEMPERATURE = 0.7


@pytest.fixture(scope="module")
def model(tiny_run_inputs):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_run_inputs / "model", dtype=torch.float32).train()


def make_samples(prompt_lengths, samples_per_prompt=4, seed=0):
    """Groups of samples sharing a prompt; responses of 0 to 12 tokens (so right padding, one-token and empty
    responses occur), prompts of the given lengths (unequal lengths exercise the left-padded prompt forward)."""
    rng = random.Random(seed)
    samples = []
    for group, length in enumerate(prompt_lengths):
        prompt = [rng.randrange(5, 1000) for _ in range(length)]
        for k in range(samples_per_prompt):
            size = {0: 1, 1: 0}.get(k, rng.randint(2, 12))
            samples.append(Sample(prompt=prompt, response=[rng.randrange(5, 1000) for _ in range(size)], group=group,
                                  advantage=rng.uniform(-1, 1)))
    rng.shuffle(samples)  # a group's samples need not be adjacent
    return samples


def logprobs_and_grads(model, samples, share):
    """Masked per-token log-probs and the gradients of a fixed weighted sum of them."""
    model.zero_grad(set_to_none=True)
    batch = collate_responses(samples, PAD)
    logp = response_logprobs(model, samples, PAD, TEMPERATURE, share_prompts=share)[0] * batch["mask"]
    weights = torch.randn(logp.shape, generator=torch.Generator().manual_seed(1))
    (logp * weights).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return logp.detach(), grads


def assert_close_to_scale(actual, expected, name, tolerance=1e-5):
    """Equal up to float32 rounding: the largest difference is tiny against the largest value (an elementwise
    relative test would fail on entries that are sums of cancelling terms, near zero)."""
    error, scale = float((actual - expected).abs().max()), float(expected.abs().max())
    assert error <= tolerance * scale, f"{name}: max difference {error:.3g} against max value {scale:.3g}"


def one_by_one(model, samples):
    """Golden values: each sample alone, unpadded, through the model's own forward and log_softmax."""
    rows = []
    with torch.no_grad():
        for s in samples:
            ids = torch.tensor([s.prompt + s.response])
            logits = model(input_ids=ids).logits[0, len(s.prompt) - 1 : -1] / TEMPERATURE
            rows.append(torch.log_softmax(logits, -1).gather(-1, ids[0, len(s.prompt) :, None])[:, 0])
    return rows


@pytest.mark.parametrize("prompt_lengths", [(7, 7, 7), (3, 9, 5)], ids=["equal-prompts", "unequal-prompts"])
def test_shared_prompt_logprobs_and_gradients_match_the_full_forward(model, prompt_lengths):
    samples = make_samples(prompt_lengths)
    full_logp, full_grads = logprobs_and_grads(model, samples, share=False)
    shared_logp, shared_grads = logprobs_and_grads(model, samples, share=True)
    for row, (sample, golden) in enumerate(zip(samples, one_by_one(model, samples))):
        n = len(sample.response)
        torch.testing.assert_close(full_logp[row, :n], golden, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(shared_logp[row, :n], golden, atol=2e-5, rtol=1e-5)
    assert float(shared_logp.abs().sum()) > 0
    for name, grad in full_grads.items():
        assert float(grad.abs().max()) > 0, name  # every parameter takes part, so every gradient is checked
        assert_close_to_scale(shared_grads[name], grad, name)


def test_bfloat16_autocast_shared_prompt_stays_close(model):
    samples = make_samples((4, 6))
    batch = collate_responses(samples, PAD)
    with torch.no_grad():
        full, shared = (response_logprobs(model, samples, PAD, TEMPERATURE, "bfloat16", share_prompts=share)[0]
                        * batch["mask"] for share in (False, True))
    assert shared.dtype == torch.float32
    torch.testing.assert_close(shared, full, atol=0.1, rtol=0.05)  # bf16 rounding, not a different computation


def test_masks_by_hand():
    # Two rows, three columns: the first unpadded, the second with one pad slot in front.
    mask = left_padded_causal_mask(torch.tensor([0, 1]), 3)[:, 0].int().tolist()
    assert mask[0] == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert mask[1] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]  # the pad query sees only itself; real tokens skip it
    prefix = prefix_causal_mask(torch.tensor([1]), 3, 2)[0, 0].int().tolist()
    assert prefix == [[0, 1, 1, 1, 0], [0, 1, 1, 1, 1]]
    prompts, owner = prompt_layout([Sample([1, 2], [3], 0), Sample([4], [5], 1), Sample([1, 2], [6], 0)])
    assert prompts == [[1, 2], [4]] and owner == [0, 1, 0]


def test_pack_by_prompt_keeps_groups_together_within_the_budget():
    samples = make_samples((10, 20, 30, 10), samples_per_prompt=5, seed=3)
    budget = 80
    batches = pack_by_prompt(samples, budget)
    assert sorted(i for b in batches for i in b) == list(range(len(samples)))
    for indices in batches:
        chunk = [samples[i] for i in indices]
        assert shared_prompt_size(chunk) <= budget or len(chunk) == 1
    # The size by hand: prompts of 10 and 20 tokens, longest response 3 -> 2 x 20 + 3 x 3.
    assert shared_prompt_size([Sample([1] * 10, [1, 2], 0), Sample([2] * 20, [1, 2, 3], 1),
                               Sample([1] * 10, [5], 0)]) == 49
    # A budget that holds everything: one micro-batch.
    assert len(pack_by_prompt(samples, 10_000)) == 1
    # A group that fits a micro-batch alone is never split.
    budget = max(shared_prompt_size([s for s in samples if s.group == g]) for g in range(4))
    split = {}
    for number, indices in enumerate(pack_by_prompt(samples, budget)):
        for i in indices:
            split.setdefault(samples[i].group, set()).add(number)
    assert all(len(numbers) == 1 for numbers in split.values())
    # One that does not is split, and a lone sample larger than the budget still gets a micro-batch.
    assert sum(len(b) for b in pack_by_prompt(samples, 20)) == len(samples)


def test_gradient_checkpointing_turns_sharing_off(model):
    assert can_share_prompts(model)
    checkpointed = copy.deepcopy(model)
    checkpointed.gradient_checkpointing_enable()
    assert not can_share_prompts(checkpointed)


def test_reference_logprobs_and_update_match_the_unshared_path(model):
    """The trainer's own entry points: fill_logprobs and update_policy pick the shared route for a plain model and
    the packed route for a gradient-checkpointed copy (same weights, same arithmetic otherwise). Prompts long
    against the responses, so that sharing them computes fewer tokens than packing (which the plain model takes
    for short prompts)."""
    assert not plan_micro_batches(model, make_samples((6, 9, 6, 4)), 4096)[0]
    samples = make_samples((30, 45, 30, 20))
    plain, checkpointed = copy.deepcopy(model), copy.deepcopy(model)
    checkpointed.gradient_checkpointing_enable()
    assert plan_micro_batches(plain, samples, 4096)[0] and not plan_micro_batches(checkpointed, samples, 4096)[0]
    for sample in samples:
        sample.rollout_logp = torch.zeros(len(sample.response))
    fill_logprobs(plain, samples, "ref_logp", TEMPERATURE, 4096, PAD)
    shared_ref = [s.ref_logp for s in samples]
    fill_logprobs(checkpointed, samples, "ref_logp", TEMPERATURE, 4096, PAD)
    for shared, full in zip(shared_ref, (s.ref_logp for s in samples)):
        torch.testing.assert_close(shared, full, atol=2e-5, rtol=1e-5)

    config = TrainConfig()
    config.optim.mini_batches = 1
    # Huge, so every step dwarfs the float32 rounding of the weights it is added to (the weights are not used after).
    config.optim.lr = 1e3
    config.algorithm.kl_coef = 0.1
    config.algorithm.entropy_coef = 0.01
    before = {name: value.detach().clone() for name, value in model.named_parameters()}
    results = []
    for net in (plain, checkpointed):
        # Plain SGD, so each weight moves by exactly -lr x its (clipped) gradient: the comparison is of gradients.
        optimizer = torch.optim.SGD(net.parameters(), lr=config.optim.lr)
        metrics = update_policy(net, optimizer, samples, 4, config, 16, PAD, TEMPERATURE, seed=0)
        results.append((metrics, {name: value.detach() - before[name] for name, value in net.named_parameters()}))
    (shared_metrics, shared_steps), (full_metrics, full_steps) = results
    assert shared_metrics["bad_steps"] == 0
    for key in ("loss", "pg_loss", "kl", "entropy", "grad_norm"):
        assert shared_metrics[key] == pytest.approx(full_metrics[key], rel=1e-4, abs=1e-7), key
    for name, step in shared_steps.items():
        assert float(step.abs().max()) > 0, name
        assert_close_to_scale(step, full_steps[name], name)
