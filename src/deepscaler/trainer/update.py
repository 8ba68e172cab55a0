"""The policy update of one training step: mini-batches of whole groups, micro-batches by real-token budget,
gradient accumulation with the mini-batch's global normaliser, clipping, and a guarded optimizer step."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence

import torch
from torch.distributed.tensor import DTensor

from deepscaler.algorithms import grpo_loss, lengths_to_mask, loss_normalizers, mask_truncated, truncated_is_weights
from deepscaler.trainer import distributed as dist
from deepscaler.trainer.config import OptimConfig, TrainConfig
from deepscaler.trainer.sequences import Sample, collate_responses, plan_micro_batches, response_logprobs


def minibatch_groups(num_groups: int, mini_batches: int, seed: int) -> list[list[int]]:
    """Global group ids per mini-batch: one seeded shuffle, then equal consecutive slices.

    Every rank computes the same split, so which samples share a mini-batch does not depend on the
    number of ranks (each rank trains on its own groups of each mini-batch)."""
    order = list(range(num_groups))
    random.Random(seed).shuffle(order)
    size = math.ceil(num_groups / mini_batches)
    return [sorted(order[i : i + size]) for i in range(0, num_groups, size)]


def learning_rate(optim: OptimConfig, optimizer_step: int) -> float:
    """The learning rate of optimizer step `optimizer_step` (0-based, counted since the optimizer was made): a linear
    warm-up over optim.warmup_steps steps (the first at lr / warmup_steps), then constant at optim.lr."""
    if optimizer_step < optim.warmup_steps:
        return optim.lr * (optimizer_step + 1) / optim.warmup_steps
    return optim.lr


def update_policy(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, samples: Sequence[Sample], num_groups: int,
    config: TrainConfig, max_response_tokens: int, pad_id: int, temperature: float, seed: int,
    optimizer_step: int = 0,
) -> dict[str, float]:
    """Run optim.epochs × optim.mini_batches optimizer steps on this rank's samples; returns mean metrics, with
    `optimizer_steps` (how many were taken or skipped) and `lr` (the last one's learning rate) as they are.

    `optimizer_step` is how many optimizer steps came before (the learning-rate schedule is a function of it alone,
    so a resumed run needs nothing but that count). A non-finite loss or gradient norm skips that optimizer step
    (counted in `bad_steps`)."""
    by_group: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_group[sample.group].append(sample)
    totals: dict[str, float] = defaultdict(float)
    steps = 0
    for epoch in range(config.optim.epochs):
        for groups in minibatch_groups(num_groups, config.optim.mini_batches, seed * 1000 + epoch):
            chunk = [s for g in groups for s in by_group.get(g, [])]
            lr = learning_rate(config.optim, optimizer_step + steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            metrics = _optimizer_step(model, optimizer, chunk, config, max_response_tokens, pad_id, temperature)
            for key, value in metrics.items():
                totals[key] += value
            steps += 1
    means = {key: value / steps if key != "bad_steps" else value for key, value in totals.items()}
    return {**means, "optimizer_steps": float(steps), "lr": lr}


def _optimizer_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, samples: list[Sample], config: TrainConfig,
    max_response_tokens: int, pad_id: int, temperature: float,
) -> dict[str, float]:
    algo = config.algorithm
    norms = dist.all_reduce_sum(loss_normalizers(_loss_mask(samples, algo.mask_truncated)))  # across ranks
    # The normalisers count every sample; those that add no gradient are then left out of the passes below.
    skip = _may_skip(config)
    computed = [s for s in samples if not (skip and s.advantage == 0.0)]
    measured = dist.all_reduce_sum(loss_normalizers(_loss_mask(computed, algo.mask_truncated))) if skip else norms
    # DDP and FSDP average gradients over ranks; the loss is normalised by global counts, so undo the average.
    scale = float(dist.world_size())
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = defaultdict(float)
    # Packed rows of balanced real-token counts, or shared prompts where that computes less (plan_micro_batches).
    # Every rank must run the same number of backward passes (DDP synchronises on the last one; FSDP gathers
    # parameters in every forward and backward): with several ranks each spreads its samples over as many
    # micro-batches as the busiest rank needs. Which samples share a micro-batch leaves the loss unchanged: it is
    # normalised by the mini-batch's global counts above.
    share, micro = plan_micro_batches(model, computed, config.optim.micro_batch_tokens,
                                      lockstep=dist.world_size() > 1)
    micro = [batch for batch in micro if batch]
    # With nothing to compute on any rank, one empty pass still gives every parameter its (zero) gradient, so the
    # optimizer step moves the weights as a full pass would have (momentum, weight decay).
    count = max(dist.all_reduce_max(len(micro)), 1)
    for k in range(count):
        with dist.accumulation_context(model, last=k == count - 1):
            if k >= len(micro):
                _zero_backward(model, pad_id)
                continue
            metrics, tokens = _micro_step(model, [computed[i] for i in micro[k]], config, norms, max_response_tokens,
                                          pad_id, temperature, scale, share)
        for key, value in metrics.items():
            sums[key] += value if key.endswith("_sum") else value * tokens / max(measured["global_tokens"], 1)
    grad_norm = _clip_gradients(model, config.optim.grad_clip)
    finite = math.isfinite(grad_norm) and all(math.isfinite(v) for v in sums.values())
    if dist.world_size() > 1:
        finite = bool(dist.all_reduce_sum({"ok": int(finite)})["ok"] == dist.world_size())
    if finite:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    skipped = (len(samples) - len(computed)) / max(len(samples), 1)
    return {**sums, "grad_norm": grad_norm, "bad_steps": 0.0 if finite else 1.0, "skipped_samples": skipped}


def _may_skip(config: TrainConfig) -> bool:
    """Whether a zero advantage means a zero gradient: the loss is then the surrogate alone, −A·r per token."""
    algo = config.algorithm
    return config.optim.skip_zero_advantage and not algo.kl_coef and not algo.entropy_coef


def _micro_step(
    model: torch.nn.Module, chunk: list[Sample], config: TrainConfig, norms: dict[str, float],
    max_response_tokens: int, pad_id: int, temperature: float, scale: float, share_prompts: bool = False,
) -> tuple[dict[str, float], float]:
    algo = config.algorithm
    device = next(model.parameters()).device
    on_policy = chunk[0].old_logp is None  # a single update per step: the old policy is the current one
    logp, entropy = response_logprobs(model, chunk, pad_id, temperature, config.model.dtype,
                                      share_prompts=share_prompts, lean=config.model.lean_forward,
                                      entropy=bool(algo.entropy_coef))
    batch = {key: value.to(device) for key, value in collate_responses(chunk, pad_id).items()}
    mask = batch["mask"]
    if algo.mask_truncated:
        mask = mask_truncated(mask, torch.tensor([s.truncated for s in chunk], device=device))
    old_logp = logp.detach() if on_policy else batch["old_logp"]
    is_weights, is_metrics = None, {}
    if algo.is_correction:
        is_weights, is_metrics = truncated_is_weights(old_logp, batch["rollout_logp"], mask, cap=algo.is_cap)
    loss, metrics = grpo_loss(
        logp, old_logp, batch["advantages"], mask, clip_low=algo.clip_low, clip_high=algo.clip_high,
        dual_clip=algo.dual_clip, ref_logp=batch["ref_logp"] if algo.kl_coef else None, kl_coef=algo.kl_coef,
        kl_kind=algo.kl_kind, kl_clamp=algo.kl_clamp, entropy=entropy, entropy_coef=algo.entropy_coef,
        is_weights=is_weights, agg=algo.loss_agg, global_tokens=max(norms["global_tokens"], 1),
        global_seqs=max(norms["global_seqs"], 1), max_response_length=max_response_tokens,
    )
    metrics.update(is_metrics)  # tis/weight_mean, tis/capped_frac, tis/mismatch_kl: token means, like the rest
    (loss * scale).backward()
    if on_policy:  # the engine-vs-trainer gap, measured here since no separate old-log-prob pass ran
        metrics["logprob_gap_sum"] = float(((batch["rollout_logp"] - old_logp).abs() * batch["mask"]).sum())
        metrics["logprob_gap_tokens_sum"] = float(batch["mask"].sum())
    return metrics, float(mask.sum())


def _clip_gradients(model: torch.nn.Module, max_norm: float) -> float:
    """Clip to `max_norm`; returns the global norm before clipping. FSDP's gradients are shards (DTensors):
    their norm comes back as a replicated DTensor that already covers every rank's shard."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return float(norm)


def _zero_backward(model: torch.nn.Module, pad_id: int) -> None:
    """A backward pass that adds nothing, for a rank with fewer micro-batches than the others."""
    ids = torch.full((1, 2), pad_id, dtype=torch.long, device=next(model.parameters()).device)
    (model(input_ids=ids, use_cache=False).logits.sum() * 0.0).backward()


def _loss_mask(samples: Sequence[Sample], drop_truncated: bool) -> torch.Tensor:
    """The (B, T) mask of the tokens that count in the loss, as _micro_step builds it, for the whole mini-batch."""
    lengths = torch.tensor([len(s.response) for s in samples], dtype=torch.long)
    mask = lengths_to_mask(lengths, max((len(s.response) for s in samples), default=1))
    if drop_truncated:
        mask = mask_truncated(mask, torch.tensor([s.truncated for s in samples], dtype=torch.bool))
    return mask
