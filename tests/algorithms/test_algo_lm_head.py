"""lm_head_logprobs against the plain route (logits = h Wᵀ / T, then log_softmax and −Σ p log p): the same values and
the same gradients for hidden states and head weight, in float64 at small sizes, at DeepScaleR's real vocabulary
in float32, and from the same bfloat16 logits."""

import math

import pytest
import torch

from deepscaler.algorithms import lm_head_logprobs

REAL_VOCAB = 151_936  # DeepSeek-R1-Distill-Qwen-1.5B's


def plain_route(hidden, weight, tokens, temperature, dtype=None, acc=None):
    """Today's arithmetic with every logit held: (N, V) logits in the compute dtype, reduced in float32 (float64 for
    float64 compute, or ``acc``)."""
    dtype = dtype or hidden.dtype
    logits = (hidden.to(dtype) @ weight.to(dtype).T).to(acc or torch.promote_types(dtype, torch.float32)) / temperature
    logp = torch.log_softmax(logits, -1)
    return logp.gather(-1, tokens[:, None])[:, 0], -(logp.exp() * logp).sum(-1)


def inputs(n, hidden_size, vocab, dtype, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    hidden = (scale * torch.randn(n, hidden_size, generator=gen, dtype=dtype)).requires_grad_()
    weight = torch.randn(vocab, hidden_size, generator=gen, dtype=dtype).requires_grad_()
    tokens = torch.randint(0, vocab, (n,), generator=gen)
    # Upstream gradients of both outputs, as a loss mixing log-probs and entropy would send.
    upstream = torch.randn(2, n, generator=gen, dtype=torch.promote_types(dtype, torch.float32))
    return hidden, weight, tokens, upstream


def values_and_grads(route, hidden, weight, upstream, entropy):
    logp, ent = route()
    loss = (logp * upstream[0]).sum() + ((ent * upstream[1]).sum() if entropy else 0)
    grad_h, grad_w = torch.autograd.grad(loss, (hidden, weight))
    return logp.detach(), (ent.detach() if entropy else None), grad_h, grad_w


def assert_close_to_scale(actual, expected, tolerance, name):
    """The largest difference is small against the largest value (sums of cancelling terms defeat a relative test)."""
    error, scale = float((actual.double() - expected.double()).abs().max()), float(expected.abs().max())
    assert error <= tolerance * scale, f"{name}: max difference {error:.3g} against max value {scale:.3g}"


def compare(hidden, weight, tokens, upstream, temperature, entropy, tolerance, dtype=None, block_elements=None):
    options = {"block_elements": block_elements} if block_elements else {}
    ours = values_and_grads(
        lambda: lm_head_logprobs(hidden, weight, tokens, temperature, entropy=entropy, compute_dtype=dtype, **options),
        hidden, weight, upstream, entropy)
    plain = values_and_grads(lambda: plain_route(hidden, weight, tokens, temperature, dtype),
                             hidden, weight, upstream, entropy)
    for name, mine, theirs in zip(("logp", "entropy", "grad hidden", "grad weight"), ours, plain):
        if mine is not None:
            assert mine.dtype == theirs.dtype, name
            assert_close_to_scale(mine, theirs, tolerance, name)
    return ours


@pytest.mark.parametrize("entropy", [False, True])
@pytest.mark.parametrize("block_elements", [7 * 11, 3 * 7, 1])  # one block; 3 columns (an uneven last block); 1
def test_float64_matches_the_plain_route(entropy, block_elements):
    hidden, weight, tokens, upstream = inputs(7, 5, 11, torch.float64, scale=2.0)
    compare(hidden, weight, tokens, upstream, 0.7, entropy, 1e-12, block_elements=block_elements)


def test_gradcheck_float64():
    hidden, weight, tokens, _ = inputs(4, 3, 9, torch.float64)
    for entropy in (False, True):
        def both(h, w, entropy=entropy):
            logp, ent = lm_head_logprobs(h, w, tokens, 0.8, entropy=entropy, block_elements=8)
            return (logp, ent) if entropy else logp

        assert torch.autograd.gradcheck(both, (hidden, weight))


def test_hand_values():
    # Two tokens, logits 0 and ln 3: probabilities 1/4, 3/4; T = 0.5 squares the odds: 1/10, 9/10.
    hidden, weight = torch.tensor([[1.0]]), torch.tensor([[0.0], [math.log(3.0)]])
    logp, ent = lm_head_logprobs(hidden, weight, torch.tensor([1]), entropy=True, block_elements=1)
    assert logp.item() == pytest.approx(math.log(0.75))
    assert ent.item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert lm_head_logprobs(hidden, weight, torch.tensor([1]), 0.5)[0].item() == pytest.approx(math.log(0.9))


@pytest.mark.parametrize("entropy", [False, True], ids=["logp", "logp+entropy"])
def test_real_vocabulary_float32(entropy):
    """V = 151,936 on a narrow head (H = 64), 300 tokens, T = 0.6: peaked rows and the default block size, so the
    vocabulary is walked in 3 blocks, the last one shorter. Measured against the plain route in float64: the plain
    route in float32 is itself off by up to 1.1e-4 in entropy on an AVX2 CPU, 15 times this route's error."""
    hidden, weight, tokens, upstream = inputs(300, 64, REAL_VOCAB, torch.float32, seed=1, scale=0.4)
    ours = values_and_grads(lambda: lm_head_logprobs(hidden, weight, tokens, 0.6, entropy=entropy),
                            hidden, weight, upstream, entropy)
    hidden64, weight64 = (x.detach().double().requires_grad_() for x in (hidden, weight))
    exact = values_and_grads(lambda: plain_route(hidden64, weight64, tokens, 0.6), hidden64, weight64,
                             upstream.double(), entropy)
    for name, mine, truth in zip(("logp", "entropy", "grad hidden", "grad weight"), ours, exact):
        if mine is not None:
            assert mine.dtype == torch.float32, name
            assert_close_to_scale(mine, truth, 2e-5, name)
    logp, ent, _, _ = ours
    assert float(logp.min()) < -30  # the sampled tokens are mostly unlikely: log-probs far from the lse
    if entropy:
        assert 0.5 < float(ent.mean()) < 8  # peaked but not one-hot


@pytest.mark.parametrize("entropy", [False, True], ids=["logp", "logp+entropy"])
def test_bfloat16_compute_matches_the_same_bfloat16_logits(entropy):
    """float32 hidden states and weight, bfloat16 logits: the values are those of the same bfloat16 logits (reduced
    in float64 here: a float32 sum of 151,936 terms is itself off by ~5e-5); the gradients those of the plain
    bfloat16 route up to bfloat16 rounding of the products."""
    hidden, weight, tokens, upstream = inputs(200, 64, REAL_VOCAB, torch.float32, seed=2, scale=0.4)
    with torch.no_grad():
        ours = lm_head_logprobs(hidden, weight, tokens, 0.6, entropy=entropy, compute_dtype=torch.bfloat16)
        plain = plain_route(hidden, weight, tokens, 0.6, torch.bfloat16, acc=torch.float64)
    assert ours[0].dtype == torch.float32
    assert_close_to_scale(ours[0], plain[0], 1e-5, "logp")
    if entropy:
        assert_close_to_scale(ours[1], plain[1], 1e-5, "entropy")
    _, _, grad_h, grad_w = compare(hidden, weight, tokens, upstream, 0.6, entropy, 1e-2, dtype=torch.bfloat16)
    assert grad_h.dtype == grad_w.dtype == torch.float32


def test_frozen_weight_and_no_grad():
    hidden, weight, tokens, _ = inputs(5, 4, 13, torch.float32)
    weight = weight.detach()
    logp, _ = lm_head_logprobs(hidden, weight, tokens, entropy=True, block_elements=10)
    (grad_h,) = torch.autograd.grad(logp.sum(), hidden)
    (expected,) = torch.autograd.grad(plain_route(hidden, weight, tokens, 1.0)[0].sum(), hidden)
    torch.testing.assert_close(grad_h, expected)
    with torch.no_grad():
        logp, ent = lm_head_logprobs(hidden, weight, tokens)
    assert ent is None and not logp.requires_grad
    assert lm_head_logprobs(hidden[:0], weight, tokens[:0], entropy=True)[1].shape == (0,)


def test_validation():
    hidden, weight, tokens, _ = inputs(3, 4, 5, torch.float32)
    with pytest.raises(ValueError, match="temperature"):
        lm_head_logprobs(hidden, weight, tokens, 0.0)
    with pytest.raises(ValueError, match="must be"):
        lm_head_logprobs(hidden, weight[:, :3], tokens)
    with pytest.raises(ValueError, match="one per row"):
        lm_head_logprobs(hidden, weight, tokens[:2])
    with pytest.raises(ValueError, match="block_elements"):
        lm_head_logprobs(hidden, weight, tokens, block_elements=0)
