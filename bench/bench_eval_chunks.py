"""Evaluation with large generate calls (the GSM8K recipe's chunks of 192 sequences) against `deepscaler eval`'s
default of 8 problems per call (the baseline).

The built-in engine batches continuously within one call, but a call ends with its longest response: the last
steps of a call run on a few sequences while the cores could decode many. Larger calls pay that tail less often.
Workload: the first --problems GSM8K problems × --samples samples, 256 tokens, temperature 0.7, through
deepscaler.eval on SmolLM2-135M-Instruct (`deepscaler model import-gguf` first) or any --model, threads "auto".
Every problem has its own seed, so both runs draw the same samples (up to float rounding): pass@1 is printed
for both as a check.

    .venv-test/bin/python bench/bench_eval_chunks.py [--model PATH|HUB_ID] [--problems 48] [--samples 4]
        [--chunks 8,48]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from deepscaler.eval.generate import run_eval
from deepscaler.eval.runner import EvalSettings
from deepscaler.inference import LLM
from deepscaler.inference.hub import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--problems", type=int, default=48)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--chunks", default="8,48", help="problems per generate call; the first is the baseline")
    args = parser.parse_args()
    chunks = [int(c) for c in args.chunks.split(",")]
    with tempfile.TemporaryDirectory() as tmp, LLM(model=str(resolve_model(args.model)), engine="builtin", seed=0,
                                                   kv_cache_gb=1.0, num_threads="auto") as llm:
        settings = EvalSettings(benchmarks=["gsm8k"], n=args.samples, temperature=0.7, top_p=1.0, max_tokens=256,
                                seed=0, limit=args.problems)
        print(f"{args.model}: {args.problems} GSM8K problems x {args.samples} samples, 256 tokens")
        print(f"{'problems per call':>17} {'sequences':>9} {'wall':>8} {'ratio':>6} {'pass@1':>7} {'mean length':>11}")
        baseline = None
        for chunk in chunks:
            begin = time.perf_counter()
            summary = run_eval(llm, replace(settings, problems_per_chunk=chunk), Path(tmp) / f"chunk{chunk}",
                               model={"name": args.model}, workers=2, show=False)
            wall = time.perf_counter() - begin
            baseline = baseline or wall
            print(f"{chunk:>17} {chunk * args.samples:>9} {wall:>7.1f}s {baseline / wall:>5.2f}x "
                  f"{summary['pass@1']:>7.3f} {summary['mean_length']:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
