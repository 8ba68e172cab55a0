from deepscaler.trainer.config import StageConfig
from deepscaler.trainer.stages import awaits_plateau, stage_should_end


def test_step_budget_ends_a_stage():
    stage = StageConfig(max_steps=3)
    assert stage_should_end(stage, 2, [], []) is None
    assert "max_steps" in stage_should_end(stage, 3, [], [])


def test_truncation_alone():
    stage = StageConfig(max_steps=100, truncation_trigger=0.05, window=3)
    assert stage_should_end(stage, 10, [0.1, 0.1], []) is None  # not enough steps seen
    assert stage_should_end(stage, 10, [0.0, 0.04, 0.05, 0.06], []) is None  # mean 0.05 is not above
    assert "truncation 0.070" in stage_should_end(stage, 10, [0.0, 0.06, 0.07, 0.08], [])


def test_truncation_and_plateau():
    stage = StageConfig(max_steps=100, truncation_trigger=0.05, window=2, plateau_patience=2)
    high = [0.2, 0.2]
    assert stage_should_end(stage, 10, high, [0.3, 0.4]) is None  # too few validations
    assert stage_should_end(stage, 10, high, [0.3, 0.35, 0.4]) is None  # still improving
    assert "flat for 2" in stage_should_end(stage, 10, high, [0.3, 0.4, 0.4, 0.38])
    assert stage_should_end(stage, 10, [0.0, 0.0], [0.3, 0.4, 0.4, 0.38]) is None  # plateau, no truncation


def test_plateau_rule_asks_for_validation_only_while_truncation_is_high():
    stage = StageConfig(max_steps=100, truncation_trigger=0.05, window=2, plateau_patience=2)
    assert awaits_plateau(stage, [0.2, 0.2])
    assert not awaits_plateau(stage, [0.2])  # window not full
    assert not awaits_plateau(stage, [0.0, 0.1])  # mean 0.05 is not above
    assert not awaits_plateau(StageConfig(truncation_trigger=0.05, window=2), [0.2, 0.2])  # no plateau rule
