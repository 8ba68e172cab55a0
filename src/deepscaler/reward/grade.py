"""The verifier's public calls: is a given answer equal to the gold, and what reward does a response earn.

Two stages: exact rationals in this process (bounded by construction: linear parsing, size guards; this
settles integers, fractions, decimals, percentages and their sets, tuples and intervals), then SymPy in a
killable child process for whatever remains, with a time limit. Anything that fails scores 0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from deepscaler.reward.equivalence import answers_equal
from deepscaler.reward.evaluate import NeedsSymbolic
from deepscaler.reward.extract import extract_answer
from deepscaler.reward.workers import shared_workers

DEFAULT_TIMEOUT = 1.0
Gold = str | int | float | Sequence[Any] | None

# Set in grading children: there the parent enforces the time limit, so SymPy runs inline.
_IN_WORKER = os.environ.get("DEEPSCALER_REWARD_WORKER") == "1"


def gold_answers(gold: Gold) -> list[str]:
    """The acceptable answers as strings: a list gives alternatives; 142.0 is "142"; None gives none."""
    if isinstance(gold, bool) or gold is None:
        return []
    if isinstance(gold, str):
        return [gold]
    if isinstance(gold, int):
        return [str(gold)]
    if isinstance(gold, float):
        if not math.isfinite(gold):
            return []
        return [str(int(gold))] if gold.is_integer() else [repr(gold)]
    if isinstance(gold, (list, tuple)):
        return [answer for item in gold for answer in gold_answers(item)]
    return []


def fast_equivalent(given: str, golds: list[str]) -> bool | None:
    """Decide with exact rationals only; None when some gold needs SymPy to decide."""
    undecided = False
    for gold in golds:
        try:
            if answers_equal(given, gold, symbolic=False):
                return True
        except NeedsSymbolic:
            undecided = True
    return None if undecided else False


def is_equivalent(given: str, gold: Gold, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """True when `given` is mathematically equal to the gold (or to any gold in a list).

    Returns within `timeout` seconds of work from any thread (a cold grading process adds its start-up,
    about half a second, once); a time-out counts as not equal. Never raises for any input.
    """
    try:
        if not isinstance(given, str):
            return False
        golds = gold_answers(gold)
        decided = fast_equivalent(given, golds)
        if decided is not None:
            return decided
        if _IN_WORKER:
            return any(answers_equal(given, answer, symbolic=True) for answer in golds)
        reply = shared_workers.run({"given": given, "golds": golds}, timeout)
        return bool(reply and reply.get("value"))
    except Exception:  # the verifier's contract: any input gives an answer, never an exception
        return False


def math_reward(
    response: str, gold: Gold, think: str = "optional", timeout: float = DEFAULT_TIMEOUT
) -> float:
    """1.0 when the response's final boxed answer equals the gold, else 0.0. Never raises."""
    try:
        answer = extract_answer(response, think=think)
    except Exception:
        return 0.0
    if answer is None:
        return 0.0
    return 1.0 if is_equivalent(answer, gold, timeout=timeout) else 0.0


def grade_in_process(request: dict[str, Any]) -> float:
    """Serve one request from a parent process (see worker.py), SymPy allowed: 1.0 when the extracted answer
    `given` equals one of `golds`, else 0.0."""
    golds = request["golds"]
    given = request.get("given")
    if not isinstance(given, str):
        return 0.0
    try:
        return float(any(answers_equal(given, gold, symbolic=True) for gold in golds))
    except Exception:
        return 0.0
