"""Token log-probabilities and entropies straight from the final hidden states, through the LM head, without ever
holding the (tokens × vocab) logits.

With z = h Wᵀ / T (hidden states h (N, H), head weight W (V, H), temperature T), p = softmax(z) and
lse = logsumexp(z): log p(token) = z_token − lse and H = −Σ p log p. At DeepScaleR's sizes (V = 151,936, up to
24k response tokens in a micro-batch) the logits alone are 15 GB in float32; here the vocabulary is walked in
blocks of columns, each block's logits computed, reduced to a few numbers per token and dropped, in the forward
and again (recomputed) in the backward. Blocks split the vocabulary rather than the tokens so that each block's
slice of the weight gradient is one matmul over all tokens, written once: no (V, H) partial sums to accumulate.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# Logits per block (tokens × vocabulary columns): 2**24, 64 MiB in float32, whatever the sizes. Not smaller: on a
# CPU, glibc serves blocks under 32 MiB from its heap, which keeps them once freed (2**22-element blocks left 3.9 GB
# of RSS behind at 8,192 tokens of a 151,936 vocabulary), while larger ones are mapped and unmapped.
BLOCK_ELEMENTS = 1 << 24


def _block_logits(h: Tensor, weight: Tensor, start: int, stop: int, temperature: float, acc: torch.dtype) -> Tensor:
    """z[:, start:stop] = h W[start:stop]ᵀ / T: the matmul in h's (compute) dtype, as the model's own head would
    compute it (bfloat16 logits under bfloat16 compute), then in the accumulation dtype ``acc``."""
    return (h @ weight[start:stop].to(h.dtype).T).to(acc).div_(temperature)


def _block_columns(tokens: Tensor, start: int, width: int) -> tuple[Tensor, Tensor]:
    """Whether each token falls in the block of columns [start, start + width), and its column there (0 if not),
    as an (N, 1) index."""
    inside = (tokens >= start) & (tokens < start + width)
    return inside, torch.where(inside, tokens - start, 0)[:, None]


def _picked_logits(z: Tensor, tokens: Tensor, start: int) -> Tensor:
    """z[i, tokens[i] − start] for the rows whose token falls in this block of columns, 0 for the others."""
    inside, column = _block_columns(tokens, start, z.shape[1])
    return torch.where(inside, z.gather(1, column)[:, 0], 0)


def _block_entropy(z: Tensor, lse: Tensor) -> Tensor:
    """Entropy −Σ q log q of each row of the softmax within this block alone, q = exp(z − lse); overwrites z."""
    logq = z.sub_(lse[:, None])
    return -(logq.exp().mul_(logq)).sum(-1)


def _merge_entropies(log_weights: Tensor, entropies: Tensor) -> Tensor:
    """Entropy of the whole softmax from each block's own entropy H_b (blocks, N) and mass w_b = exp(log_weights):
    the chain rule of entropy, H = Σ_b w_b (H_b − log w_b). Every term is small where H is, so a peaked
    distribution keeps its precision (unlike lse − Σ p z, a difference of two large numbers)."""
    return (log_weights.exp() * (entropies - log_weights)).sum(0)


def _logit_grads(z: Tensor, tokens: Tensor, start: int, lse: Tensor, grad_logp: Tensor, grad_entropy: Tensor | None,
                 entropy: Tensor | None) -> Tensor:
    """d loss / d z for one block of columns, overwriting z.

    With p = softmax(z): d log p(token) / dz = onehot(token) − p, and dH/dz_j = −p_j (log p_j + H) (from
    H = −Σ p log p and dp_i/dz_j = p_i (δ_ij − p_j)). So for upstream gradients a (log-prob) and b (entropy):
    a (onehot − p) − b p (log p + H)."""
    logp = z.sub_(lse[:, None])
    p = logp.exp()
    if grad_entropy is None:
        grads = p.mul_(-grad_logp[:, None])
    else:
        grads = logp.add_(entropy[:, None]).mul_(grad_entropy[:, None]).add_(grad_logp[:, None]).mul_(p).neg_()
    inside, column = _block_columns(tokens, start, z.shape[1])
    return grads.scatter_add_(1, column, torch.where(inside, grad_logp, 0)[:, None])


class _HeadLogProbs(torch.autograd.Function):
    """Log-probs (and entropies) of tokens from hidden states and the LM-head weight, block by block of the
    vocabulary. Saved for backward: the inputs and two floats per token (lse and, with entropy, H)."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, tokens: Tensor, temperature: float, want_entropy: bool,
                dtype: torch.dtype, block: int) -> tuple[Tensor, Tensor]:
        h, tokens = hidden.to(dtype), tokens.long()
        acc = torch.promote_types(dtype, torch.float32)
        picked = h.new_zeros(h.shape[0], dtype=acc)
        lses, entropies = [], []
        for start in range(0, weight.shape[0], block):
            z = _block_logits(h, weight, start, start + block, temperature, acc)
            picked += _picked_logits(z, tokens, start)
            lses.append(torch.logsumexp(z, -1))
            if want_entropy:
                entropies.append(_block_entropy(z, lses[-1]))
        block_lse = torch.stack(lses)
        lse = torch.logsumexp(block_lse, 0)
        entropy = _merge_entropies(block_lse - lse, torch.stack(entropies)) if want_entropy else lse.new_empty(0)
        ctx.save_for_backward(hidden, weight, tokens, lse, entropy)
        ctx.temperature, ctx.want_entropy, ctx.dtype, ctx.block = temperature, want_entropy, dtype, block
        if not want_entropy:
            ctx.mark_non_differentiable(entropy)
        return picked - lse, entropy

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_logp: Tensor, grad_entropy: Tensor) -> tuple[Tensor | None, ...]:
        hidden, weight, tokens, lse, entropy = ctx.saved_tensors
        h, block, temperature = hidden.to(ctx.dtype), ctx.block, ctx.temperature
        # z = logits / T, so d loss / d logits = (d loss / dz) / T: fold 1/T into the upstream gradients.
        grad_logp = grad_logp.to(lse.dtype) / temperature
        grad_entropy = grad_entropy.to(lse.dtype) / temperature if ctx.want_entropy else None
        grad_h = torch.zeros(h.shape, dtype=lse.dtype, device=h.device) if ctx.needs_input_grad[0] else None
        grad_w = torch.empty_like(weight) if ctx.needs_input_grad[1] else None
        for start in range(0, weight.shape[0], block):
            z = _block_logits(h, weight, start, start + block, temperature, lse.dtype)
            grads = _logit_grads(z, tokens, start, lse, grad_logp, grad_entropy, entropy).to(ctx.dtype)
            if grad_h is not None:
                grad_h += grads @ weight[start : start + block].to(ctx.dtype)
            if grad_w is not None:
                grad_w[start : start + block] = grads.T @ h
        grad_h = grad_h.to(hidden.dtype) if grad_h is not None else None
        return grad_h, grad_w, None, None, None, None, None


def lm_head_logprobs(
    hidden: Tensor, weight: Tensor, tokens: Tensor, temperature: float = 1.0, *, entropy: bool = False,
    compute_dtype: torch.dtype | None = None, block_elements: int = BLOCK_ELEMENTS,
) -> tuple[Tensor, Tensor | None]:
    """Log-probabilities of ``tokens`` (N,) under softmax(hidden Wᵀ / temperature), and with ``entropy`` the
    entropy of that distribution, per token; both float32 (float64 for float64 compute).

    ``hidden`` (N, H) are final hidden states (after the final norm), ``weight`` (V, H) the LM head's (tied or
    not; it gets its gradient). The logits are computed in ``compute_dtype`` (default: hidden's; the weight is cast
    a block at a time), so bfloat16 gives the bfloat16 logits the model's own head would, reduced in float32.
    Differentiable w.r.t. hidden and weight. Memory: ``block_elements`` logits at a time, never (N, V).
    Use the rollout's sampling temperature so the log-probs describe the distribution that was sampled.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to define log-probs, got {temperature}")
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)} must be (N, H) and (V, H)")
    if tokens.shape != hidden.shape[:1]:
        raise ValueError(f"tokens {tuple(tokens.shape)} must be one per row of hidden {tuple(hidden.shape)}")
    if block_elements < 1:
        raise ValueError(f"block_elements must be >= 1, got {block_elements}")
    block = max(1, block_elements // max(hidden.shape[0], 1))
    logp, entropies = _HeadLogProbs.apply(hidden, weight, tokens, float(temperature), entropy,
                                          compute_dtype or hidden.dtype, block)
    return logp, entropies if entropy else None
