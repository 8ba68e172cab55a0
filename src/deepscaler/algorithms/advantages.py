"""Per-sample reward shaping for GRPO: group-relative advantages, DAPO's overlong penalty and filtering."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

AdvNorm = Literal["std", "none", "batch_std"]


def group_advantages(
    rewards: Tensor, group_size: int, *, eps: float = 1e-6, norm: AdvNorm = "std", solved_above: float = 0.5
) -> tuple[Tensor, dict[str, float]]:
    """GRPO advantages: each reward relative to the other samples of its prompt.

    ``rewards`` is (B,) with B = prompts × group_size, each prompt's samples consecutive. ``norm="std"`` divides
    by the group's unbiased std + eps (verl and DeepScaleR: eps 1e-6, TRL: 1e-4); ``"none"`` only centres
    (Dr. GRPO); ``"batch_std"`` divides by the unbiased std of the whole batch. Groups whose rewards are all equal,
    including groups of one, get exactly 0 (no NaN, and no rounding residue amplified by a tiny std). A sample
    counts as solved when its reward is above ``solved_above`` (fits 0/1 and -1/1 rewards alike).
    """
    if rewards.dim() != 1 or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be (B,) with B a multiple of group_size={group_size}, got {rewards.shape}")
    if rewards.numel() == 0:  # e.g. dynamic sampling kept no group on this rank
        names = ("reward/mean", "reward/std", "adv/mean", "adv/abs_max", "groups/all_equal", "groups/solve_all",
                 "groups/solve_none")
        return rewards.detach().float(), dict.fromkeys(names, 0.0)
    # bf16 rewards would lose the small differences the normalisation divides up.
    r = rewards.detach().to(torch.promote_types(rewards.dtype, torch.float32))
    groups = r.view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if norm == "std":
        adv = centred / (groups.std(dim=1, keepdim=True) + eps) if group_size > 1 else centred
    elif norm == "batch_std":
        adv = centred / (r.std() + eps) if r.numel() > 1 else centred
    elif norm == "none":
        adv = centred
    else:
        raise ValueError(f"unknown advantage norm {norm!r}")
    equal = (groups == groups[:, :1]).all(dim=1)
    adv = torch.where(equal[:, None], 0.0, adv).flatten()
    solved = groups > solved_above
    metrics = {
        "reward/mean": float(r.mean()),
        "reward/std": float(r.std()) if r.numel() > 1 else 0.0,
        "adv/mean": float(adv.mean()),
        "adv/abs_max": float(adv.abs().max()),
        "groups/all_equal": float(equal.float().mean()),
        "groups/solve_all": float(solved.all(dim=1).float().mean()),
        "groups/solve_none": float((~solved).all(dim=1).float().mean()),
    }
    return adv, metrics


def overlong_penalty(
    lengths: Tensor, max_length: int, cache: int, *, factor: float = 1.0
) -> tuple[Tensor, dict[str, float]]:
    """DAPO's soft overlong punishment, (B,) values ≤ 0 to add to the rewards.

    0 up to ``max_length − cache`` tokens, then falling linearly to −factor at ``max_length`` (and beyond).
    """
    if not 0 < cache <= max_length:
        raise ValueError(f"need 0 < cache <= max_length, got cache={cache} max_length={max_length}")
    over = ((lengths.to(torch.float32) - (max_length - cache)) / cache).clamp(0, 1)
    penalty = -factor * over
    return penalty, {
        "overlong/penalised_frac": float((over > 0).float().mean()),
        "overlong/mean": float(penalty.mean()),
    }


def lengths_to_mask(lengths: Tensor, width: int) -> Tensor:
    """Boolean (B, width) mask, true on the first ``lengths[i]`` positions of row i (right padding)."""
    return torch.arange(width, device=lengths.device) < lengths[:, None]


def mask_truncated(mask: Tensor, truncated: Tensor) -> Tensor:
    """DAPO's overlong filtering: drop every token of the responses cut off at the length limit.

    A truncated response has no final answer, so its reward says nothing about its reasoning; ``truncated`` is
    (B,) bool (finish reason "length"). Returns a new mask of the same dtype.
    """
    return mask.masked_fill(truncated.bool()[:, None], 0)
