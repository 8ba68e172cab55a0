"""`deepscaler demo`: the verifier at work on built-in examples and a batch of 2,048 responses."""

from __future__ import annotations

import argparse
import time

EXAMPLES = [
    ("<think>7 * 6 = 42</think> The answer is $\\boxed{42}$.", "42"),
    ("...so the probability is </think> $\\boxed{\\dfrac{3}{6}}$", "0.5"),
    ("</think> Thus the side is $\\boxed{2\\sqrt{2}}$ cm.", "\\sqrt{8}"),
    ("</think> The solution set is $\\boxed{(-\\infty, 2]}$.", "x \\le 2"),
    ("</think> $\\boxed{\\{3, 1, 2\\}}$", "\\{1,2,3\\}"),
    ("</think> The answer is $\\boxed{7 \\text{ or } 8}$.", "7"),
    ("</think> $\\boxed{0.333}$", "\\frac{1}{3}"),
    ("<think>I think it is \\boxed{12}, let me keep checking", "12"),
    ("</think> $\\boxed{9^{9^{9^9}}}$", "1"),
    ("</think> $\\boxed{__import__('os').system('id')}$", "0"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=2048, help="size of the batch-scoring demo (default 2048)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from deepscaler.reward import RewardScorer, extract_answer, math_reward

    console = Console()
    table = Table(title="deepscaler's outcome reward on built-in examples")
    for column in ("response", "gold", "extracted", "reward", "ms"):
        table.add_column(column, overflow="fold")
    for response, gold in EXAMPLES:
        start = time.perf_counter()
        reward = math_reward(response, gold)
        elapsed = (time.perf_counter() - start) * 1000
        table.add_row(response[-60:], gold, str(extract_answer(response)), f"{reward:.0f}", f"{elapsed:.2f}")
    console.print(table)
    responses = [response for response, _ in EXAMPLES] * (args.batch // len(EXAMPLES) + 1)
    golds = [gold for _, gold in EXAMPLES] * (args.batch // len(EXAMPLES) + 1)
    with RewardScorer(workers=2) as scorer:
        scores = scorer.score(responses[: args.batch], golds[: args.batch])
        stats = scorer.stats
    console.print(
        f"Batch of {len(scores)} responses scored in {stats.seconds:.2f} s with 2 workers: "
        f"{stats.correct} correct, {stats.no_answer} without an answer, {stats.timeouts} time-outs."
    )
    return 0
