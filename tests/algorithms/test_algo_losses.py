"""KL estimators, clipped surrogate, aggregation and the combined GRPO loss against golden values."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from deepscaler.algorithms import (
    AGG_MODES,
    aggregate,
    clipped_surrogate,
    group_advantages,
    grpo_loss,
    kl_penalty,
    lengths_to_mask,
    loss_normalizers,
    policy_loss,
    truncated_is_weights,
)

# One group of 4 from TRL's GRPO loss: rewards [1, 0, 0, 1], response lengths [3, 2, 4, 1], padding zeros.
LOGP = [[-0.5, -1.2, -0.3, 0], [-2.0, -0.1, 0, 0], [-0.7, -0.9, -1.5, -0.2], [-0.05, 0, 0, 0]]
OLD = [[-0.6, -1.0, -0.3, 0], [-1.5, -0.2, 0, 0], [-0.7, -1.3, -1.4, -0.4], [-0.3, 0, 0, 0]]
REF = [[-0.4, -1.1, -0.5, 0], [-1.8, -0.3, 0, 0], [-0.9, -0.8, -1.2, -0.1], [-0.2, 0, 0, 0]]
TRL_GOLDEN = {  # (beta, agg): loss, as computed by TRL's own code (loss_type grpo / bnpo / dr_grpo)
    (0.0, "seq-mean-token-mean"): -0.031936,
    (0.0, "token-mean"): 0.200825,
    (0.0, "seq-mean-token-sum-norm"): 0.125516,
    (0.04, "seq-mean-token-mean"): -0.031334,
    (0.04, "token-mean"): 0.201461,
    (0.04, "seq-mean-token-sum-norm"): 0.125913,
}


@pytest.mark.parametrize(("beta", "agg"), list(TRL_GOLDEN))
def test_trl_golden_losses(beta, agg):
    adv, _ = group_advantages(torch.tensor([1.0, 0, 0, 1]), 4, eps=1e-4)
    torch.testing.assert_close(adv, torch.tensor([0.865875, -0.865875, -0.865875, 0.865875]), atol=1e-6, rtol=0)
    mask = lengths_to_mask(torch.tensor([3, 2, 4, 1]), 4)
    loss, metrics = grpo_loss(
        torch.tensor(LOGP), torch.tensor(OLD), adv, mask, clip_low=0.2, clip_high=0.28,
        ref_logp=torch.tensor(REF), kl_coef=beta, agg=agg, max_response_length=4,
    )  # fmt: skip
    assert loss.item() == pytest.approx(TRL_GOLDEN[(beta, agg)], abs=1e-5)
    assert metrics["loss"] == pytest.approx(loss.item())
    assert metrics["pg_loss"] == pytest.approx(TRL_GOLDEN[(0.0, agg)], abs=1e-5)


def test_on_policy_gradient_is_minus_advantage_over_token_count():
    adv = torch.tensor([1.0, -2.0, 0.5, 0.0])
    mask = lengths_to_mask(torch.tensor([3, 2, 4, 1]), 4)
    logp = torch.tensor(LOGP, requires_grad=True)
    loss, metrics = policy_loss(logp, logp.detach(), adv, mask)
    loss.backward()
    expected = torch.where(mask, -adv[:, None] / 10, 0.0)
    torch.testing.assert_close(logp.grad, expected)
    assert metrics["clip_frac"] == 0.0 and metrics["ratio_mean"] == 1.0 and metrics["approx_kl"] == 0.0


def test_kl_estimators_hand_values():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])  # ref - logp = -0.5, 1
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), torch.tensor([0.5, -1.0]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k2"), torch.tensor([0.125, 0.5]))
    k3 = torch.tensor([0.10653065971263342, 0.7182818284590451])  # e^x - x - 1
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), k3)
    torch.testing.assert_close(kl_penalty(logp, ref, "low_var_kl"), k3)
    torch.testing.assert_close(kl_penalty(logp, ref, "k3", clamp=0.5), torch.tensor([0.10653066, 0.5]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k1", clamp=0.6), torch.tensor([0.5, -0.6]))
    with pytest.raises(ValueError):
        kl_penalty(logp, ref, "k4")


def test_k3_gradient_and_reference_is_constant():
    logp, ref = torch.tensor([-2.0], requires_grad=True), torch.tensor([-1.0], requires_grad=True)
    kl_penalty(logp, ref, "k3").sum().backward()
    assert logp.grad.item() == pytest.approx(1 - math.e)  # d/dlogp of e^(ref-logp) - (ref-logp) - 1
    assert ref.grad is None


@given(st.lists(st.tuples(st.floats(-60, 0, width=32), st.floats(-60, 0, width=32)), min_size=1, max_size=32))
def test_k3_is_never_negative(pairs):
    logp, ref = torch.tensor(pairs).T
    kl = kl_penalty(logp, ref, "k3")
    assert torch.isfinite(kl).all() and (kl >= 0).all()


def surrogate_case():
    """Row 0: six valid tokens with ratios .7 .9 1.1 1.3 | .7 1.3 (A = +1 ×4 then −1 ×2); row 1: ratio 1 then pad."""
    ratios = torch.tensor([[0.7, 0.9, 1.1, 1.3, 0.7, 1.3], [1.0, 50.0, 1, 1, 1, 1]])
    adv = torch.tensor([[1.0, 1, 1, 1, -1, -1], [1, 1, 1, 1, 1, 1]])
    return ratios.log(), torch.zeros(2, 6), adv, lengths_to_mask(torch.tensor([6, 1]), 6)


def test_clip_fractions_and_ratio_stats():
    logp, old, adv, mask = surrogate_case()
    loss, metrics = clipped_surrogate(logp, old, adv, mask, clip_low=0.2, clip_high=0.28)
    torch.testing.assert_close(loss[0], torch.tensor([-0.7, -0.9, -1.1, -1.28, 0.8, 1.3]))
    assert loss[1, 0].item() == pytest.approx(-1.0)
    assert metrics["clip_frac_low"] == pytest.approx(1 / 7)  # ratio .7 with A < 0
    assert metrics["clip_frac_high"] == pytest.approx(1 / 7)  # ratio 1.3 with A > 0; the padded 50 is ignored
    assert metrics["clip_frac"] == pytest.approx(2 / 7)
    assert metrics["clip_frac_dual"] == 0.0
    assert (metrics["ratio_mean"], metrics["ratio_max"], metrics["ratio_min"]) == pytest.approx((1.0, 1.3, 0.7))
    logs = [math.log(r) for r in (0.7, 0.9, 1.1, 1.3, 0.7, 1.3, 1.0)]
    assert metrics["approx_kl_k1"] == pytest.approx(-sum(logs) / 7)
    assert metrics["approx_kl"] == pytest.approx(sum(math.exp(x) - 1 - x for x in logs) / 7)
    sym, _ = clipped_surrogate(logp, old, adv, mask, clip_low=0.2, clip_high=0.2)
    # a ratio above 1 + ε is clipped only where A > 0
    assert (sym[0, 3].item(), sym[0, 5].item()) == pytest.approx((-1.2, 1.3))
    with pytest.raises(ValueError):
        clipped_surrogate(logp, old, adv, mask, dual_clip=1.0)


def test_dual_clip_caps_negative_advantage_loss():
    logp = torch.tensor([[5.0, 2.0, 0.5, 5.0]]).log().requires_grad_()
    adv, mask = torch.tensor([[-1.0, -1, -1, 1]]), torch.ones(1, 4, dtype=torch.bool)
    plain, _ = clipped_surrogate(logp, torch.zeros(1, 4), adv, mask, clip_high=0.28)
    torch.testing.assert_close(plain, torch.tensor([[5.0, 2.0, 0.8, -1.28]]))
    loss, metrics = clipped_surrogate(logp, torch.zeros(1, 4), adv, mask, clip_high=0.28, dual_clip=3.0)
    torch.testing.assert_close(loss, torch.tensor([[3.0, 2.0, 0.8, -1.28]]))
    assert (metrics["clip_frac_dual"], metrics["clip_frac_low"], metrics["clip_frac_high"]) == (0.25, 0.25, 0.25)
    assert metrics["clip_frac"] == 0.75
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 2.0, 0.0, 0.0]]))  # only the unclipped token learns


def test_aggregation_modes_hand_values_ignore_padding_even_nan():
    nan = float("nan")
    loss = torch.tensor([[1.0, 2, 3, nan], [4, nan, nan, nan], [nan, nan, nan, nan]])
    mask = lengths_to_mask(torch.tensor([3, 1, 0]), 4)  # the empty row is not counted as a sequence
    assert aggregate(loss, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(loss, mask, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    assert aggregate(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx((6 / 4 + 4 / 4) / 2)
    assert aggregate(loss, mask, "seq-mean-token-sum-norm", max_response_length=8).item() == pytest.approx(0.625)
    assert aggregate(loss, mask, "token-mean", global_tokens=8).item() == pytest.approx(1.25)
    assert aggregate(loss, mask, "seq-mean-token-sum", global_seqs=5).item() == pytest.approx(2.0)
    assert aggregate(loss, torch.zeros_like(mask), "token-mean").item() == 0.0
    with pytest.raises(ValueError):
        aggregate(loss, mask, "sum")


def random_batch(seed: int, rows: int = 8, width: int = 6):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, width + 1, (rows,), generator=gen)
    lengths[2] = 0  # a sequence left with no valid token (e.g. filtered as truncated)
    return gen, lengths_to_mask(lengths, width), lengths


@pytest.mark.parametrize("mode", AGG_MODES)
def test_gradient_accumulation_matches_full_batch(mode):
    gen, mask, lengths = random_batch(0)
    per_token = torch.randn(8, 6, generator=gen, requires_grad=True)
    full = aggregate(per_token, mask, mode, max_response_length=6)
    (g_full,) = torch.autograd.grad(full, per_token)
    norms = loss_normalizers(mask)
    micro = []
    for lo, hi in ((0, 3), (3, 5), (5, 8)):
        width = int(lengths[lo:hi].max())  # each micro-batch padded only to its own longest response
        micro.append(aggregate(per_token[lo:hi, :width], mask[lo:hi, :width], mode, max_response_length=6, **norms))
    (g_micro,) = torch.autograd.grad(sum(micro), per_token)
    torch.testing.assert_close(sum(micro), full)
    torch.testing.assert_close(g_micro, g_full)
    # data parallel: two ranks whose gradients get averaged pass the global counts divided by the world size
    halves = {k: v / 2 for k, v in norms.items()}
    rank_rows = (slice(0, 4), slice(4, 8))
    ranks = [aggregate(per_token[s], mask[s], mode, max_response_length=6, **halves) for s in rank_rows]
    torch.testing.assert_close((ranks[0] + ranks[1]) / 2, full)


def test_micro_batches_without_normalizers_would_be_wrong():
    gen, mask, _ = random_batch(1)
    per_token = torch.randn(8, 6, generator=gen)
    for mode in ("token-mean", "seq-mean-token-mean"):
        naive = aggregate(per_token[:4], mask[:4], mode) + aggregate(per_token[4:], mask[4:], mode)
        assert not torch.allclose(naive, aggregate(per_token, mask, mode))


def test_grpo_loss_accumulates_over_micro_batches_with_kl():
    gen, mask, _ = random_batch(2)
    logp = (-torch.rand(8, 6, generator=gen)).requires_grad_()
    old, ref = logp.detach() + 0.1 * torch.randn(8, 6, generator=gen), -torch.rand(8, 6, generator=gen)
    adv = torch.randn(8, generator=gen)
    kw = {"clip_high": 0.28, "kl_coef": 0.04, "agg": "token-mean"}
    full, _ = grpo_loss(logp, old, adv, mask, ref_logp=ref, **kw)
    parts = [
        grpo_loss(logp[s], old[s], adv[s], mask[s], ref_logp=ref[s], **kw, **loss_normalizers(mask))[0]
        for s in (slice(0, 5), slice(5, 8))
    ]
    torch.testing.assert_close(sum(parts), full)


def test_entropy_bonus_is_weights_and_kl_reporting():
    logp, old, adv, mask = surrogate_case()
    base, _ = policy_loss(logp, old, adv, mask)
    entropy = torch.full((2, 6), 2.0)
    loss, metrics = grpo_loss(logp, old, adv, mask, entropy=entropy, entropy_coef=0.01, ref_logp=old, kl_kind="k1")
    assert loss.item() == pytest.approx(base.item() - 0.02)  # KL reported, not added (coefficient 0)
    assert (metrics["entropy"], metrics["kl"]) == (2.0, pytest.approx(-metrics["approx_kl_k1"]))
    doubled, _ = policy_loss(logp, old, adv, mask, is_weights=torch.full((2, 6), 2.0))
    assert doubled.item() == pytest.approx(2 * base.item())
    with pytest.raises(ValueError):
        grpo_loss(logp, old, adv, mask, kl_coef=0.1)
    with pytest.raises(ValueError):
        grpo_loss(logp, old, adv, mask, entropy_coef=0.1)


def test_truncated_is_weights():
    old, rollout = torch.tensor([[-1.0, -1.0, -1.0, -1.0]]), torch.tensor([[-1.5, -0.5, -1.0, -90.0]])
    mask = torch.tensor([[True, True, True, False]])  # the padded token's wild ratio is not reported
    weights, metrics = truncated_is_weights(old, rollout, mask, cap=1.5)
    torch.testing.assert_close(weights[:, :3], torch.tensor([[1.5, 0.6065306597126334, 1.0]]))
    assert weights[0, 3].item() == pytest.approx(1.5) and not weights.requires_grad
    assert metrics["tis/capped_frac"] == pytest.approx(1 / 3)
    assert metrics["tis/weight_mean"] == pytest.approx((1.5 + 0.6065306597126334 + 1) / 3)
    assert metrics["tis/mismatch_kl"] == pytest.approx(0.08508397680425388)
