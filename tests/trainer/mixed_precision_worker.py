"""Run by test_mixed_precision.py under torchrun (2 ranks, gloo): FSDP2 with bfloat16 mixed precision, per-micro-batch
gradient reduce-scatter, and the bfloat16 reference policy sharded (and offloaded) over the ranks."""

import copy
import random
import sys
import tempfile
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict
from torch.distributed.tensor import DTensor
from transformers import AutoModelForCausalLM

from deepscaler.trainer import distributed as dist
from deepscaler.trainer.checkpoint import _load_sharded, _save_sharded
from deepscaler.trainer.sequences import HFForward, Sample, fill_logprobs, model_forward, response_logprobs

PAD = 0


def samples(seed: int, count: int) -> list[Sample]:
    rng = random.Random(seed)
    return [Sample(prompt=[rng.randrange(1, 200) for _ in range(rng.randint(2, 6))],
                   response=[rng.randrange(1, 200) for _ in range(rng.randint(1, 9))], group=0)
            for _ in range(count)]


def summed_logprobs(model: torch.nn.Module, batch: list[Sample], dtype: str = "float32") -> torch.Tensor:
    return response_logprobs(model, batch, PAD, 1.0, dtype, lean=False)[0].sum()


def sharded_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {}
    for name, param in model.named_parameters():
        assert isinstance(param.grad, DTensor), (name, type(param.grad))
        grads[name] = param.grad.to_local().clone()
    return grads


def check_accumulation(model_dir: str) -> None:
    """Gradients after two micro-batches under accumulation_context equal those of one backward over both (float32);
    after the first micro-batch they are already reduced shards, not whole local gradients."""
    model = dist.wrap(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).train(), "fsdp")
    first, second = samples(10 + dist.rank(), 3), samples(20 + dist.rank(), 2)  # each rank its own data
    for k, batch in enumerate([first, second]):
        with dist.accumulation_context(model, last=k == 1):
            summed_logprobs(model, batch).backward()
        if k == 0:
            assert all(isinstance(p.grad, DTensor) for p in model.parameters()), "micro-batch 1 was not reduced"
    accumulated = sharded_grads(model)
    model.zero_grad(set_to_none=True)
    summed_logprobs(model, first + second).backward()
    combined = sharded_grads(model)
    assert max(float(g.abs().max()) for g in combined.values()) > 1e-3
    for name in combined:
        # Packed rows of different lengths sum in another order: float32 rounding, ~2e-6 on gradients of ~1e-3.
        torch.testing.assert_close(accumulated[name], combined[name], rtol=1e-5, atol=1e-5,
                                   msg=lambda text, name=name: f"{name}: {text}")


def check_mixed_precision(model_dir: str) -> None:
    """Inside the forward the layers' weights are whole bfloat16 tensors; outside, the parameters and gradients are
    float32 shards; the log-probs match the unsharded model's under autocast within bfloat16 rounding."""
    plain = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    whole = copy.deepcopy(plain)
    model = dist.wrap(plain.train(), "fsdp", mixed_precision=True)
    seen = []
    projection = model.model.layers[0].self_attn.q_proj
    hook = projection.register_forward_hook(lambda module, args, out: seen.append(
        (type(module.weight), module.weight.dtype, tuple(module.weight.shape), out.dtype)))
    assert isinstance(model_forward(model, "bfloat16"), HFForward)  # the lean forward would bypass FSDP's gathers
    batch = samples(30 + dist.rank(), 4)
    logp = response_logprobs(model, batch, PAD, 1.0, "bfloat16", lean=False)[0]
    hook.remove()
    full_shape = tuple(whole.model.layers[0].self_attn.q_proj.weight.shape)
    assert seen == [(torch.nn.Parameter, torch.bfloat16, full_shape, torch.bfloat16)], seen
    (logp.sum()).backward()
    for name, param in model.named_parameters():
        assert isinstance(param, DTensor) and param.dtype == torch.float32, (name, type(param), param.dtype)
        assert param.to_local().shape[0] < param.shape[0] or param.shape[0] == 1, name
        assert isinstance(param.grad, DTensor) and param.grad.dtype == torch.float32, name
    assert all(torch.isfinite(p.grad.to_local()).all() for p in model.parameters())
    expected = response_logprobs(whole, batch, PAD, 1.0, "bfloat16")[0]  # the lean forward under autocast
    mask = expected != 0
    assert torch.isfinite(logp).all()
    # The tiny model's log-probs are about -7 (a 1,024-token vocabulary); bfloat16's rounding of the residual stream
    # (which autocast keeps float32), 2**-9 relative at each of 4 layers, moves them by under 0.01 here (0.004-0.008
    # measured): 0.03 leaves room for the other samples of each rank, not for a wrong weight or a missed gather.
    torch.testing.assert_close(logp[mask], expected[mask], rtol=0, atol=0.03)


def bf16_copy(model: torch.nn.Module) -> torch.nn.Module:
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    for param in reference.parameters():
        param.data = param.data.to(torch.bfloat16)
    return reference


def check_reference(model_dir: str, offload: bool) -> None:
    """The bfloat16 reference sharded (its shards in host memory with offload): the same log-probs as the unsharded
    one with ranks running different numbers of micro-batches, reset to the policy shard by shard, and saved and
    loaded whole."""
    start = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    unsharded = bf16_copy(start)
    reference = dist.shard_frozen(bf16_copy(start), offload=offload)
    for name, param in reference.named_parameters():
        assert isinstance(param, DTensor) and param.dtype == torch.bfloat16 and not param.requires_grad, name
        assert param.to_local().device.type == "cpu", name
    assert dist.compute_device(reference) == dist.device()
    batch = samples(40 + dist.rank(), 3 + 5 * dist.rank())  # 3 and 8 samples: 1 and 3 micro-batches of 40 tokens
    fill_logprobs(reference, batch, "ref_logp", 1.0, 40, PAD, "bfloat16", lockstep=True, lean=False)
    fill_logprobs(unsharded, batch, "old_logp", 1.0, 40, PAD, "bfloat16", lean=False)
    for sample in batch:
        # The lockstep pass packs its micro-batches differently (spread over the busiest rank's count), and bfloat16
        # matmuls of other shapes round differently: a few thousandths of a nat, far below a wrong weight's effect.
        torch.testing.assert_close(sample.ref_logp, sample.old_logp, rtol=0, atol=1e-2)

    policy = dist.wrap(start.train(), "fsdp", mixed_precision=True)
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(0.01)
    expected = {name: value.to(torch.bfloat16) for name, value in dist.full_state_dict(policy).items()}
    dist.copy_weights(policy, reference)
    reset = dist.full_state_dict(reference)
    assert reset.keys() == expected.keys()
    for name in expected:
        assert torch.equal(reset[name], expected[name]), name

    # Saved as checkpoints save it (each rank its shards) and loaded into a fresh sharded, offloaded copy.
    folder = Path(dist.all_gather_objects(tempfile.mkdtemp() if dist.is_main() else None)[0]) / "reference"
    _save_sharded(get_model_state_dict(reference), folder)
    fresh = dist.shard_frozen(bf16_copy(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)),
                              offload=offload)
    set_model_state_dict(fresh, _load_sharded(get_model_state_dict(fresh), folder))
    loaded = dist.full_state_dict(fresh)
    for name in expected:
        assert torch.equal(loaded[name], expected[name]), name


def main(model_dir: str) -> None:
    dist.init_from_env()
    check_accumulation(model_dir)
    check_mixed_precision(model_dir)
    check_reference(model_dir, offload=True)
    check_reference(model_dir, offload=False)
    print(f"rank {dist.rank()}: mixed precision checks passed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
