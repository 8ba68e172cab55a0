"""GSM8K for the real-model recipe: a deterministic held-out split and SFT targets that end in \\boxed{}.

Only GSM8K's test set ships with the project (no train split, no hub), so the recipe splits it in two by a hash
of each problem's text: a held-out part that is only ever evaluated, and a disjoint part for the SFT warm start and
GRPO. The hash (not the file's order) decides, so a row keeps its side when rows are added, removed or reordered.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

_CALCULATOR = re.compile(r"<<[^<>]*>>")
_FINAL = re.compile(r"\n?####\s*(.+?)\s*$", re.S)


def final_answer(solution: str) -> str:
    """The answer after GSM8K's `####` marker, as curation reads it (data/answers.py)."""
    from deepscaler.data.answers import from_solution

    answers = from_solution(solution) if _FINAL.search(solution) else []
    if not answers:
        raise ValueError(f"no '####' answer in solution: {solution[-60:]!r}")
    return answers[0]


def boxed_solution(solution: str) -> str:
    """The worked solution without calculator annotations (`<<48/2=24>>`), ending in the boxed answer."""
    answer = final_answer(solution)
    steps = _CALCULATOR.sub("", _FINAL.sub("", solution)).strip()
    return f"{steps}\nThe answer is $\\boxed{{{answer}}}$."


def step_count(solution: str) -> int:
    """Lines of working before the `####` answer: a rough difficulty."""
    return len([line for line in _FINAL.sub("", solution).splitlines() if line.strip()])


def is_heldout(problem: str, heldout_share: float) -> bool:
    """Whether a problem belongs to the held-out side: the first 8 bytes of SHA-256 of its text, as a fraction."""
    digest = hashlib.sha256(problem.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < heldout_share


def split_rows(rows: Sequence[dict], heldout_share: float) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows), each as {id, problem, answer, solution, steps}, in file order."""
    train, heldout = [], []
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("problem"), str) or not isinstance(
                row.get("solution"), str):
            raise ValueError(f"row {index + 1}: GSM8K rows need `problem` and `solution` text")
        record = {"id": f"gsm8k-{index}", "problem": row["problem"], "answer": final_answer(row["solution"]),
                  "solution": row["solution"], "steps": step_count(row["solution"])}
        (heldout if is_heldout(row["problem"], heldout_share) else train).append(record)
    return train, heldout
