"""Token log-probabilities and entropies from logits already held, without a (tokens × vocab) float32 copy kept for
backward. The trainer holds no logits (it goes from hidden states through ``lm_head_logprobs``); these are for logits
in hand, and the route that bench/bench_logprob_memory.py measures it against."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# Rows of logits turned into float32 at once: 2**24 floats = 64 MiB, whatever the vocabulary size.
CHUNK_ELEMENTS = 1 << 24


def _chunk_rows(vocab: int, chunk_tokens: int | None) -> int:
    if chunk_tokens is not None and chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    return chunk_tokens or max(1, CHUNK_ELEMENTS // max(vocab, 1))


class _TokenLogProbs(torch.autograd.Function):
    """log_softmax(z / T)[token] that saves only the logits and one logsumexp per row for backward.

    The plain route (log_softmax then gather) keeps a float32 (N, V) copy alive until backward; for a 150k
    vocabulary and 8k response tokens that is ~5 GB. Here float32 exists one chunk of rows at a time.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, tokens: Tensor, temperature: float, rows: int) -> Tensor:
        flat, tok = logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1, 1).long()
        dtype = torch.promote_types(logits.dtype, torch.float32)
        lse = torch.empty(flat.shape[0], dtype=dtype, device=logits.device)
        picked = torch.empty_like(lse)
        for s in range(0, flat.shape[0], rows):
            z = flat[s : s + rows].to(dtype) / temperature
            lse[s : s + rows] = torch.logsumexp(z, dim=-1)
            picked[s : s + rows] = z.gather(-1, tok[s : s + rows]).squeeze(-1)
        ctx.save_for_backward(logits, tokens, lse)
        ctx.temperature, ctx.rows = temperature, rows
        return (picked - lse).view(tokens.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        logits, tokens, lse = ctx.saved_tensors
        flat, tok = logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1, 1).long()
        g = grad.reshape(-1, 1).to(lse.dtype) / ctx.temperature
        out = torch.empty_like(flat)
        rows = ctx.rows
        for s in range(0, flat.shape[0], rows):
            # d logp(tok) / d z_v = (1[v == tok] - softmax_v) / T
            p = torch.exp(flat[s : s + rows].to(lse.dtype) / ctx.temperature - lse[s : s + rows, None]).neg_()
            p.scatter_add_(-1, tok[s : s + rows], torch.ones_like(p[:, :1]))
            out[s : s + rows] = p.mul_(g[s : s + rows])
        return out.view_as(logits), None, None, None


def token_logprobs(
    logits: Tensor, tokens: Tensor, temperature: float = 1.0, *, chunk_tokens: int | None = None
) -> Tensor:
    """Log-probabilities of ``tokens`` (...,) under ``softmax(logits / temperature)``, logits (..., V).

    Use the rollout's sampling temperature so the trainer's log-probs describe the distribution that was sampled.
    Differentiable w.r.t. logits; the result is float32 (float64 for float64 logits). Memory stays at the
    logits plus one float per token: nothing (N, V)-sized in float32 is kept for backward. ``tokens`` must be valid
    ids everywhere, padding included (mask the result instead). ``chunk_tokens`` sets the rows per chunk.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to define log-probs, got {temperature}")
    if tokens.shape != logits.shape[:-1]:
        raise ValueError(f"tokens {tuple(tokens.shape)} must match logits {tuple(logits.shape)} minus the vocab dim")
    return _TokenLogProbs.apply(logits, tokens, float(temperature), _chunk_rows(logits.shape[-1], chunk_tokens))


def entropy_from_logits(logits: Tensor, temperature: float = 1.0, *, chunk_tokens: int | None = None) -> Tensor:
    """Entropy (...,) of ``softmax(logits / temperature)``, in float32, computed a chunk of rows at a time.

    Differentiable, but autograd then keeps each chunk's softmax: call it under ``torch.no_grad()`` when the
    entropy is only watched, not optimised.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    flat = logits.reshape(-1, logits.shape[-1])
    parts = [flat.new_zeros(0, dtype=torch.promote_types(logits.dtype, torch.float32))]
    dtype, rows = torch.promote_types(logits.dtype, torch.float32), _chunk_rows(flat.shape[-1], chunk_tokens)
    for s in range(0, flat.shape[0], rows):
        logp = torch.log_softmax(flat[s : s + rows].to(dtype) / temperature, dim=-1)
        parts.append(-(logp.exp() * logp).sum(-1))
    return torch.cat(parts).view(logits.shape[:-1])
