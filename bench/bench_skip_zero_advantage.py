"""The policy update with samples of advantage 0 left out (`optim.skip_zero_advantage`, the default) against the
same update computing every sample (the code before; `optim.skip_zero_advantage=false`).

Workload: one update (AdamW, one mini-batch, kl_coef = entropy_coef = 0, the GSM8K recipe's settings: token-mean,
micro-batches of 8,192 tokens) of 8 prompts × 8 samples, prompts of 80 to 140 tokens and responses of 40 to 160
(GSM8K-sized: the SmolLM2 recipe's responses average 84 tokens), on SmolLM2-135M-Instruct in float32 by default
(`deepscaler model import-gguf` first) or any --model. `--signal` lists how many of the 8 groups have a correct
answer and so a non-zero advantage (the rest all failed): 1 is the SmolLM2 GSM8K recipe's typical step, 8 none to
skip. Times are the best of --repeats; the ratio is full ÷ skipping. The weights after both updates are compared
too (they must agree to float rounding).

    .venv-test/bin/python bench/bench_skip_zero_advantage.py [--model PATH|HUB_ID] [--signal 0,1,4,8]
        [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import random
import time

import torch

from deepscaler.inference.hub import resolve_model
from deepscaler.trainer.config import TrainConfig
from deepscaler.trainer.sequences import Sample
from deepscaler.trainer.update import update_policy

GROUPS, PER_GROUP = 8, 8


def make_samples(signal: int, vocab: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for group in range(GROUPS):
        prompt = [rng.randrange(10, vocab) for _ in range(rng.randint(80, 140))]
        rewards = [float(k % 3 == 0) for k in range(PER_GROUP)] if group < signal else [0.0] * PER_GROUP
        mean = sum(rewards) / PER_GROUP
        std = (sum((r - mean) ** 2 for r in rewards) / PER_GROUP) ** 0.5
        for reward in rewards:
            response = [rng.randrange(10, vocab) for _ in range(rng.randint(40, 160))]
            samples.append(Sample(prompt, response, group, reward=reward,
                                  advantage=(reward - mean) / std if std else 0.0,
                                  rollout_logp=torch.zeros(len(response))))
    return samples


def timed_update(start: torch.nn.Module, samples: list[Sample], skip: bool, pad_id: int) -> tuple[float, dict]:
    model = copy.deepcopy(start)
    config = TrainConfig()
    config.algorithm.kl_coef = config.algorithm.entropy_coef = 0.0
    config.optim.mini_batches, config.optim.micro_batch_tokens, config.optim.skip_zero_advantage = 1, 8192, skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    begin = time.perf_counter()
    update_policy(model, optimizer, samples, GROUPS, config, 256, pad_id, 0.7, seed=0)
    return time.perf_counter() - begin, {name: p.detach() for name, p in model.named_parameters()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--signal", default="0,1,4,8", help="comma-separated counts of groups with a signal")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    path = resolve_model(args.model)
    start = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).train()
    pad_id = start.config.pad_token_id or 0
    print(f"{args.model}: {sum(p.numel() for p in start.parameters()) / 1e6:.0f}M parameters, {GROUPS} prompts x "
          f"{PER_GROUP} samples, {args.threads} thread(s), best of {args.repeats}")
    print(f"{'groups with signal':>18} {'full update':>12} {'skipping':>10} {'ratio':>7} {'max weight diff':>16}")
    for signal in (int(s) for s in args.signal.split(",")):
        samples = make_samples(signal, start.config.vocab_size, seed=signal)
        full_runs = [timed_update(start, samples, False, pad_id) for _ in range(args.repeats)]
        lean_runs = [timed_update(start, samples, True, pad_id) for _ in range(args.repeats)]
        full, lean = min(t for t, _ in full_runs), min(t for t, _ in lean_runs)
        weights_full, weights_lean = full_runs[-1][1], lean_runs[-1][1]
        diff = max(float((weights_full[n] - weights_lean[n]).abs().max()) for n in weights_full)
        print(f"{signal:>12} of {GROUPS} {full:>11.1f}s {lean:>9.1f}s {full / lean:>6.1f}x {diff:>16.1e}", flush=True)


if __name__ == "__main__":
    main()
