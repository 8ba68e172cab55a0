"""Throughput and memory of `deepscaler data prepare` on a synthetic input of a few hundred thousand rows.

The input is generated on the fly (seeded) as JSON lines: word problems from a dozen templates with random
names, objects and numbers, so that texts are diverse the way a real corpus is, plus planted exact duplicates
(5%), re-typeset near duplicates (5%), rows whose answer is only in a boxed solution (10%), ungradable answers
(1%) and bad rows (0.5%). It then runs the full pipeline (decontamination against the standard benchmarks
when the shared data is found) and prints rows/s, CPU time, peak memory (max RSS of this process) and the
drops per step.

    .venv/bin/python bench/bench_data_prepare.py [--rows 300000] [--format deepscaler|verl] [--shuffle]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from deepscaler.data import Settings, prepare
from deepscaler.prompting import DEFAULT_BENCHMARKS

NAMES = ["Ava", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal", "Lena"]
THINGS = ["apples", "marbles", "stamps", "coins", "books", "pencils", "shells", "cards", "tiles", "beads"]
TEMPLATES = [
    ("{n1} has {a} {t1} and buys {b} more {t1}. {n2} has {c} {t2}. How many {t1} does {n1} have now?",
     lambda a, b, c: a + b),
    ("Find the remainder when ${a}^{{{b}}}$ is divided by ${c}$.", lambda a, b, c: pow(a, b, c)),
    ("A rectangle has sides of length ${a}$ and ${b}$. {n1} cuts a square of side ${c}$ from a corner. "
     "What is the area of the remaining region?", lambda a, b, c: a * b - c * c),
    ("What is the sum of all positive integers $k \\le {a}$ such that $k$ is divisible by ${c}$?",
     lambda a, b, c: sum(range(c, a + 1, c))),
    ("The sequence $x_1 = {a}$, $x_{{n+1}} = x_n + {b}$ is written on a board by {n1}. "
     "What is $x_{{{c}}}$?", lambda a, b, c: a + (c - 1) * b),
    ("{n1} and {n2} share {a} {t1} so that {n1} gets {b} more than {n2}. How many does {n2} get, "
     "if {n2} also finds {c} {t2} on the way?", lambda a, b, c: (a - b) // 2),
    ("Let $f(x) = {a}x^2 + {b}x + {c}$. Compute $f({c})$.", lambda a, b, c: a * c * c + b * c + c),
    ("In a class of {a} students, {b} play chess and {c} play go; every student plays at least one. "
     "How many students play both?", lambda a, b, c: b + c - a),
    ("How many ordered pairs $(x, y)$ of positive integers satisfy $x + y = {a}$ and $x > {c}$?",
     lambda a, b, c: max(0, a - 1 - c)),
    ("A bag holds {a} red and {b} blue {t1}. {n1} draws {c} of them. What is the largest number of red "
     "{t1} that {n1} can draw?", lambda a, b, c: min(a, c)),
    ("Compute ${a} \\times {b} - {c}$.", lambda a, b, c: a * b - c),
    ("The average of {a}, {b} and $x$ is {c}. What is $x$?", lambda a, b, c: 3 * c - a - b),
]


def synthetic_rows(count: int, seed: int):
    """Yield `count` JSON lines of problems with planted duplicates and faults."""
    rng = random.Random(seed)
    recent: list[dict] = []
    for index in range(count):
        roll = rng.random()
        if roll < 0.05 and recent:
            yield json.dumps({**rng.choice(recent), "problem": rng.choice(recent)["problem"].upper()})
            continue
        if roll < 0.10 and recent:
            source = rng.choice(recent)
            yield json.dumps({**source, "problem": source["problem"].replace(" ", "  ").replace("$", "")})
            continue
        if roll < 0.105:
            yield json.dumps({"problem": None, "answer": "1"}) if roll < 0.1025 else "{broken"
            continue
        template, solve = rng.choice(TEMPLATES)
        a, b, c = rng.randint(20, 9999), rng.randint(2, 999), rng.randint(2, 97)
        text = template.format(a=a, b=b, c=c, n1=rng.choice(NAMES), n2=rng.choice(NAMES), t1=rng.choice(THINGS),
                               t2=rng.choice(THINGS))
        row = {"id": f"syn-{index}", "problem": text, "answer": str(solve(a, b, c)), "difficulty": rng.randint(1, 5)}
        if roll < 0.2:
            row["solution"], row["answer"] = f"Working it out gives $\\boxed{{{row['answer']}}}$.", None
        elif roll < 0.21:
            row["answer"] = "\\text{see the figure}\\triangle"
        recent = (recent + [row])[-1000:]
        yield json.dumps(row)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--format", choices=("deepscaler", "verl"), default="deepscaler")
    parser.add_argument("--shuffle", action="store_true")
    args = parser.parse_args()
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"
    benchmarks = DEFAULT_BENCHMARKS if shared.is_dir() else ()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "synthetic.jsonl"
        started = time.perf_counter()
        with source.open("w") as handle:
            for line in synthetic_rows(args.rows, seed=0):
                handle.write(line + "\n")
        generated = time.perf_counter() - started
        settings = Settings(decontaminate=benchmarks, data_dir=str(shared), layout=args.format, shuffle=args.shuffle)
        cpu = time.process_time()
        report = prepare([str(source)], Path(tmp) / "train.parquet", settings)
        cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"input: {args.rows} synthetic rows ({source.name}, generated in {generated:.1f} s); "
          f"decontamination set: {', '.join(benchmarks) or 'none (shared data not found)'}")
    for name, step in report.steps.items():
        print(f"  {name:>14}: {step.rows_in:>8} in {step.dropped:>7} dropped {step.rows_out:>8} out")
    print(f"prepare: {report.seconds:.1f} s wall ({cpu:.1f} s CPU), {report.rows_read / report.seconds:,.0f} rows/s, "
          f"{report.rows_written} rows written ({args.format}{', shuffled' if args.shuffle else ''}), "
          f"peak memory {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
