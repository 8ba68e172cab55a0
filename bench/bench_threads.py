"""The built-in engine's thread setting on a model past 100M parameters, on whatever load the host has.

Workload: the ~146M-parameter "medium" random Qwen2 (about SmolLM2-135M's size, so data_parallel="auto"
keeps it in one process), float32. Two calls: a chat turn (1 prompt, 25 new tokens, greedy: what
`deepscaler chat` does) and a small batch (--batch prompts, default 8, x 32 new tokens). Each num_threads setting runs
--repeats times, the settings interleaved so that a change of load hits all alike; the median and the
worst are reported, with the load average and the usable CPUs at the start. --busy N runs N CPU-bound
processes (a Python busy loop each) throughout, the issue's "another CPU-bound process".

    .venv/bin/python bench/bench_threads.py [--repeats 3] [--settings 2,1,auto] [--busy 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def engine_options(setting: str) -> dict:
    """A --settings entry as engine options: a thread count, auto, default, or dp2 (two processes, 1 thread each)."""
    if setting == "default":
        return {}
    if setting == "dp2":
        return {"data_parallel": 2, "num_threads": 2}
    return {"num_threads": setting if setting == "auto" else int(setting), "data_parallel": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes to run meanwhile")
    parser.add_argument("--settings", default="2,1,auto",
                        help="num_threads values; 'default' is what the engine does when none is given, 'dp2' two "
                             "data-parallel processes of 1 thread each")
    parser.add_argument("--batch", type=int, default=8, help="prompts in the batch call (dp2 splits 16 or more)")
    parser.add_argument("--model", type=Path, help="a model folder (default: build the medium preset)")
    args = parser.parse_args()

    from deepscaler.inference import SamplingParams
    from deepscaler.inference.engines.builtin import BuiltinEngine
    from deepscaler.inference.models import count_parameters, make_tiny_model

    model = args.model or make_tiny_model(Path(tempfile.mkdtemp()) / "medium", preset="medium", seed=0)
    print(f"model: {count_parameters(model) / 1e6:.0f}M parameters; usable CPUs {len(os.sched_getaffinity(0))}; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    settings = args.settings.split(",")
    # A small KV cache each: the engines live side by side.
    engines = {s: BuiltinEngine(model, kv_cache_gb=0.25, **engine_options(s)) for s in settings}
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    tokenizer = next(iter(engines.values())).tokenizer
    chat = [tokenizer.apply_chat_template([{"role": "user", "content": "What is 17 + 25?"}], tokenize=False,
                                          add_generation_prompt=True)]
    batch = [f"Question {i}: what is {3 * i} + {5 * i}?" for i in range(args.batch)]
    calls = {
        "chat turn (1 x 25 tokens)": ([tokenizer(t)["input_ids"] for t in chat],
                                      SamplingParams(temperature=0, max_tokens=25, ignore_eos=True)),
        f"batch ({args.batch} x 32 tokens)": ([tokenizer(t)["input_ids"] for t in batch],
                                  SamplingParams(temperature=1.0, seed=0, max_tokens=32, ignore_eos=True)),
    }
    for name, (prompts, params) in calls.items():
        times: dict = {s: [] for s in settings}
        for engine in engines.values():  # warm-up: first-call allocations and kernel compilation
            engine.generate(prompts[:1], [params])
        for _ in range(args.repeats):
            for setting, engine in engines.items():
                start = time.perf_counter()
                engine.generate(prompts, [params] * len(prompts))
                times[setting].append(time.perf_counter() - start)
        print(f"\n{name}; load average now {os.getloadavg()[0]:.1f}")
        for setting, values in times.items():
            print(f"  num_threads={setting!s:8} median {statistics.median(values):6.2f} s   "
                  f"worst {max(values):6.2f} s")
    for engine in engines.values():
        engine.close()
    for spinner in spinners:
        spinner.kill()


if __name__ == "__main__":
    main()
