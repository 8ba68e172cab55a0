"""The LM head outside the model's forward under DDP and FSDP: log-probs and entropies of an untied Qwen2 through
`response_logprobs` on 2 ranks (torchrun, gloo) give every parameter, the head's included, the gradient of one process
over the whole batch. This file is also the script each rank runs."""

import random
import subprocess
import sys

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM

from deepscaler.trainer import distributed as dist
from deepscaler.trainer.sequences import Sample, response_logprobs

pytestmark = pytest.mark.slow

CONFIG = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, tie_word_embeddings=False, pad_token_id=0)


def make_samples() -> list[Sample]:
    rng = random.Random(0)
    return [Sample([rng.randrange(1, 97) for _ in range(rng.randint(2, 6))],
                   [rng.randrange(1, 97) for _ in range(rng.randint(1, 8))], group) for group in range(8)]


def loss(model: torch.nn.Module, samples: list[Sample], total: int) -> torch.Tensor:
    logp, entropy = response_logprobs(model, samples, 0, 0.7, entropy=True)
    return (logp.sum() + 0.3 * entropy.sum()) / total


def run_rank(strategy: str) -> None:
    dist.init_from_env()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(transformers.Qwen2Config(**CONFIG), dtype=torch.float32).train()
    samples = make_samples()
    if dist.is_main():
        alone = AutoModelForCausalLM.from_config(transformers.Qwen2Config(**CONFIG), dtype=torch.float32).train()
        alone.load_state_dict(model.state_dict())
        loss(alone, samples, len(samples)).backward()
    wrapped = dist.wrap(model, strategy)
    # Each rank its share; DDP and FSDP average gradients over ranks, so scale the sum back up.
    (loss(wrapped, samples[dist.rank() :: dist.world_size()], len(samples)) * dist.world_size()).backward()
    grads = {name.removeprefix("module."): param.grad for name, param in wrapped.named_parameters()}
    grads = {name: grad.full_tensor() if hasattr(grad, "full_tensor") else grad for name, grad in grads.items()}
    if dist.is_main():
        for name, param in alone.named_parameters():
            assert float(param.grad.abs().max()) > 0, name
            error, scale = float((grads[name] - param.grad).abs().max()), float(param.grad.abs().max())
            assert error <= 1e-5 * scale, f"{name}: max difference {error:.3g} against max value {scale:.3g}"


@pytest.mark.parametrize("strategy,port", [("ddp", 29541), ("fsdp", 29543)])
def test_untied_head_gets_the_one_process_gradient(strategy, port):
    ranks = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                            f"--master-port={port}", __file__, strategy], capture_output=True, text=True, timeout=600)
    assert ranks.returncode == 0, ranks.stdout[-3000:] + ranks.stderr[-3000:]


if __name__ == "__main__":
    run_rank(sys.argv[1])
    dist.shutdown()  # after the wrapped model is gone (freeing DDP's reducer after it hangs)
