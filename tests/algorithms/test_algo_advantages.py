"""Group advantages, overlong penalty and masking helpers against hand-computed values."""

import pytest
import torch

from deepscaler.algorithms import group_advantages, lengths_to_mask, mask_truncated, overlong_penalty


def close(actual: torch.Tensor, expected: list[float], tol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=tol, rtol=0)


def test_std_norm_uses_unbiased_group_std_and_zeroes_equal_groups():
    # group 1: mean .5, unbiased std sqrt(1/3); group 2: all solved; group 3: mean .25, unbiased std .5
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1])
    adv, metrics = group_advantages(rewards, 4)
    g1, lo, hi = 0.8660239037870368, -0.499999000002, 1.499997000006
    close(adv, [g1, -g1, -g1, g1, 0, 0, 0, 0, lo, lo, lo, hi])
    assert metrics["groups/all_equal"] == pytest.approx(1 / 3)
    assert metrics["groups/solve_all"] == pytest.approx(1 / 3)
    assert metrics["groups/solve_none"] == 0.0
    assert metrics["reward/mean"] == pytest.approx(7 / 12)


def test_trl_epsilon():
    adv, _ = group_advantages(torch.tensor([1.0, 0, 0, 1]), 4, eps=1e-4)
    close(adv, [0.865875, -0.865875, -0.865875, 0.865875])


def test_all_equal_groups_are_exactly_zero_even_with_rounding_residue():
    # mean of three 0.1s is not exactly 0.1 in float32; a 1e-9 residue over a 1e-9 std would give ~1e-3
    for rewards in ([0.1, 0.1, 0.1], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]):
        adv, metrics = group_advantages(torch.tensor(rewards), 3)
        assert torch.equal(adv, torch.zeros(3))
        assert metrics["groups/all_equal"] == 1.0
    _, metrics = group_advantages(torch.tensor([0.0, 0.0]), 2)
    assert (metrics["groups/solve_none"], metrics["groups/solve_all"]) == (1.0, 0.0)


@pytest.mark.parametrize("norm", ["std", "none", "batch_std"])
def test_group_of_one_is_zero_without_nan(norm):
    adv, metrics = group_advantages(torch.tensor([1.0, 0.0, 0.5]), 1, norm=norm)
    assert torch.equal(adv, torch.zeros(3))
    assert metrics["groups/all_equal"] == 1.0
    adv, _ = group_advantages(torch.tensor([1.0]), 1, norm=norm)
    assert torch.equal(adv, torch.zeros(1))


def test_none_norm_only_centres():
    adv, _ = group_advantages(torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 1]), 4, norm="none")
    close(adv, [0.5, -0.5, -0.5, 0.5, -0.25, -0.25, -0.25, 0.75])


def test_batch_std_divides_by_the_whole_batch_std():
    # three 1s and five 0s: unbiased std sqrt(120/448) = 0.5175491695...
    adv, _ = group_advantages(torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 1]), 4, norm="batch_std")
    a, b, c = 0.9660899164162359, 0.48304495820811794, 1.449134874624354
    close(adv, [a, -a, -a, a, -b, -b, -b, c])


def test_integer_and_signed_rewards():
    adv, metrics = group_advantages(torch.tensor([1, -1, -1, -1]), 4)
    assert adv.dtype == torch.float32
    close(adv, [1.5, -0.5, -0.5, -0.5], tol=1e-5)  # centred [1.5, -.5, -.5, -.5], unbiased std 1
    assert metrics["groups/solve_none"] == 0.0 and metrics["groups/solve_all"] == 0.0


def test_bad_shapes_and_norm_are_rejected():
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(2, 2), 2)
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(4), 2, norm="mad")


def test_overlong_penalty_is_linear_in_the_cache_window():
    lengths = torch.tensor([10, 16, 17, 18, 20, 25])
    penalty, metrics = overlong_penalty(lengths, max_length=20, cache=4)
    close(penalty, [0, 0, -0.25, -0.5, -1, -1])
    assert metrics["overlong/penalised_frac"] == pytest.approx(4 / 6)
    penalty, _ = overlong_penalty(lengths, max_length=20, cache=4, factor=0.5)
    close(penalty, [0, 0, -0.125, -0.25, -0.5, -0.5])
    with pytest.raises(ValueError):
        overlong_penalty(lengths, max_length=20, cache=0)


def test_lengths_to_mask_and_mask_truncated():
    mask = lengths_to_mask(torch.tensor([3, 0, 4]), 4)
    assert mask.tolist() == [[True, True, True, False], [False] * 4, [True] * 4]
    kept = mask_truncated(mask, torch.tensor([False, False, True]))
    assert kept.tolist() == [[True, True, True, False], [False] * 4, [False] * 4]
    assert mask.tolist()[2] == [True] * 4  # the input is untouched
    float_mask = mask_truncated(mask.float(), torch.tensor([True, False, False]))
    assert float_mask.dtype == torch.float32 and float_mask.sum().item() == 4.0


def test_empty_batch():
    adv, metrics = group_advantages(torch.zeros(0), 4)
    assert adv.shape == (0,) and metrics["reward/mean"] == 0.0
