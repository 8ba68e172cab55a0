from math import comb

import pytest

from deepscaler.eval.metrics import default_ks, majority_at_k, pass_at_k


@pytest.mark.parametrize(("n", "c", "k"), [(16, 4, 1), (16, 4, 4), (16, 4, 13), (10, 0, 5), (10, 10, 1), (7, 3, 2)])
def test_pass_at_k_matches_the_binomial_formula(n, c, k):
    expected = 1 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_hand_values():
    assert pass_at_k(16, 4, 1) == pytest.approx(0.25)
    assert pass_at_k(16, 4, 4) == pytest.approx(1 - 495 / 1820)
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)
    assert pass_at_k(5, 0, 2) == 0.0 and pass_at_k(2, 1, 2) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_majority_vote():
    keys, rewards = ["a", "b", "a", "b"], [1, 0, 1, 0]
    assert majority_at_k(keys, rewards, 4) == 1.0  # a tie goes to the answer seen first
    assert majority_at_k(keys, rewards, 2) == pytest.approx(4 / 6)
    assert majority_at_k(["x", None, "y", "y"], [0, 0, 1, 1], 4) == 1.0  # no answer abstains
    assert majority_at_k([None, None], [0, 0], 2) == 0.0
    assert majority_at_k(keys, rewards, 1) == pytest.approx(0.5)  # maj@1 is pass@1


def test_majority_samples_large_n_deterministically():
    keys = ["a"] * 20 + ["b"] * 12
    rewards = [1.0] * 20 + [0.0] * 12
    first = majority_at_k(keys, rewards, 9, seed=3)
    assert first == majority_at_k(keys, rewards, 9, seed=3)
    assert 0.7 < first < 1.0


def test_default_ks():
    assert default_ks(4) == [1, 2, 3, 4]
    assert default_ks(64) == [1, 2, 4, 8, 16, 32, 64]
    assert default_ks(20) == [1, 2, 4, 8, 16, 20]
