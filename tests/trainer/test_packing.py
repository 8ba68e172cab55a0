"""Padding-free packing: every sequence of a micro-batch end to end in one row gives the padded rows' log-probs,
entropies and gradients (lean forward, with and without gradient checkpointing, and Hugging Face's forward), and
the trainer's micro-batches count real tokens."""

import random

import pytest
import torch

from deepscaler.trainer import sequences
from deepscaler.trainer.lean_forward import LeanForward
from deepscaler.trainer.packed_attention import packed_causal_attention
from deepscaler.trainer.sequences import Sample, collate_responses, plan_micro_batches, response_logprobs
from tests.trainer.test_lean_forward import PAD, make_model


def varied_samples(seed=0):
    """Prompts of 3 to 9 tokens, responses of 0 to 20 (an empty one, a one-token one), so padded rows waste a lot."""
    rng = random.Random(seed)
    samples = []
    for group, size in enumerate((0, 1, 20, 4, 13, 7, 2, 17)):
        prompt = [rng.randrange(1, 97) for _ in range(rng.randint(3, 9))]
        samples.append(Sample(prompt, [rng.randrange(1, 97) for _ in range(size)], group))
    return samples


def logprobs_entropy_grads(model, samples, packed, lean):
    model.zero_grad(set_to_none=True)
    mask = collate_responses(samples, PAD)["mask"]
    logp, entropy = response_logprobs(model, samples, PAD, 0.7, lean=lean, entropy=True, packed=packed)
    weights = torch.randn(logp.shape, generator=torch.Generator().manual_seed(1))
    ((logp * weights + 0.3 * entropy) * mask).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return logp.detach() * mask, entropy.detach() * mask, grads


def assert_same(packed, padded):
    (logp, entropy, grads), (logp_ref, entropy_ref, grads_ref) = packed, padded
    torch.testing.assert_close(logp, logp_ref, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(entropy, entropy_ref, atol=2e-5, rtol=1e-5)
    assert grads.keys() == grads_ref.keys()
    for name, grad in grads_ref.items():
        error, scale = float((grads[name] - grad).abs().max()), float(grad.abs().max())
        assert error <= 1e-4 * scale, f"{name}: max difference {error:.3g} against max value {scale:.3g}"


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "llama-tied-biased"])
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
def test_packed_row_matches_padded_rows_on_the_lean_forward(family, checkpointing):
    model = make_model(family)
    if checkpointing:
        model.gradient_checkpointing_enable()
        assert LeanForward(model).checkpoint
    assert LeanForward.supports(model)
    samples = varied_samples()
    packed = logprobs_entropy_grads(model, samples, packed=True, lean=True)
    assert_same(packed, logprobs_entropy_grads(model, samples, packed=False, lean=True))
    # Against each sequence alone (no packing, no padding), the log-probs too.
    with torch.no_grad():
        for row, sample in enumerate(samples):
            alone = response_logprobs(model, [sample], PAD, 0.7, packed=False)[0][0, : len(sample.response)]
            torch.testing.assert_close(packed[0][row, : len(sample.response)], alone, atol=2e-5, rtol=1e-5)


def test_packed_row_matches_padded_rows_on_hugging_face():
    """transformers (5.x) finds the sequences of a packed row from its position ids: same numbers."""
    model = make_model("qwen2")
    samples = varied_samples(seed=1)
    assert_same(logprobs_entropy_grads(model, samples, packed=True, lean=False),
                logprobs_entropy_grads(model, samples, packed=False, lean=False))


def test_packed_attention_never_crosses_sequences():
    """Changing one sequence's keys and values leaves the other sequences' outputs as they were."""
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 12, 8), torch.randn(1, 2, 12, 8), torch.randn(1, 2, 12, 8)
    out = packed_causal_attention(q, k, v, [5, 4, 3])
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 5:9] += 1.0
    v2[:, :, 5:9] -= 1.0
    changed = packed_causal_attention(q, k2, v2, [5, 4, 3])
    assert torch.equal(out[:, :, :5], changed[:, :, :5]) and torch.equal(out[:, :, 9:], changed[:, :, 9:])
    assert not torch.allclose(out[:, :, 5:9], changed[:, :, 5:9])
    with pytest.raises(ValueError):
        packed_causal_attention(q, k, v, [5, 4])


def test_packed_forward_computes_only_real_tokens(monkeypatch):
    """The lean forward is given one row of exactly the real tokens, and the budget counts real tokens."""
    model = make_model("qwen2")
    samples = varied_samples()
    seen = []
    real_call = LeanForward.__call__
    monkeypatch.setattr(LeanForward, "__call__", lambda self, ids, *a, **k: seen.append(ids.shape) or
                        real_call(self, ids, *a, **k))
    with torch.no_grad():
        response_logprobs(model, samples, PAD, 0.7)
        response_logprobs(model, samples, PAD, 0.7, packed=False)
    real = sum(s.length for s in samples)
    assert seen == [(1, real), (len(samples), max(s.length for s in samples))]
    model.gradient_checkpointing_enable()  # no prompt sharing, so the packed route
    share, batches = plan_micro_batches(model, samples, 40)
    assert not share
    assert sorted(i for b in batches for i in b) == list(range(len(samples)))
    sizes = [sum(samples[i].length for i in b) for b in batches]
    assert all(size <= 40 for size in sizes) and len(batches) == -(-real // 40)
    padded = sequences.pack(samples, 40)
    assert len(padded) > len(batches)  # the padded rows' budget fits fewer sequences per micro-batch
