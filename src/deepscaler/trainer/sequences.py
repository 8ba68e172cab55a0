"""Rollout sequences as training data: packing into micro-batches and collating into padded tensors."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

import torch

from deepscaler.algorithms import token_logprobs


@dataclass
class Sample:
    """One sampled response and everything the update needs about it."""

    prompt: list[int]
    response: list[int]
    group: int  # index of its prompt in the step's batch; the samples of a prompt form a group
    reward: float = 0.0
    advantage: float = 0.0
    truncated: bool = False
    rollout_logp: torch.Tensor | None = None  # from the inference engine
    old_logp: torch.Tensor | None = None  # from the trainer's weights before this step's updates
    ref_logp: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.response)


def pack(samples: Seq[Sample], token_budget: int) -> list[list[int]]:
    """Indices of samples grouped so each micro-batch's padded size (rows × longest) fits the budget.

    Samples are taken longest first so that sequences of similar length share a micro-batch and little
    compute goes to padding; a sample longer than the budget gets a micro-batch of its own.
    """
    order = sorted(range(len(samples)), key=lambda i: -samples[i].length)
    batches: list[list[int]] = []
    for index in order:
        if batches and (len(batches[-1]) + 1) * samples[batches[-1][0]].length <= token_budget:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def collate(samples: Seq[Sample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors. Token positions are those of the *predicted* tokens (length T - 1), so the
    response mask and the per-token arrays line up with `token_logprobs(logits[:, :-1], ids[:, 1:])`."""
    width = max(s.length for s in samples)
    rows = len(samples)
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    attention = torch.zeros((rows, width), dtype=torch.long)
    mask = torch.zeros((rows, width - 1), dtype=torch.float32)
    aligned = {name: torch.zeros((rows, width - 1)) for name in ("rollout_logp", "old_logp", "ref_logp")}
    for row, sample in enumerate(samples):
        ids = sample.prompt + sample.response
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        start, end = len(sample.prompt) - 1, len(ids) - 1
        mask[row, start:end] = 1.0
        for name, tensor in aligned.items():
            values = getattr(sample, name)
            if values is not None:
                tensor[row, start:end] = values
    batch = {"input_ids": input_ids, "attention_mask": attention, "mask": mask,
             "advantages": torch.tensor([s.advantage for s in samples], dtype=torch.float32)}
    batch.update(aligned)
    return batch


def forward_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor], compute_dtype: str = "float32"):
    """Logits of a collated batch on the model's device; bfloat16 compute runs under autocast, so the
    parameters (and the optimizer's view of them) stay float32."""
    device = next(model.parameters()).device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=compute_dtype == "bfloat16"):
        # Padding is on the right and attention is causal, so no real token attends to padding: without a
        # mask, attention runs the faster plain-causal kernel (padded positions are masked out of the loss).
        return model(input_ids=batch["input_ids"].to(device), use_cache=False).logits.float()


@torch.no_grad()
def fill_logprobs(model: torch.nn.Module, samples: Seq[Sample], attribute: str, temperature: float,
                  token_budget: int, pad_id: int, compute_dtype: str = "float32", lockstep: bool = False) -> None:
    """Set `sample.<attribute>` (one value per response token) for every sample, micro-batch by micro-batch.

    lockstep: every rank runs as many forward passes as the rank with the most micro-batches (an FSDP
    model gathers its parameters in each forward, a collective), padding with one-token passes."""
    was_training = model.training
    model.eval()
    batches = pack(samples, token_budget)
    if lockstep:
        from deepscaler.trainer import distributed as dist

        device = next(model.parameters()).device
        for _ in range(dist.all_reduce_max(len(batches)) - len(batches)):
            model(input_ids=torch.full((1, 1), pad_id, dtype=torch.long, device=device), use_cache=False)
    for indices in batches:
        chunk = [samples[i] for i in indices]
        batch = collate(chunk, pad_id)
        logits = forward_logits(model, batch, compute_dtype)
        logp = token_logprobs(logits[:, :-1], batch["input_ids"][:, 1:].to(logits.device), temperature).cpu()
        for row, sample in enumerate(chunk):
            start = len(sample.prompt) - 1
            setattr(sample, attribute, logp[row, start : start + len(sample.response)].float().clone())
    model.train(was_training)
