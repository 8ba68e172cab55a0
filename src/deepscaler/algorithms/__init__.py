"""The math of GRPO as small pure tensor functions: advantages, log-probs, KL estimators, clipped losses.

Shapes: B sequences, T response positions (right-padded), V vocabulary. A ``mask`` is (B, T) and true (or
non-zero) on the response tokens that count. Functions a trainer wants to watch return ``(value, metrics)`` with
metrics a dict of floats; they never log. This package imports nothing else from deepscaler: it is the bottom
layer, so the trainer, the evaluators and the tests can all use it.
"""

from deepscaler.algorithms.advantages import (
    AdvNorm,
    group_advantages,
    lengths_to_mask,
    mask_truncated,
    overlong_penalty,
)
from deepscaler.algorithms.lm_head import lm_head_logprobs
from deepscaler.algorithms.logprobs import entropy_from_logits, token_logprobs
from deepscaler.algorithms.losses import (
    AGG_MODES,
    AggMode,
    KLKind,
    aggregate,
    clipped_surrogate,
    grpo_loss,
    kl_penalty,
    loss_normalizers,
    policy_loss,
    truncated_is_weights,
)

__all__ = [
    "AGG_MODES",
    "AdvNorm",
    "AggMode",
    "KLKind",
    "aggregate",
    "clipped_surrogate",
    "entropy_from_logits",
    "group_advantages",
    "grpo_loss",
    "kl_penalty",
    "lengths_to_mask",
    "lm_head_logprobs",
    "loss_normalizers",
    "mask_truncated",
    "overlong_penalty",
    "policy_loss",
    "token_logprobs",
    "truncated_is_weights",
]
