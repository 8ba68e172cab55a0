"""Iterative context lengthening: when does a stage end? A pure function of the run's history.

DeepScaleR switched 8K -> 16K -> 24K by hand when the truncated fraction of responses rose (4.2% -> 6.5%)
and AIME accuracy plateaued; here the same rule runs inside one run.
"""

from __future__ import annotations

from collections.abc import Sequence

from deepscaler.trainer.config import StageConfig


def stage_should_end(
    stage: StageConfig, steps_in_stage: int, truncation_history: Sequence[float], validation_history: Sequence[float],
) -> str | None:
    """The reason the stage ends now, or None to keep going.

    truncation_history: the truncated fraction of each step of this stage, oldest first.
    validation_history: validation pass@1 of each validation in this stage, oldest first.
    The trigger rule needs both signals: truncation rising past `truncation_trigger` (mean of the last
    `window` steps) and no improvement of validation pass@1 over the last `plateau_patience` validations.
    """
    if steps_in_stage >= stage.max_steps:
        return f"max_steps ({stage.max_steps}) reached"
    truncation = _recent_truncation(stage, truncation_history)
    if truncation is None or truncation <= stage.truncation_trigger:
        return None
    if stage.plateau_patience is None:
        return f"truncation {truncation:.3f} > {stage.truncation_trigger}"
    if len(validation_history) <= stage.plateau_patience:
        return None
    best_before = max(validation_history[: -stage.plateau_patience])
    if max(validation_history[-stage.plateau_patience :]) > best_before:
        return None
    return (f"truncation {truncation:.3f} > {stage.truncation_trigger} and validation "
            f"pass@1 flat for {stage.plateau_patience} validations")


def awaits_plateau(stage: StageConfig, truncation_history: Sequence[float]) -> bool:
    """Whether the stage would end on truncation but for its plateau rule, which a fresh validation decides."""
    truncation = _recent_truncation(stage, truncation_history)
    return stage.plateau_patience is not None and truncation is not None and truncation > stage.truncation_trigger


def _recent_truncation(stage: StageConfig, truncation_history: Sequence[float]) -> float | None:
    """Mean truncated fraction over the last `window` steps; None without a trigger or a full window yet."""
    recent = list(truncation_history)[-stage.window :]
    if stage.truncation_trigger is None or len(recent) < stage.window:
        return None
    return sum(recent) / len(recent)
