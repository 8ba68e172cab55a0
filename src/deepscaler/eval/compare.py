"""Paired comparison of two evaluation runs: per-benchmark pass@1 deltas with bootstrap intervals."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from deepscaler.eval.metrics import mean
from deepscaler.eval.results import read_records


def problem_scores(run_dir: Path) -> dict[str, dict[str, float]]:
    """benchmark -> problem id -> pass@1 (mean reward over that problem's samples)."""
    path = Path(run_dir) / "samples.jsonl"
    records = read_records(path)
    if not records:
        raise ValueError(f"{path}: no samples (is {run_dir} an evaluation output directory?)")
    rewards: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        rewards[record.benchmark][record.problem_id].append(float(record.reward or 0.0))
    return {name: {pid: mean(values) for pid, values in problems.items()} for name, problems in rewards.items()}


def bootstrap_delta(a: list[float], b: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(b) - mean(a), resampling problems (pairs) with replacement."""
    rng = random.Random(seed)
    n = len(a)
    deltas = []
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        deltas.append(sum(b[i] - a[i] for i in picks) / n)
    deltas.sort()
    return deltas[int(0.025 * resamples)], deltas[min(resamples - 1, int(0.975 * resamples))]


def compare_runs(dir_a: Path, dir_b: Path, resamples: int = 2000, seed: int = 0) -> list[dict]:
    """One row per benchmark present in both runs, over the problems both evaluated."""
    scores_a, scores_b = problem_scores(dir_a), problem_scores(dir_b)
    rows = []
    for name in sorted(set(scores_a) & set(scores_b)):
        shared = sorted(set(scores_a[name]) & set(scores_b[name]))
        if not shared:
            continue
        a = [scores_a[name][pid] for pid in shared]
        b = [scores_b[name][pid] for pid in shared]
        low, high = bootstrap_delta(a, b, resamples, seed)
        rows.append({"benchmark": name, "problems": len(shared), "a": mean(a), "b": mean(b),
                     "delta": mean(b) - mean(a), "ci_low": low, "ci_high": high})
    if not rows:
        raise ValueError(f"{dir_a} and {dir_b} share no benchmark problems")
    return rows
