"""Run by test_full_parameters.py under torchrun: streams an FSDP2-sharded model's parameters on every rank."""

import copy
import sys

import torch
from transformers import AutoModelForCausalLM

from deepscaler.trainer import distributed as dist


def main(model_dir: str) -> None:
    dist.init_from_env()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    whole = copy.deepcopy(model)
    sharded = dist.wrap(model, "fsdp")
    assert dist.is_sharded(sharded)
    with torch.no_grad():  # the shards change after wrapping: the stream must gather them as they are now
        for shard, param in zip(sharded.parameters(), whole.parameters(), strict=True):
            shard.mul_(2)
            param.mul_(2)
    expected = dict(whole.named_parameters())
    full = dist.full_state_dict(sharded)
    names = []
    for name, tensor in dist.full_parameters(sharded, torch.bfloat16):
        names.append(name)
        assert type(tensor) is torch.Tensor and tensor.dtype == torch.bfloat16, (name, type(tensor), tensor.dtype)
        assert torch.equal(tensor, full[name].to(torch.bfloat16)), name
        assert torch.equal(tensor, expected[name].to(torch.bfloat16)), name
    assert names == list(expected), names
    exact = dict(dist.full_parameters(sharded, torch.float32))
    assert all(torch.equal(exact[name], full[name]) for name in names)
    print(f"rank {dist.rank()}: {len(names)} parameters streamed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
