"""Gold answers for training: taken from the solution when a row has none, kept only when gradable.

A gold the verifier cannot check gives every response a reward of 0: the problem then teaches nothing
and wastes rollouts, which is why DeepScaleR dropped such rows (41,912 -> 41,257).
"""

from __future__ import annotations

import re

from deepscaler.reward import is_equivalent
from deepscaler.reward.equivalence import UnusableAnswer, prepare
from deepscaler.reward.extract import last_boxed

_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def from_solution(solution: str | None) -> list[str]:
    """The answer a worked solution ends with: its last `\\boxed{}`, else GSM8K's `#### x`; [] when neither."""
    if not solution:
        return []
    boxed = last_boxed(solution)
    if boxed is not None and boxed.strip():
        return [boxed.strip()]
    if "####" in solution:
        tail = solution.rsplit("####", 1)[1].strip()
        if tail:
            return [tail.replace(",", "") if _THOUSANDS.match(tail) else tail]
    return []


def ungradable_reason(answer: str) -> str | None:
    """Why the verifier cannot grade this gold, or None when it can.

    Gradable means the verifier accepts it, understands it (as an expression, words or a choice letter)
    and finds it equal to itself: a gold that fails the last test could never be matched by any response.
    """
    try:
        prepared = prepare(answer)
    except UnusableAnswer as error:
        return f"refused by the verifier ({error})"
    if prepared.tree is None and not prepared.words and not prepared.letter:
        return "does not parse"
    if not is_equivalent(answer, answer):
        return "not equal to itself"
    return None


def gradable_answers(answers: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The answers the verifier can grade, in order, and (answer, reason) for each one it cannot."""
    kept, refused = [], []
    for answer in answers:
        reason = ungradable_reason(answer)
        if reason is None:
            kept.append(answer)
        else:
            refused.append((answer, reason))
    return kept, refused
