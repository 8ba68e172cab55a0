"""torch.distributed in one place: process-group set-up from torchrun's environment, and reductions.

Run the same command under `torchrun --nproc-per-node N`: gloo on CPU, NCCL on GPU. With one process
every helper here is a cheap no-op, so the trainer has a single code path. No other module calls a
torch.distributed collective itself: the device its tensors live on is chosen here, once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist

T = TypeVar("T")


def init_from_env(timeout: timedelta | None = None) -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); True when distributed.

    timeout: how long a rank waits in a collective for the others before failing (None: torch's default)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch_dist.is_initialized():
        return torch_dist.is_initialized()
    if torch.cuda.is_available():
        # NCCL communicates from the current CUDA device: make it this rank's GPU before anything runs.
        torch_dist.init_process_group(backend="nccl", timeout=timeout, device_id=device())
    else:
        torch_dist.init_process_group(backend="gloo", timeout=timeout)
    return True


def device() -> torch.device:
    """This rank's device: its GPU (LOCAL_RANK) when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def communication_device() -> torch.device:
    """Where the tensors handed to a collective must live: NCCL moves data between GPUs only (an NCCL
    group has no CPU backend), so under NCCL this rank's GPU; under gloo, or with one process, the CPU."""
    if torch_dist.is_initialized() and torch_dist.get_backend() == "nccl":
        return device()
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
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=communication_device())
    torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return {k: float(v) for k, v in zip(keys, tensor.tolist())}


def all_reduce_max(value: int) -> int:
    if world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=communication_device())
    torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
    return int(tensor.item())


def all_gather_objects(value: Any) -> list[Any]:
    """`value` of every rank, in rank order, on every rank. (Pickled; torch moves the bytes to the current
    CUDA device under NCCL, which init_from_env set to this rank's.)"""
    if world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * world_size()
    torch_dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    if world_size() == 1:
        return
    where = communication_device()
    # NCCL's barrier is an all-reduce on a GPU: name this rank's rather than leave torch to pick one.
    torch_dist.barrier(device_ids=[where.index] if where.type == "cuda" else None)


def deal(items: Sequence[T], count: int) -> list[list[T]]:
    """`items` dealt round-robin into `count` shares (item i to share i % count), which differ by one item at
    most: the validation problems over the rollout engines."""
    return [list(items[index::count]) for index in range(count)]


def undeal(shares: Sequence[Sequence[T]]) -> list[T]:
    """The items `deal` dealt into `shares`, back in their original order."""
    total = sum(len(share) for share in shares)
    return [shares[index % len(shares)][index // len(shares)] for index in range(total)]


@contextmanager
def main_rank_first() -> Iterator[None]:
    """Run the block on rank 0 first, the other ranks waiting at a barrier, then on them: what rank 0 leaves
    behind (a download in a shared cache) is there for them. A block running past the process group's timeout
    (distributed.timeout_minutes) fails the waiting ranks' barrier."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def wrap(model: torch.nn.Module, strategy: str = "ddp", mixed_precision: bool = False) -> torch.nn.Module:
    """DDP (gradients all-reduced in backward) or FSDP2 `fully_shard` (parameters, gradients and optimizer
    state sharded over ranks; each decoder layer is gathered only around its own forward and backward).

    mixed_precision (FSDP): the float32 shards stay the optimizer's master weights, each layer is gathered as
    bfloat16 for its forward and backward, and gradients are reduced (reduce-scattered) in float32."""
    if world_size() == 1:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if mixed_precision else MixedPrecisionPolicy()
        return _shard_layers(model, mp_policy=policy)
    if strategy != "ddp":
        raise ValueError(f"unknown distributed strategy {strategy!r} (ddp or fsdp)")
    ids = [model.device.index] if model.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard_frozen(model: torch.nn.Module, offload: bool = False) -> torch.nn.Module:
    """A model that is only ever run forward (the reference policy), FSDP2-sharded layer by layer in its own
    dtype; with offload its shards live in host memory and each layer's is copied to the GPU for its forward
    (FSDP2's CPUOffloadPolicy). One process: the model as it is."""
    if world_size() == 1:
        return model
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy

    # Pinned host memory makes the copies asynchronous; it needs CUDA.
    where = CPUOffloadPolicy(pin_memory=torch.cuda.is_available()) if offload else OffloadPolicy()
    return _shard_layers(model, offload_policy=where)


def _shard_layers(model: torch.nn.Module, **options: Any) -> torch.nn.Module:
    """fully_shard each decoder layer, then the root (embeddings, final norm, LM head). The root stays gathered
    from its forward to its backward (or, after a forward without gradients, until `reshard()`), which the LM
    head's log-probs rely on: they read its weight after the model's forward."""
    from torch.distributed.fsdp import fully_shard

    for layer in getattr(getattr(model, "model", model), "layers", []):
        fully_shard(layer, **options)
    fully_shard(model, **options)
    return model


def compute_device(model: torch.nn.Module) -> torch.device:
    """Where a model's forward runs, so where its inputs go: its parameters' device, except for FSDP2 shards
    offloaded to host memory, which compute on the device of their mesh (this rank's GPU)."""
    from torch.distributed.tensor import DTensor

    param = next(model.parameters())
    if isinstance(param, DTensor) and param.device_mesh.device_type != param.device.type:
        return device()
    return param.device


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def is_sharded(model: torch.nn.Module) -> bool:
    """True for a model wrapped by FSDP2: its state_dict() holds shards, and every forward is a collective."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state_dict(model: torch.nn.Module, everywhere: bool = True) -> dict[str, torch.Tensor]:
    """The whole model's weights under their Hugging Face names.

    Unsharded models: their own state_dict(). FSDP: gathered from the shards, a collective that every rank
    must call at the same point, into CPU tensors on every rank, or (everywhere=False) on rank 0 only,
    the other ranks getting an empty dict."""
    if not is_sharded(model):
        return unwrap(model).state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=not everywhere)
    weights = {name: tensor.cpu() for name, tensor in get_model_state_dict(model, options=options).items()}
    first: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        # A tied parameter (an output head sharing the embeddings) stays one tensor under both names,
        # as in an unsharded state_dict, so save_pretrained writes it once.
        source = first.setdefault(id(param), name)
        if source != name and source in weights and name in weights:
            weights[name] = weights[source]
    return weights


def full_parameters(model: torch.nn.Module, dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
    """The whole model's parameters one at a time, under their Hugging Face names, as `dtype` on the device they
    live on: for pushing weights to a rollout engine that loads each as it comes, so that no rank ever holds a
    second whole copy of the model.

    FSDP: each parameter is gathered from its shards when it is asked for (`DTensor.full_tensor()`, a
    collective), so every rank must run the stream to its end, in the same order. A tied parameter (an output
    head sharing the embeddings) comes once, under its first name, as from `named_parameters()`."""
    from torch.distributed.tensor import DTensor

    for name, param in unwrap(model).named_parameters():
        value = param.detach()  # no autograd record of the gather or the cast
        yield name, (value.full_tensor() if isinstance(value, DTensor) else value).to(dtype)


def accumulation_context(model: torch.nn.Module, last: bool):
    """How gradients cross ranks while micro-batches accumulate. DDP: all-reduced on the last micro-batch of an
    optimizer step only (no_sync() before it), into whole gradients every rank holds anyway. FSDP: reduce-scattered
    after every micro-batch, each rank adding its shard into its sharded gradient, so that no rank ever holds a
    whole model's gradient (skipping the sync would keep the unsharded gradients until the last micro-batch)."""
    if last or not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return nullcontext()
    return model.no_sync()


def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Copy source's parameters into target's (same architecture), cast to target's dtype: the reference policy
    reset to the policy at a stage's start. FSDP2-sharded on both sides (same layout, as `wrap` and `shard_frozen`
    lay them out): each rank copies its own shards, with no collective and no whole copy anywhere."""
    from torch.distributed.tensor import DTensor

    targets = dict(unwrap(target).named_parameters())
    with torch.no_grad():
        for name, param in unwrap(source).named_parameters():
            into = targets[name]
            if isinstance(param, DTensor) != isinstance(into, DTensor):
                raise ValueError(f"{name}: cannot copy between a sharded and an unsharded model")
            if isinstance(param, DTensor):
                if param.placements != into.placements or param.shape != into.shape:
                    raise ValueError(f"{name}: the two models are sharded differently")
                into.to_local().copy_(param.to_local())
            else:
                into.copy_(param)
