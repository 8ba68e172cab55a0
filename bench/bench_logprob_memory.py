"""Peak memory of the LM head's log-probs and entropies, forward and backward, at DeepSeek-R1-Distill-Qwen-1.5B's
widths (hidden 1536, vocabulary 151,936) on the CPU: `lm_head_logprobs` against the logits route the trainer took
before it (the (N, V) logits in the compute dtype, `.float()`, then `token_logprobs` and `entropy_from_logits`).

Workload (the same on both sides): N = 8,192 response tokens of final hidden states in the compute dtype (as the
lean forward hands them over) and the float32 head weight (the model's master copy), both requiring grad; the loss
weighs each log-prob and each entropy by a fixed random number, as the GRPO loss with an entropy bonus does;
temperature 0.6 (the presets' sampling temperature). bfloat16 compute by default, the dtype configs/deepscaler-1.5b.yaml
trains in (`--dtype float32` for the exact route).

Each route runs once in a process of its own, and its figure is the growth of that process's peak RSS
(getrusage's ru_maxrss, which sees torch's CPU allocations) from just before the forward to just after the
backward: the logits, everything autograd keeps, the backward's buffers and the gradients, the weight's float32
gradient (0.93 GB, the same on both sides) included. A process's address space is capped (`--cap-gb`, default 80%
of the memory available at start) so that a route needing more fails with an allocation error rather than wake the
OOM killer of a shared machine; such a route is reported as over the cap.

    .venv/bin/python bench/bench_logprob_memory.py [--tokens 8192] [--dtype bfloat16|float32] [--cap-gb G]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HIDDEN, VOCAB, TEMPERATURE = 1536, 151_936, 0.6
GB = 1e9
WEIGHT_GRAD = VOCAB * HIDDEN * 4  # the head weight's float32 gradient, the same on both sides


def meminfo_bytes(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def cap_address_space(cap_bytes: int) -> None:
    """Allow this process `cap_bytes` of address space beyond what it maps now."""
    mapped = int(next(line for line in Path("/proc/self/status").read_text().splitlines()
                      if line.startswith("VmSize:")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mapped + cap_bytes, resource.RLIM_INFINITY))


def run_route(route: str, tokens: int, dtype_name: str, cap_bytes: int) -> dict:
    """One forward and backward of `route`: its peak RSS growth (bytes), wall and CPU seconds (in this process)."""
    import torch
    import torch.nn.functional as F

    from deepscaler.algorithms import entropy_from_logits, lm_head_logprobs, token_logprobs

    torch.manual_seed(0)
    dtype = getattr(torch, dtype_name)
    # Filled in place: a transient copy would raise the peak before the measurement starts.
    weight = torch.empty(VOCAB, HIDDEN).normal_(std=0.02).requires_grad_()
    hidden = torch.empty(tokens, HIDDEN, dtype=dtype).normal_().requires_grad_()
    ids = torch.randint(0, VOCAB, (tokens,))
    upstream = torch.randn(2, tokens)
    cap_address_space(cap_bytes)
    before, start, cpu = peak_rss_bytes(), time.perf_counter(), time.process_time()
    capped = False
    try:
        if route == "logits":
            logits = F.linear(hidden, weight.to(dtype)).float()
            logp, entropy = token_logprobs(logits, ids, TEMPERATURE), entropy_from_logits(logits, TEMPERATURE)
            del logits
        else:
            logp, entropy = lm_head_logprobs(hidden, weight, ids, TEMPERATURE, entropy=True, compute_dtype=dtype)
        ((logp * upstream[0]).sum() + (entropy * upstream[1]).sum()).backward()
        assert weight.grad is not None and hidden.grad is not None
    except RuntimeError as error:  # torch's allocation failure at the cap
        if "allocate" not in str(error):
            raise
        capped = True
    return {"capped": capped, "growth": peak_rss_bytes() - before, "seconds": time.perf_counter() - start,
            "cpu": time.process_time() - cpu}


def measure(route: str, args: argparse.Namespace) -> dict:
    """`route` in a fresh process, so that each peak starts from the same footprint."""
    command = [sys.executable, __file__, "--child", route, "--tokens", str(args.tokens), "--dtype", args.dtype,
               "--cap-gb", str(args.cap_gb)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def describe(result: dict, cap_gb: float) -> str:
    if result["capped"]:
        return (f"over {cap_gb:.1f} GB (an allocation failed at the cap after {result['seconds']:.1f} s, "
                f"{result['cpu']:.1f} s CPU)")
    beyond = (result["growth"] - WEIGHT_GRAD) / GB
    return (f"{result['growth'] / GB:6.2f} GB ({beyond:5.2f} GB beyond the weight's gradient), "
            f"{result['seconds']:6.1f} s ({result['cpu']:.1f} s CPU)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--cap-gb", type=float, default=round(0.8 * meminfo_bytes("MemAvailable") / GB, 1))
    parser.add_argument("--child", choices=("logits", "fused"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_route(args.child, args.tokens, args.dtype, int(args.cap_gb * GB))))
        return 0

    import torch

    print(f"LM-head log-probs + entropies, forward and backward, on the CPU ({torch.get_num_threads()} threads): "
          f"{args.tokens:,} tokens, hidden {HIDDEN}, vocabulary {VOCAB:,} (DeepSeek-R1-Distill-Qwen-1.5B's head), "
          f"{args.dtype} compute{' (configs/deepscaler-1.5b.yaml)' if args.dtype == 'bfloat16' else ''}, "
          f"float32 weight, T = {TEMPERATURE}; peak RSS growth, address space capped at {args.cap_gb:.1f} GB")
    logits, fused = measure("logits", args), measure("fused", args)
    print(f"  logits route (token_logprobs + entropy_from_logits): {describe(logits, args.cap_gb)}")
    print(f"  lm_head_logprobs:                                    {describe(fused, args.cap_gb)}")
    if fused["capped"]:
        print("  lm_head_logprobs did not fit under the cap")
        return 1
    # A capped route grew by more than the cap: its ratio is a lower bound.
    bound, baseline = ("more than ", args.cap_gb * GB) if logits["capped"] else ("", logits["growth"])
    print(f"  memory: {bound}{baseline / fused['growth']:.1f}x less with lm_head_logprobs ({bound}"
          f"{(baseline - WEIGHT_GRAD) / (fused['growth'] - WEIGHT_GRAD):.0f}x beyond the weight's gradient)")
    if not logits["capped"]:
        print(f"  time: lm_head_logprobs {fused['seconds'] / logits['seconds']:.2f}x the logits route's "
              f"({fused['cpu'] / logits['cpu']:.2f}x in CPU seconds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
