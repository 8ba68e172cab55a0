"""Padded rows against packed rows: tokens computed, micro-batches, and the time of the log-prob forward + backward.

Lengths: prompts of 60 to 300 tokens, responses log-normal (median about half the budget) truncated at the
stage's response budget, as a DeepScaleR step's are (many short answers, a tail that hits the limit), with 8
samples per prompt. Two parts:

1. Counts at the recipe's sizes (128 prompts × 8 samples, 8K responses, `optim.micro_batch_tokens` 16,384,
   8 ranks of 16 prompts each): tokens the forward computes (padded: rows × longest of each micro-batch; packed:
   the real tokens), micro-batches per rank (the most any rank runs, since all run that many) and how evenly the
   real tokens spread over them.
2. Time, scaled down so a CPU runs it: 4 prompts × 8 samples, prompts of 15 to 75 tokens and responses up to
   512, through a 2-layer Qwen2 of width 128, micro-batches of 2,048 tokens, float32, the lean forward, one thread
   (--threads; two threads on a busy machine wait on each other at every operator): every micro-batch's log-probs
   forward and backward, padded route against packed route (best of --repeats).

    .venv-test/bin/python bench/bench_packing.py [--repeats 3] [--seed 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import transformers

from deepscaler.algorithms.partition import budget_micro_batches
from deepscaler.trainer.sequences import Sample, pack, response_logprobs


def make_samples(prompts: int, per_prompt: int, max_response: int, vocab: int, rng: random.Random,
                 prompt_range: tuple[int, int] = (60, 300)) -> list[Sample]:
    samples = []
    for group in range(prompts):
        prompt = [rng.randrange(1, vocab) for _ in range(rng.randint(*prompt_range))]
        for _ in range(per_prompt):
            size = min(max_response, max(1, int(rng.lognormvariate(0, 0.8) * max_response / 2)))
            samples.append(Sample(prompt, [rng.randrange(1, vocab) for _ in range(size)], group))
    return samples


def padded_tokens(samples: list[Sample], batches: list[list[int]]) -> int:
    return sum(len(b) * max(samples[i].length for i in b) for b in batches)


def counts(seed: int) -> None:
    rng = random.Random(seed)
    budget, ranks, prompts = 16384, 8, 128
    samples = make_samples(prompts, 8, 8192, 1000, rng)
    per_rank = [samples[r * len(samples) // ranks : (r + 1) * len(samples) // ranks] for r in range(ranks)]
    real = sum(s.length for s in samples)
    padded_batches = [pack(share, budget) for share in per_rank]
    padded = sum(padded_tokens(share, b) for share, b in zip(per_rank, padded_batches))
    fewest = max(len(budget_micro_batches([s.length for s in share], budget)) for share in per_rank)
    packed_batches = [budget_micro_batches([s.length for s in share], budget, fewest) for share in per_rank]
    loads = [sum(share[i].length for i in b) for share, bs in zip(per_rank, packed_batches) for b in bs]
    print(f"1. recipe sizes: {prompts} prompts x 8 samples, 8K responses, {budget} tokens per micro-batch, "
          f"{ranks} ranks")
    print(f"   real tokens {real:,}; padded rows compute {padded:,} ({padded / real:.2f}x the real tokens); "
          f"packed rows {real:,} (1.00x)")
    print(f"   micro-batches per rank: padded {max(len(b) for b in padded_batches)} (ranks need "
          f"{sorted(len(b) for b in padded_batches)}, the others run empty passes), packed {fewest} on every rank")
    print(f"   mean real tokens per micro-batch: padded {real / sum(len(b) for b in padded_batches):,.0f}, "
          f"packed {real / (fewest * ranks):,.0f}")
    print(f"   packed micro-batch real tokens: min {min(loads):,}, mean {statistics.mean(loads):,.0f}, "
          f"max {max(loads):,} (budget {budget:,})")


def timing(seed: int, repeats: int) -> None:
    rng = random.Random(seed)
    vocab, budget = 4096, 2048
    config = transformers.Qwen2Config(vocab_size=vocab, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).train()
    samples = make_samples(4, 8, 512, vocab, rng, prompt_range=(15, 75))
    routes = {"padded": (pack(samples, budget), False),
              "packed": (budget_micro_batches([s.length for s in samples], budget), True)}
    real = sum(s.length for s in samples)
    results = {}
    for name, (batches, packed) in routes.items():
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for batch in batches:
                chunk = [samples[i] for i in batch]
                logp = response_logprobs(model, chunk, 0, 0.7, packed=packed)[0]
                logp.sum().backward()
            best = min(best, time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
        computed = padded_tokens(samples, batches) if not packed else real
        results[name] = best
        print(f"   {name}: {len(batches)} micro-batches, {computed:,} tokens computed "
              f"({computed / real:.2f}x real), {best:.2f} s forward + backward")
    print(f"   packed / padded time: {results['packed'] / results['padded']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counts(args.seed)
    print(f"2. time on this CPU ({args.threads} thread(s)): 4 prompts x 8 samples, responses up to 512 tokens, "
          "width-128 2-layer Qwen2, 2,048 tokens per micro-batch")
    timing(args.seed, args.repeats)


if __name__ == "__main__":
    main()
