"""Pure metric functions over per-problem samples: pass@k, maj@k, lengths, truncation."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable, Sequence
from itertools import combinations
from math import comb

MAX_EXACT_SUBSETS = 2000  # above this many k-subsets, maj@k averages over seeded random subsets


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k samples is correct) from n samples with c correct.

    1 - C(n - c, k) / C(n, k), computed as a product so it neither overflows nor loses precision.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def majority_at_k(keys: Sequence[Hashable | None], rewards: Sequence[float], k: int, seed: int = 0) -> float:
    """Expected correctness of a majority vote over k of the n samples, averaged over k-subsets.

    keys[i] identifies sample i's answer (samples with equal keys vote together; None abstains);
    a vote is won by the largest group, ties going to the group seen first. With k = n this is the
    plain majority vote. Subsets are enumerated when there are at most MAX_EXACT_SUBSETS of them.
    """
    n = len(keys)
    if len(rewards) != n or not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n and one reward per key, got n={n} k={k}")
    if comb(n, k) <= MAX_EXACT_SUBSETS:
        subsets = list(combinations(range(n), k))
    else:
        rng = random.Random(seed)
        subsets = [tuple(sorted(rng.sample(range(n), k))) for _ in range(MAX_EXACT_SUBSETS)]
    return sum(_vote(keys, rewards, subset) for subset in subsets) / len(subsets)


def _vote(keys: Sequence[Hashable | None], rewards: Sequence[float], subset: Sequence[int]) -> float:
    votes = Counter(keys[i] for i in subset if keys[i] is not None)
    if not votes:
        return 0.0
    winner = max(votes, key=lambda key: (votes[key], -next(i for i in subset if keys[i] == key)))
    return float(next(rewards[i] for i in subset if keys[i] == winner))


def problem_metrics(rewards: Sequence[float], keys: Sequence[Hashable | None], ks: Sequence[int]) -> dict:
    """pass@k and maj@k of one problem, for each k in ks."""
    n, c = len(rewards), int(sum(1 for r in rewards if r > 0))
    metrics = {"pass@1": c / n}
    for k in ks:
        metrics[f"pass@{k}"] = pass_at_k(n, c, k)
        metrics[f"maj@{k}"] = majority_at_k(keys, rewards, k)
    return metrics


def default_ks(n: int) -> list[int]:
    """Every k <= n for small n, else powers of two and n itself."""
    if n <= 16:
        return list(range(1, n + 1))
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if k < n]
    return ks + [n]


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
