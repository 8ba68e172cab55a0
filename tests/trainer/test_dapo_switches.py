"""DAPO's switches at the trainer level, one short step each on the tiny model: each changes what it should.

The tiny random model never boxes an answer, so the real verifier scores every response 0. The overlong and
truncation tests use it as is; the two that need rewards to differ within a group (dynamic sampling keeps only
such groups; importance weights scale the policy-gradient term, which is zero without advantages) replace the
verifier with `AlternatingScorer`, a rule that is easy to reason about."""

import pytest

from deepscaler.config import load_config
from deepscaler.reward.scorer import ScoreStats
from deepscaler.trainer.config import TrainConfig
from deepscaler.trainer.loop import Trainer
from tests.trainer.conftest import train_args

pytestmark = pytest.mark.slow
GROUP = 4  # train_args' samples_per_prompt
BUDGET = 8  # response tokens: the random model runs every response to it


class AlternatingScorer:
    """Rewards 1, 0, 1, 0, ... along each call's responses when the gold (a sum) is even, 0 for every response
    when it is odd: a group of an even sum is informative, one of an odd sum is all-equal."""

    def __init__(self) -> None:
        self.stats = ScoreStats()

    def score(self, texts, golds):
        self.stats = ScoreStats(items=len(texts))
        return [float(int(gold[0]) % 2 == 0 and index % 2 == 0) for index, gold in enumerate(golds)]

    def close(self) -> None:
        pass


def _trainer(inputs, tmp_path, *overrides, scorer=None):
    config = load_config(TrainConfig, None, train_args(inputs, tmp_path / "run", steps=1, extra=[
        "algorithm.kl_coef=0", "optim.mini_batches=1", f"stages.0.max_response_tokens={BUDGET}", *overrides]))
    trainer = Trainer(config)
    if scorer is not None:
        trainer.scorer.close()
        trainer.scorer = scorer
    return trainer


def _groups(samples):
    groups = {}
    for sample in samples:
        groups.setdefault(sample.group, []).append(sample.reward)
    return groups


def test_dynamic_sampling_drops_all_equal_groups_and_refills(tiny_run_inputs, tmp_path):
    trainer = _trainer(tiny_run_inputs, tmp_path, "algorithm.max_sampling_rounds=4", scorer=AlternatingScorer())
    try:
        plain, plain_stats = trainer._collect_rollouts(trainer.config.stages[0], 1, {})
        trainer.config.algorithm.dynamic_sampling = True
        samples, stats = trainer._collect_rollouts(trainer.config.stages[0], 2, {})
    finally:
        trainer.close()
    dropped = [g for g, rewards in _groups(plain).items() if len(set(rewards)) == 1]
    assert dropped and plain_stats["sampling/rounds"] == 1  # all-equal groups drawn, and kept when off
    groups = _groups(samples)
    assert stats["sampling/rounds"] > 1 and stats["sampling/kept_groups"] == 4  # refilled from more prompts
    assert sorted(groups) == [0, 1, 2, 3] and all(len(rewards) == GROUP for rewards in groups.values())
    assert all(sorted(rewards) == [0.0, 0.0, 1.0, 1.0] for rewards in groups.values())  # only informative ones


def test_overlong_cache_penalises_responses_in_the_last_tokens_of_the_budget(tiny_run_inputs, tmp_path):
    # Every response of the random model runs to the budget: each is penalised by the full factor.
    trainer = _trainer(tiny_run_inputs, tmp_path, "algorithm.overlong_cache=4", "algorithm.overlong_factor=0.5")
    try:
        metrics = trainer.step(trainer.config.stages[0])
    finally:
        trainer.close()
    assert metrics["truncation_ratio"] == 1.0 and metrics["accuracy"] == 0.0
    assert metrics["reward/mean"] == pytest.approx(-0.5)


def test_mask_truncated_leaves_nothing_to_learn_from_cut_off_responses(tiny_run_inputs, tmp_path):
    # Every response is cut off at the budget, so with the switch on no token counts: no loss, no gradient, where
    # without it the entropy bonus alone gives a gradient.
    norms = {}
    trainer = _trainer(tiny_run_inputs, tmp_path, "algorithm.entropy_coef=0.01")
    try:
        for switch in (False, True):
            trainer.config.algorithm.mask_truncated = switch
            metrics = trainer.step(trainer.config.stages[0])
            assert metrics["truncation_ratio"] == 1.0
            norms[switch] = metrics["actor/grad_norm"]
    finally:
        trainer.close()
    assert norms[False] > 1e-4 and norms[True] == 0.0


def test_is_correction_scales_the_policy_gradient_by_the_capped_weights(tiny_run_inputs, tmp_path):
    # The built-in engine's log-probs are the trainer's to ~1e-6, so every weight exp(old - rollout) ≈ 1 is capped
    # at is_cap=0.5: the gradient of the same rollouts (policy-gradient term alone: no KL, no entropy) is halved.
    # (Its loss is 0 either way: every response has BUDGET tokens and a group's advantages sum to 0.)
    norms = {}
    for switch in ("false", "true"):
        trainer = _trainer(tiny_run_inputs, tmp_path / switch, f"algorithm.is_correction={switch}",
                           "algorithm.is_cap=0.5", "algorithm.entropy_coef=0", scorer=AlternatingScorer())
        try:
            metrics = trainer.step(trainer.config.stages[0])
        finally:
            trainer.close()
        norms[switch] = metrics["actor/grad_norm"]
        if switch == "true":
            assert metrics["actor/tis/weight_mean"] == pytest.approx(0.5)
            assert metrics["actor/tis/capped_frac"] == 1.0
    assert norms["false"] > 1e-3
    assert norms["true"] == pytest.approx(0.5 * norms["false"], rel=1e-3)
