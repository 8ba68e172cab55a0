"""GRPO losses: KL estimators, the clipped surrogate, loss aggregation, importance-sampling correction."""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor

# The one spelling of these names: the trainer's config takes its choices from these Literals.
AggMode = Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
KLKind = Literal["k1", "k2", "k3", "low_var_kl"]
AGG_MODES: tuple[str, ...] = get_args(AggMode)

# Beyond |log ratio| = 20 every clip has long since bitten; capping keeps exp() finite in float32.
MAX_LOG_RATIO = 20.0


def _masked_mean(x: Tensor, m: Tensor) -> float:
    return float(torch.where(m, x, 0).sum() / m.sum().clamp(min=1))


def kl_penalty(logp: Tensor, ref_logp: Tensor, kind: KLKind = "k3", clamp: float | None = None) -> Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from tokens sampled from π (Schulman's k1, k2, k3).

    k1 = logp − ref (unbiased, can be negative); k2 = ½(logp − ref)²; k3 = low_var_kl = exp(ref − logp) −
    (ref − logp) − 1 (unbiased, always ≥ 0, low variance; ref − logp is capped at 20 so it stays finite).
    ``clamp`` bounds the result to [−clamp, clamp] (verl uses 10 for k3); by default nothing is clamped. The
    reference is treated as a constant.
    """
    log_ratio = ref_logp.detach() - logp
    if kind == "k1":
        kl = -log_ratio
    elif kind == "k2":
        kl = 0.5 * log_ratio.square()
    elif kind in ("k3", "low_var_kl"):
        # expm1 rather than exp(x) - 1: near x = 0 the latter rounds below x and the estimate goes negative.
        x = log_ratio.clamp(max=MAX_LOG_RATIO)
        kl = torch.expm1(x) - x
    else:
        raise ValueError(f"unknown KL estimator {kind!r}")
    return kl if clamp is None else kl.clamp(-clamp, clamp)


def aggregate(
    loss_per_token: Tensor,
    mask: Tensor,
    mode: AggMode = "token-mean",
    *,
    global_tokens: float | Tensor | None = None,
    global_seqs: float | Tensor | None = None,
    max_response_length: int | None = None,
) -> Tensor:
    """Reduce a (B, T) per-token loss to a scalar; masked-out positions never contribute (not even NaN).

    - ``"token-mean"`` (DAPO): Σ loss / token count. Long answers weigh in proportion to their length.
    - ``"seq-mean-token-mean"`` (original GRPO): mean over each sequence's tokens, then over sequences.
    - ``"seq-mean-token-sum"``: sum over each sequence's tokens, then mean over sequences.
    - ``"seq-mean-token-sum-norm"`` (Dr. GRPO): each sequence's token sum / ``max_response_length`` (default:
      the padded width T, which is only right if every batch is padded to the configured maximum), then the mean
      over sequences.

    Sequences without a single valid token are not counted. Gradient accumulation: a trainer that splits a
    mini-batch into micro-batches and sums their gradients gets exactly the full mini-batch gradient when every
    micro-batch call is given the mini-batch's counts: ``global_tokens`` = valid tokens in the mini-batch (token
    modes) and ``global_seqs`` = sequences with a valid token in the mini-batch (seq modes), i.e.
    ``**loss_normalizers(mini_batch_mask)``, plus a fixed ``max_response_length`` for the Dr. GRPO mode.
    The micro-batch losses then add up to the full-batch loss. Under data parallelism that averages gradients
    over W ranks, all-reduce (sum) those counts and divide them by W.
    """
    m = mask.bool()
    total = torch.where(m, loss_per_token, 0)
    if mode == "token-mean":
        count = m.sum() if global_tokens is None else global_tokens
        return total.sum() / torch.as_tensor(count, dtype=total.dtype, device=total.device).clamp(min=1)
    per_seq = total.sum(dim=-1)
    if mode == "seq-mean-token-mean":
        per_seq = per_seq / m.sum(dim=-1).clamp(min=1)
    elif mode == "seq-mean-token-sum-norm":
        per_seq = per_seq / (max_response_length if max_response_length is not None else mask.shape[-1])
    elif mode != "seq-mean-token-sum":
        raise ValueError(f"unknown aggregation mode {mode!r}; expected one of {AGG_MODES}")
    count = m.any(dim=-1).sum() if global_seqs is None else global_seqs
    return per_seq.sum() / torch.as_tensor(count, dtype=total.dtype, device=total.device).clamp(min=1)


def loss_normalizers(mask: Tensor) -> dict[str, int]:
    """Counts of a whole mini-batch to pass to every micro-batch's ``aggregate`` (see its docstring)."""
    m = mask.bool()
    return {"global_tokens": int(m.sum()), "global_seqs": int(m.any(dim=-1).sum())}


def clipped_surrogate(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Per-token PPO/GRPO loss −min(r·A, clip(r, 1 − clip_low, 1 + clip_high)·A), r = exp(logp − old_logp).

    ``clip_high`` > ``clip_low`` is DAPO's clip-higher (e.g. 0.28), which leaves room for unlikely tokens to
    grow. ``dual_clip`` = c > 1 also caps the loss of a negative-advantage token at −c·A, so a token whose ratio
    has exploded cannot dominate the update. ``advantages`` is (B,) or (B, T). Clip fractions count valid tokens
    whose gradient the clip switched off: low (A < 0, r < 1 − clip_low), high (A > 0, r > 1 + clip_high), dual
    (A < 0, r > c). ``approx_kl`` is the k3 estimate of KL(π_old ‖ π) (``approx_kl_k1``: the plain mean log-ratio).
    """
    if not 0 <= clip_low < 1 or clip_high < 0:
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    if dual_clip is not None and dual_clip <= 1:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    adv = advantages.detach()
    adv = adv.unsqueeze(-1) if adv.dim() == logp.dim() - 1 else adv
    log_ratio = (logp - old_logp.detach()).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    ratio = log_ratio.exp()
    loss = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip_low, 1 + clip_high))
    if dual_clip is not None:
        loss = torch.where(adv < 0, torch.minimum(loss, -adv * dual_clip), loss)
    with torch.no_grad():
        m = mask.bool()
        low, high = (adv < 0) & (ratio < 1 - clip_low), (adv > 0) & (ratio > 1 + clip_high)
        dual = (adv < 0) & (ratio > dual_clip) if dual_clip is not None else torch.zeros_like(m)
        valid = ratio[m]
        metrics = {
            "clip_frac": _masked_mean((low | high | dual).float(), m),
            "clip_frac_low": _masked_mean(low.float(), m),
            "clip_frac_high": _masked_mean(high.float(), m),
            "clip_frac_dual": _masked_mean(dual.float(), m),
            "approx_kl": _masked_mean(torch.expm1(log_ratio) - log_ratio, m),
            "approx_kl_k1": _masked_mean(-log_ratio, m),
            "ratio_mean": _masked_mean(ratio, m),
            "ratio_max": float(valid.max()) if valid.numel() else 0.0,
            "ratio_min": float(valid.min()) if valid.numel() else 0.0,
        }
    return loss, metrics


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_kind: KLKind = "k3",
    kl_clamp: float | None = None,
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
    is_weights: Tensor | None = None,
    agg: AggMode = "token-mean",
    global_tokens: float | Tensor | None = None,
    global_seqs: float | Tensor | None = None,
    max_response_length: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The GRPO objective: per token, surrogate × is_weights + kl_coef·KL − entropy_coef·entropy, then aggregated.

    ``is_weights`` (e.g. from ``truncated_is_weights``) reweights only the policy-gradient term, as verl does.
    ``ref_logp`` is needed when ``kl_coef`` ≠ 0; when given, the KL is reported even at coefficient 0. ``entropy``
    is per token (``lm_head_logprobs(..., entropy=True)``). Aggregation arguments as in ``aggregate``. Metrics: the
    surrogate's, ``pg_loss`` (the policy term alone, aggregated the same way), ``loss``, and ``kl`` / ``entropy``
    token means.
    """
    if kl_coef and ref_logp is None:
        raise ValueError("kl_coef != 0 needs ref_logp")
    if entropy_coef and entropy is None:
        raise ValueError("entropy_coef != 0 needs entropy")
    pg, metrics = clipped_surrogate(
        logp, old_logp, advantages, mask, clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip
    )
    if is_weights is not None:
        pg = pg * is_weights.detach()
    m, per_token = mask.bool(), pg
    # Terms with a zero coefficient stay out entirely: 0 · inf would turn an overflowed estimate into NaN.
    if ref_logp is not None:
        kl = kl_penalty(logp, ref_logp, kl_kind, kl_clamp)
        metrics["kl"] = _masked_mean(kl.detach(), m)
        if kl_coef:
            per_token = per_token + kl_coef * kl
    if entropy is not None:
        metrics["entropy"] = _masked_mean(entropy.detach(), m)
        if entropy_coef:
            per_token = per_token - entropy_coef * entropy
    norms = {"global_tokens": global_tokens, "global_seqs": global_seqs, "max_response_length": max_response_length}
    loss = aggregate(per_token, mask, agg, **norms)
    with torch.no_grad():
        metrics["pg_loss"] = float(aggregate(pg, mask, agg, **norms))
    metrics["loss"] = float(loss.detach())
    return loss, metrics


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    is_weights: Tensor | None = None,
    agg: AggMode = "token-mean",
    global_tokens: float | Tensor | None = None,
    global_seqs: float | Tensor | None = None,
    max_response_length: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The clipped surrogate alone, aggregated: ``grpo_loss`` without KL or entropy terms."""
    return grpo_loss(
        logp,
        old_logp,
        advantages,
        mask,
        clip_low=clip_low,
        clip_high=clip_high,
        dual_clip=dual_clip,
        is_weights=is_weights,
        agg=agg,
        global_tokens=global_tokens,
        global_seqs=global_seqs,
        max_response_length=max_response_length,
    )


def truncated_is_weights(
    old_logp: Tensor, rollout_logp: Tensor, mask: Tensor, *, cap: float = 2.0
) -> tuple[Tensor, dict[str, float]]:
    """Per-token truncated importance weights min(exp(old_logp − rollout_logp), cap), detached.

    The rollout engine (vLLM, bf16 kernels) and the trainer disagree slightly on log-probs, so samples are
    off-policy for the trainer's old policy; these weights correct that, truncated so one outlier cannot blow up
    the update. ``mismatch_kl`` is the k3 estimate of KL(π_rollout ‖ π_old) from the rollout's samples.
    """
    if cap <= 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    log_w = (old_logp - rollout_logp).detach().clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    weights = log_w.clamp(max=math.log(cap)).exp()  # = min(exp(log_w), cap), without overflowing exp
    m = mask.bool()
    metrics = {
        "tis/weight_mean": _masked_mean(weights, m),
        "tis/capped_frac": _masked_mean((log_w > math.log(cap)).float(), m),
        "tis/mismatch_kl": _masked_mean(torch.expm1(log_w) - log_w, m),
    }
    return weights, metrics
