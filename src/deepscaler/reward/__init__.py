"""The outcome reward: 1 when a response's final boxed answer is mathematically equal to the gold, else 0.

    >>> from deepscaler.reward import math_reward
    >>> math_reward("... so the answer is </think> $\\boxed{\\frac{1}{2}}$", "0.5")
    1.0
"""

from deepscaler.reward.extract import extract_answer
from deepscaler.reward.grade import DEFAULT_TIMEOUT, gold_answers, is_equivalent, math_reward
from deepscaler.reward.scorer import RewardScorer, ScoreStats

__all__ = [
    "DEFAULT_TIMEOUT",
    "RewardScorer",
    "ScoreStats",
    "extract_answer",
    "gold_answers",
    "is_equivalent",
    "math_reward",
]
