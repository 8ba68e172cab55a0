"""Checkpoint round trips on any number of ranks: run by test_checkpoint_ranks.py in its own process (one rank)
and under torchrun (two ranks, gloo).

`step(model_dir, run_dir, strategy, number)` resumes from the run's checkpoint (none for number 1), checks that
the weights it restored equal the checkpoint's Hugging Face export, takes optimizer step `number` on a fixed
batch, and writes checkpoint `number`. Every rank trains on the whole batch, so the averaged gradient is that of
one rank, and a chain of steps on 1, 2, 1 ranks must end where one process taking them all ends."""

import copy
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from deepscaler.trainer import distributed as dist
from deepscaler.trainer.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint

BATCH = torch.tensor([[5, 17, 300, 2, 9, 41, 7, 800], [11, 3, 64, 129, 5, 6, 900, 1]])


def fresh(model_dir: str, strategy: str) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.nn.Module]:
    """Policy, optimizer and reference as the trainer sets them up (the reference sharded too under FSDP)."""
    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    reference = copy.deepcopy(policy).requires_grad_(False)
    policy = dist.wrap(policy, strategy)
    if strategy == "fsdp":
        reference = dist.wrap(reference, "fsdp")
    params = list(policy.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1, fused=not dist.is_sharded(policy))
    return policy, optimizer, reference


def train_step(policy: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    policy(input_ids=BATCH, labels=BATCH).loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def step(model_dir: str, run_dir: str, strategy: str, number: int) -> dict[str, torch.Tensor]:
    policy, optimizer, reference = fresh(model_dir, strategy)
    initial = {name: tensor.clone() for name, tensor in dist.full_state_dict(reference).items()}
    if number > 1:
        folder, passed_over = find_checkpoint(Path(run_dir))
        assert not passed_over, passed_over
        with torch.no_grad():  # the reference must come back from the checkpoint, not from the start
            for param in reference.parameters():
                param.mul_(0)
        state = load_checkpoint(folder, policy, optimizer, reference)
        assert state["step"] == number - 1, state
        exported = load_file(str(folder / "model" / "model.safetensors"))
        restored = dist.full_state_dict(policy)
        for name, tensor in exported.items():
            assert torch.equal(restored[name], tensor), name
        for name, tensor in dist.full_state_dict(reference).items():
            assert torch.equal(tensor, initial[name]), name
    train_step(policy, optimizer)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    save_checkpoint(Path(run_dir), number, policy, tokenizer, optimizer, {"sampler": None}, reference)
    return dist.full_state_dict(policy)


if __name__ == "__main__":
    dist.init_from_env()
    model_dir, run_dir, strategy, number = sys.argv[1:]
    step(model_dir, run_dir, strategy, int(number))
    print(f"rank {dist.rank()} of {dist.world_size()}: step {number} done", flush=True)
    dist.shutdown()
