"""Balanced partitions of sequence lengths: k parts of near-equal token sums, and micro-batches under a token budget.

`karmarkar_karp` is the largest differencing method (Karmarkar & Karp, 1982) for k parts: every item starts as a
partial partition of its own (itself in one part, k − 1 empty parts); the two partial partitions whose spread
(largest part sum − smallest) is widest are merged so that the heaviest part of one joins the lightest of the
other, which cancels most of both spreads; repeated until one partition is left. It is a heuristic: its largest
part is at most 4/3 − 1/(3k) times the optimum (Michiels, Aarts, Korst & van Leeuwen, 2007), and usually within a
single item's length of the mean. Deterministic: ties are broken by the order items arrive in.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence


def karmarkar_karp(weights: Sequence[int], parts: int) -> list[list[int]]:
    """Indices of `weights` in `parts` lists (each sorted; some empty when there are fewer items than parts) whose
    weight sums are near-equal. The lists are ordered heaviest first."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, not {parts}")
    # A partial partition: (sums, members) per part, parts kept heaviest first.
    heap: list[tuple[int, int, list[tuple[int, list[int]]]]] = []
    tie = itertools.count()
    for index, weight in enumerate(weights):
        partial = [(int(weight), [index])] + [(0, []) for _ in range(parts - 1)]
        heapq.heappush(heap, (-int(weight), next(tie), partial))
    if not heap:
        return [[] for _ in range(parts)]
    while len(heap) > 1:
        _, _, a = heapq.heappop(heap)
        _, _, b = heapq.heappop(heap)
        # a's heaviest part with b's lightest, and so on down: both sorted heaviest first, so pair a[i] with b[-1-i].
        merged = sorted(((sa + sb, ma + mb) for (sa, ma), (sb, mb) in zip(a, reversed(b))),
                        key=lambda part: -part[0])
        heapq.heappush(heap, (merged[-1][0] - merged[0][0], next(tie), merged))
    return [sorted(members) for _, members in heap[0][2]]


def budget_micro_batches(lengths: Sequence[int], budget: int, count: int | None = None) -> list[list[int]]:
    """Indices of `lengths` (real tokens per sequence) in micro-batches of at most `budget` tokens each, balanced
    by `karmarkar_karp`; a sequence longer than the budget makes a micro-batch of its own. Empty micro-batches are
    left out (there are fewer sequences than micro-batches asked for).

    count: None for the fewest micro-batches this balancing reaches; else exactly that many (at least as many as
    the fewest), as ranks that must run the same number of micro-batches ask for: the work is then spread over
    all of them rather than some ranks running empty ones."""
    if budget < 1:
        raise ValueError(f"budget must be >= 1, not {budget}")
    alone = [[i] for i, n in enumerate(lengths) if n > budget]
    rest = [i for i, n in enumerate(lengths) if n <= budget]
    fewest = _fewest_fitting(lengths, rest, budget)
    if count is None or count <= len(alone) + len(fewest):
        if count is not None and count < len(alone) + len(fewest):
            raise ValueError(f"{count} micro-batches cannot hold these sequences within {budget} tokens each")
        return _heaviest_first(lengths, alone + fewest)
    wanted = count - len(alone)
    parts = _split(lengths, rest, wanted)
    if any(sum(lengths[i] for i in part) > budget for part in parts):
        # Balancing into more parts did not keep every part under the budget (rare): split the fitting
        # partition's heaviest parts instead, which can only make parts lighter.
        parts = list(fewest)
        while len(parts) < wanted:
            parts.sort(key=lambda part: -sum(lengths[i] for i in part))
            if len(parts[0]) < 2:
                break
            parts[:1] = _split(lengths, parts[0], 2)
    return _heaviest_first(lengths, alone + [part for part in parts if part])


def _split(lengths: Sequence[int], indices: list[int], parts: int) -> list[list[int]]:
    """`indices` in `parts` balanced lists (via karmarkar_karp on their lengths)."""
    return [[indices[j] for j in part] for part in karmarkar_karp([lengths[i] for i in indices], parts)]


def _fewest_fitting(lengths: Sequence[int], indices: list[int], budget: int) -> list[list[int]]:
    """The balanced partition of `indices` into the fewest parts that each fit the budget (every length fits)."""
    if not indices:
        return []
    parts = max(1, math.ceil(sum(lengths[i] for i in indices) / budget))
    while True:  # ends: with one index per part every part fits
        split = _split(lengths, indices, parts)
        if all(sum(lengths[i] for i in part) <= budget for part in split):
            return [part for part in split if part]
        parts += 1


def _heaviest_first(lengths: Sequence[int], parts: list[list[int]]) -> list[list[int]]:
    return sorted((sorted(part) for part in parts), key=lambda part: (-sum(lengths[i] for i in part), part))
