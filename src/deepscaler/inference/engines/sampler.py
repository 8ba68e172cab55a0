"""Batched next-token sampling with per-row temperature, top-k, top-p and seeds.

Each row draws one uniform number u per step and takes the token where the cumulative distribution
first exceeds u (inverse-CDF sampling: exact, and one random number per row instead of one per
vocabulary entry). A row whose request has a seed draws from its own generator, so it samples the same
tokens whatever else shares the batch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

from deepscaler.inference.engines import fused
from deepscaler.inference.params import SamplingParams


def completion_seed(seed: int, index: int) -> int:
    """Seed of completion `index` of a request seeded with `seed` (distinct streams for n > 1)."""
    return (seed * 0x9E3779B1 + index * 0x85EBCA77 + 0x27D4EB2F) % (2**63)


class BatchSampler:
    """Samples one token per row of a logits batch; rebuilt whenever the batch composition changes.

    rngs[i] is row i's own generator (seeded requests) or None to draw from `shared`.
    """

    def __init__(
        self, params: Sequence[SamplingParams], rngs: Sequence[random.Random | None], shared: random.Random
    ) -> None:
        self.n = len(params)
        self._draws = [(rng or shared).random for rng in rngs]
        temps = [p.temperature for p in params]
        self.all_greedy = all(t == 0 for t in temps)
        self.greedy = torch.tensor([t == 0 for t in temps])
        self.any_greedy = bool(self.greedy.any())
        self.uniform_temp = temps[0] if len(set(temps)) == 1 and temps[0] != 0 else None
        # Greedy rows divide by 1: their log-probs are taken from the raw logits.
        self.temps = torch.tensor([t if t > 0 else 1.0 for t in temps]).unsqueeze(1)
        top_ks = [p.top_k if p.top_k > 0 else 0 for p in params]
        self.top_k = torch.tensor(top_ks) if any(top_ks) else None
        top_ps = [p.top_p for p in params]
        self.top_p = torch.tensor(top_ps).unsqueeze(1) if any(v < 1 for v in top_ps) else None
        # Without top-k/top-p, a batch is sampled in one kernel call (engines/kernels.py), where it compiles.
        self._kernels = fused.kernels() if self.top_k is None and self.top_p is None else None
        self.inverse_temperature = np.array([1 / t if t > 0 else 0.0 for t in temps], dtype=np.float32)
        self._scratch: np.ndarray | None = None

    def _scale(self, logits: torch.Tensor) -> torch.Tensor:
        if self.uniform_temp == 1.0:
            return logits
        if self.uniform_temp is not None:
            return logits / self.uniform_temp
        return logits / self.temps

    def _filter(self, scaled: torch.Tensor) -> torch.Tensor:
        """Mask (to -inf) tokens outside each row's top-k and top-p sets; ties at the cut-off stay in."""
        vocab = scaled.shape[1]
        ranked = scaled.sort(dim=1, descending=True).values
        cutoff = torch.full((self.n,), vocab - 1, dtype=torch.long)
        if self.top_k is not None:
            cutoff = torch.where(self.top_k > 0, (self.top_k - 1).clamp(max=vocab - 1), cutoff)
            ranked = ranked.masked_fill(torch.arange(vocab) > cutoff.unsqueeze(1), -torch.inf)
        if self.top_p is not None:
            probs = torch.softmax(ranked, dim=1)
            # Keep the smallest prefix whose mass reaches top_p: drop a token once the mass before it does.
            before = probs.cumsum(dim=1) - probs
            keep = (before < self.top_p).sum(dim=1).clamp(min=1) - 1
            # top_p == 1 keeps everything, even when rounding makes the running mass reach 1 early.
            keep = torch.where(self.top_p.squeeze(1) >= 1, vocab - 1, keep)
            cutoff = torch.minimum(cutoff, keep)
        threshold = ranked.gather(1, cutoff.unsqueeze(1))
        return scaled.masked_fill(scaled < threshold, -torch.inf)

    def sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (token ids [n], log-probs [n]) for float32 logits [n, vocab].

        The log-prob is log_softmax(logits / temperature) of the chosen token, before top-k/top-p
        filtering (raw logits for greedy rows): the quantity an RL trainer recomputes.
        """
        if self._kernels is not None and logits.dtype == torch.float32 and logits.is_contiguous():
            return self._sample_fused(logits)
        if self.all_greedy:
            tokens = logits.argmax(dim=1, keepdim=True)
            logprobs = logits.gather(1, tokens) - logits.logsumexp(dim=1, keepdim=True)
            return tokens.squeeze(1), logprobs.squeeze(1)
        scaled = self._scale(logits)
        filtering = self.top_k is not None or self.top_p is not None
        probs = torch.softmax(self._filter(scaled) if filtering else scaled, dim=1)
        # Float64 running sums keep the tail of a large vocabulary's distribution exact enough.
        cdf = probs.cumsum(dim=1, dtype=torch.float64)
        uniforms = torch.tensor([draw() for draw in self._draws], dtype=torch.float64).unsqueeze(1)
        # The first index whose cumulative mass exceeds u * total: zero-probability tokens are never hit.
        tokens = torch.searchsorted(cdf, uniforms * cdf[:, -1:], right=True).clamp_(max=logits.shape[1] - 1)
        if self.any_greedy:
            tokens = torch.where(self.greedy.unsqueeze(1), logits.argmax(dim=1, keepdim=True), tokens)
        if filtering:
            logprobs = scaled.gather(1, tokens) - scaled.logsumexp(dim=1, keepdim=True)
        else:
            logprobs = probs.gather(1, tokens).log()
        return tokens.squeeze(1), logprobs.squeeze(1)

    def _sample_fused(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`sample` in one kernel call: the same draws, and the same tokens up to the last bits of rounding."""
        if self._scratch is None or self._scratch.shape[0] != logits.shape[1]:
            self._scratch = np.empty(logits.shape[1], dtype=np.float32)
        uniforms = np.zeros(self.n) if self.all_greedy else np.array([draw() for draw in self._draws])
        tokens, logprobs = torch.empty(self.n, dtype=torch.long), torch.empty(self.n)
        self._kernels.sample_rows(logits.numpy(), self.inverse_temperature, uniforms, self._scratch,
                            tokens.numpy(), logprobs.numpy())
        return tokens, logprobs

    def top_logprobs(self, logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k most likely tokens of each row and their log-probs (same scaling as `sample`)."""
        logp = torch.log_softmax(self._scale(logits), dim=1)
        values, ids = logp.topk(min(k, logp.shape[1]), dim=1)
        return ids, values
