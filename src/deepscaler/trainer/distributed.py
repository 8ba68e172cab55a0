"""torch.distributed in one place: process-group set-up from torchrun's environment, and reductions.

Run the same command under `torchrun --nproc-per-node N`: gloo on CPU, NCCL on GPU. With one process
every helper here is a cheap no-op, so the trainer has a single code path.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as torch_dist


def init_from_env() -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); True when distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch_dist.is_initialized():
        return torch_dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch_dist.init_process_group(backend=backend)
    return True


def device() -> torch.device:
    """This rank's device: its GPU (LOCAL_RANK) when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def shutdown() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def world_size() -> int:
    return torch_dist.get_world_size() if torch_dist.is_initialized() else 1


def rank() -> int:
    return torch_dist.get_rank() if torch_dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def all_reduce_sum(values: dict[str, float]) -> dict[str, float]:
    """Sum each value over ranks (float64, so token counts stay exact)."""
    if world_size() == 1:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return {k: float(v) for k, v in zip(keys, tensor.tolist())}


def all_reduce_max(value: int) -> int:
    if world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
    return int(tensor.item())


def all_gather_objects(value: Any) -> list[Any]:
    if world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * world_size()
    torch_dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    if world_size() > 1:
        torch_dist.barrier()


def wrap(model: torch.nn.Module, strategy: str = "ddp") -> torch.nn.Module:
    """DDP (gradients all-reduced in backward) or FSDP2 `fully_shard` (parameters sharded) when distributed."""
    if world_size() == 1:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in getattr(getattr(model, "model", model), "layers", []):
            fully_shard(layer)
        fully_shard(model)
        return model
    ids = [model.device.index] if model.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def accumulation_context(model: torch.nn.Module, last: bool):
    """Skip DDP's gradient all-reduce on every micro-batch but the last of an optimizer step."""
    if last or not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return nullcontext()
    return model.no_sync()
