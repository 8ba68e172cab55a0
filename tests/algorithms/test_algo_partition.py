"""The balanced partitioner as a pure function: golden cases worked by hand, the proven bound against brute force
on small inputs, and micro-batches under a token budget."""

import itertools
import random

import pytest

from deepscaler.algorithms.partition import budget_micro_batches, karmarkar_karp


def sums(weights, parts):
    return [sum(weights[i] for i in part) for part in parts]


def assert_is_partition(parts, n):
    flat = sorted(i for part in parts for i in part)
    assert flat == list(range(n))


def test_golden_two_way():
    # The textbook case: 8|7 and 6|5 differ by 1, 4 by 4; 4 joins 7 (4+7|8: 3), then 5 joins 4+7 (16|14),
    # where the optimum is 15|15 (8+7 / 6+5+4): the method is a heuristic.
    weights = [8, 7, 6, 5, 4]
    parts = karmarkar_karp(weights, 2)
    assert_is_partition(parts, 5)
    assert sums(weights, parts) == [16, 14]
    assert parts == [[1, 3, 4], [0, 2]]  # the heavier first


def test_golden_three_way():
    # 10 9 8 7 6 5 4: sum 49; three parts of 17, 16, 16 are found.
    weights = [10, 9, 8, 7, 6, 5, 4]
    parts = karmarkar_karp(weights, 3)
    assert_is_partition(parts, 7)
    assert sorted(sums(weights, parts), reverse=True) == [17, 16, 16]


def test_fewer_items_than_parts_and_empty_input():
    assert karmarkar_karp([5, 3], 4) == [[0], [1], [], []]
    assert karmarkar_karp([], 3) == [[], [], []]
    with pytest.raises(ValueError):
        karmarkar_karp([1], 0)


def best_largest_part(weights, k):
    best = None
    for assignment in itertools.product(range(k), repeat=len(weights)):
        loads = [0] * k
        for weight, part in zip(weights, assignment):
            loads[part] += weight
        best = max(loads) if best is None else min(best, max(loads))
    return best


@pytest.mark.parametrize("k", [2, 3, 4])
def test_within_the_proven_bound_of_the_optimum(k):
    """On 150 random small inputs the largest part is within 4/3 - 1/(3k) of the brute-force optimum, equal to it
    on most, and never below it (which would mean items lost)."""
    rng = random.Random(k)
    optimal = 0
    for _ in range(150):
        weights = [rng.randint(1, 1000) for _ in range(rng.randint(1, 8 if k < 4 else 7))]
        parts = karmarkar_karp(weights, k)
        assert_is_partition(parts, len(weights))
        largest, best = max(sums(weights, parts)), best_largest_part(weights, k)
        assert best <= largest <= (4 / 3 - 1 / (3 * k)) * best
        optimal += largest == best
    assert optimal >= 75


def test_balances_a_long_tailed_batch():
    """128 response lengths of a long-tailed distribution over 8 parts: every part within one short item of
    the mean."""
    rng = random.Random(0)
    lengths = [min(8192, int(rng.lognormvariate(7.5, 0.7))) for _ in range(128)]
    parts = karmarkar_karp(lengths, 8)
    loads = sums(lengths, parts)
    assert max(loads) - min(loads) <= min(lengths)


def test_budget_micro_batches_fit_and_are_fewest_possible_here():
    lengths = [300, 250, 200, 200, 150, 100, 100, 50]  # 1350 tokens
    batches = budget_micro_batches(lengths, 500)
    assert_is_partition(batches, 8)
    assert len(batches) == 3  # ceil(1350 / 500)
    assert all(load <= 500 for load in sums(lengths, batches))
    assert sums(lengths, batches) == sorted(sums(lengths, batches), reverse=True)


def test_a_sequence_over_the_budget_gets_its_own_micro_batch():
    assert budget_micro_batches([900, 100, 100, 40], 250) == [[0], [1, 2, 3]]
    assert budget_micro_batches([900, 100, 100, 60], 250) == [[0], [2, 3], [1]]


def test_asked_count_spreads_the_work():
    lengths = [100] * 6
    assert len(budget_micro_batches(lengths, 600)) == 1
    batches = budget_micro_batches(lengths, 600, count=3)
    assert sums(lengths, batches) == [200, 200, 200]
    # More micro-batches than sequences: as many as there are sequences, the rest are the caller's empty passes.
    assert len(budget_micro_batches(lengths, 600, count=9)) == 6
    with pytest.raises(ValueError):
        budget_micro_batches(lengths, 100, count=5)
    assert budget_micro_batches([], 10) == [] and budget_micro_batches([], 10, count=2) == []
