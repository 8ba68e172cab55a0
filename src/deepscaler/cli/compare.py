"""`deepscaler compare`: per-benchmark pass@1 deltas between two evaluation runs, with bootstrap CIs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepscaler.cli import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=Path, help="baseline evaluation directory")
    parser.add_argument("run_b", type=Path, help="evaluation directory compared against it")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print rows as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from deepscaler.eval.compare import compare_runs

    for directory in (args.run_a, args.run_b):
        if not (directory / "samples.jsonl").is_file():
            raise UsageError(f"{directory}: no samples.jsonl (not an evaluation output directory)")
    try:
        rows = compare_runs(args.run_a, args.run_b, args.resamples, args.seed)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"pass@1: {args.run_b} vs {args.run_a} (95% bootstrap CI over problems)")
    for column in ("benchmark", "problems", "A", "B", "B - A", "95% CI"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for row in rows:
        table.add_row(row["benchmark"], str(row["problems"]), f"{100 * row['a']:.1f}", f"{100 * row['b']:.1f}",
                      f"{100 * row['delta']:+.1f}", f"[{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}]")
    Console().print(table)
    return 0
