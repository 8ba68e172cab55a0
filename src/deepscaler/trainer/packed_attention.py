"""Causal attention over a packed row: several sequences concatenated into one, each attending only to itself.

Exact and without a mask tensor: a dense block-diagonal mask over a row of T tokens is O(T²) memory (a 72K-token
row: 5 GB of booleans per head group), while attention restricted to each sequence's own slice of q/k/v costs
Σ len² compute and nothing beyond SDPA's own work per slice. Where flash-attn is installed and the tensors are
half-precision on a GPU, its varlen kernel does all sequences in one call from their offsets (cu_seqlens). That
path is untested here (no GPU with flash-attn in CI); the slice path is the one tests compare with padded rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

try:  # optional: the flash-attn package (CUDA only)
    from flash_attn import flash_attn_varlen_func
except ImportError:  # pragma: no cover - depends on the machine
    flash_attn_varlen_func = None


def packed_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            lengths: Sequence[int]) -> torch.Tensor:
    """q (1, q heads, T, d), k and v (1, kv heads, T, d) of sequences of `lengths` (summing to T) laid end to end:
    causal attention within each sequence, (1, q heads, T, d). Key/value heads are shared by groups of query heads
    (GQA) without copies."""
    if sum(lengths) != q.shape[2]:
        raise ValueError(f"sequence lengths sum to {sum(lengths)}, the row has {q.shape[2]} tokens")
    if use_flash_varlen(q):
        return _flash_varlen(q, k, v, lengths)
    pieces, start = [], 0
    for length in lengths:
        stop = start + length
        pieces.append(F.scaled_dot_product_attention(q[:, :, start:stop], k[:, :, start:stop], v[:, :, start:stop],
                                                     is_causal=True, enable_gqa=True))
        start = stop
    return torch.cat(pieces, dim=2)


def use_flash_varlen(q: torch.Tensor) -> bool:
    """Whether flash-attn's varlen kernel takes these tensors (installed, CUDA, half precision)."""
    return flash_attn_varlen_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


def _flash_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    offsets = torch.tensor([0, *lengths], dtype=torch.int32, device=q.device).cumsum(0, dtype=torch.int32)
    longest = max(lengths)
    # flash-attn takes (tokens, heads, d) and shares kv heads across query heads itself.
    out = flash_attn_varlen_func(q[0].transpose(0, 1), k[0].transpose(0, 1), v[0].transpose(0, 1), offsets, offsets,
                                 longest, longest, causal=True)
    return out.transpose(0, 1)[None]
