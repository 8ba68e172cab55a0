"""A synthetic math curriculum with exact answers, and a programmatic teacher that writes worked solutions.

Four families (arithmetic chains, linear equations, modular powers, fraction sums) share one difficulty
knob, 1 (easy) to MAX_DIFFICULTY (hard): a harder problem needs more reasoning steps, so its worked
solution is longer and a short response budget cuts it off. Problems and answers are written in the
LaTeX the verifier reads (`\\frac{13}{12}`, `-7`).

The teacher solves a problem from its `spec` (the numbers it was generated from) step by step. With
probability `error_rate` it makes one plausible slip (a step's result off by a little) and carries the
wrong value through to a wrong boxed answer: a model distilled from such traces makes the same kind of
slips some of the time, which is what leaves room for RL on a verifiable reward.

Held-out problems are chosen by a hash of the problem text, so a problem is held out or not whatever
the seed that generated it: no training set, from any seed, can contain a held-out problem.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from typing import Any

MAX_DIFFICULTY = 5
FAMILIES = ("arithmetic", "linear", "modular", "fractions")
HELDOUT_BUCKETS = 10  # a problem is held out when its text hashes to bucket 0: a tenth of the space

Problem = dict[str, Any]


def tex(value: Fraction | int) -> str:
    """An exact number in the LaTeX a solution writes: `7`, `-3`, `\\frac{5}{6}`, `-\\frac{1}{4}`."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


class _Tape:
    """Passes step results through, except that step `slip[0]` (counting from 0) gets `slip[1]` added."""

    def __init__(self, slip: tuple[int, int] | None = None) -> None:
        self.slip = slip
        self.steps = 0

    def __call__(self, value: int) -> int:
        index, self.steps = self.steps, self.steps + 1
        if self.slip is not None and self.slip[0] == index:
            return value + self.slip[1]
        return value


# Each family: sample(rng, difficulty) -> spec; statement(spec) -> problem text;
# solve(spec, tape) -> (reasoning lines, answer). Every intermediate result goes through the tape.


def _arithmetic_sample(rng: random.Random, difficulty: int) -> dict:
    n_ops = 2 * difficulty + 1
    ops: list[str] = []
    for _ in range(n_ops):
        # No two products in a row, so every product is of two digits and stays below 100.
        choices = ["+", "-"] if ops and ops[-1] == "*" else ["+", "-", "*"]
        ops.append(rng.choice(choices))
    return {"numbers": [rng.randint(2, 9) for _ in range(n_ops + 1)], "ops": ops}


def _show(numbers: Sequence[int], ops: Sequence[str]) -> str:
    parts = [str(numbers[0])]
    for op, number in zip(ops, numbers[1:]):
        parts += ["\\times" if op == "*" else op, str(number)]
    return " ".join(parts)


def _arithmetic_statement(spec: dict) -> str:
    return f"Compute ${_show(spec['numbers'], spec['ops'])}$."


def _arithmetic_solve(spec: dict, tape: _Tape) -> tuple[list[str], Fraction]:
    numbers, ops = list(spec["numbers"]), list(spec["ops"])
    lines = []
    if "*" in ops:
        lines.append("Multiplication comes first.")
        while "*" in ops:
            i = ops.index("*")
            product = tape(numbers[i] * numbers[i + 1])
            lines.append(f"{numbers[i]} \\times {numbers[i + 1]} = {product}.")
            numbers[i : i + 2] = [product]
            del ops[i]
        lines.append(f"Now we have {_show(numbers, ops)}.")
    total = numbers[0]
    for op, number in zip(ops, numbers[1:]):
        new = tape(total + number if op == "+" else total - number)
        lines.append(f"{total} {op} {number} = {new}.")
        total = new
    return lines, Fraction(total)


def _linear_sample(rng: random.Random, difficulty: int) -> dict:
    """The equation k(ax + b) = m(cx + e) with an integer root; easier levels drop k, m and c."""
    while True:
        x, a, b = rng.randint(-9, 9), rng.randint(2, 9), rng.randint(1, 15) * rng.choice([1, -1])
        k = rng.randint(2, 4) if difficulty >= 4 else 1
        m = rng.randint(2, 3) if difficulty >= 5 else 1
        c = rng.randint(1, 4) if difficulty >= 3 else 0
        if difficulty == 1:
            a = 1
        rhs = k * (a * x + b) - m * c * x
        if rhs % m == 0 and k * a - m * c > 0:
            return {"x": x, "k": k, "a": a, "b": b, "m": m, "c": c, "e": rhs // m}


def _term(a: int, b: int) -> str:
    """`ax + b` with tidy signs (`x - 4`, `3x + 2`, `5x`), or the constant alone when a is 0."""
    if a == 0:
        return str(b)
    head = "x" if a == 1 else f"{a}x"
    return head if b == 0 else f"{head} {'+' if b > 0 else '-'} {abs(b)}"


def _side(factor: int, a: int, b: int) -> str:
    return _term(a, b) if factor == 1 else f"{factor}({_term(a, b)})"


def _linear_statement(spec: dict) -> str:
    s = spec
    return f"Solve ${_side(s['k'], s['a'], s['b'])} = {_side(s['m'], s['c'], s['e'])}$ for $x$."


def _linear_solve(spec: dict, tape: _Tape) -> tuple[list[str], Fraction]:
    k, a, b, m, c, e = (spec[key] for key in ("k", "a", "b", "m", "c", "e"))
    lines = []
    if k > 1:
        a_out, b_out = tape(k * a), tape(k * b)
        lines.append(f"Expand the left side: {k}({_term(a, b)}) = {_term(a_out, b_out)}.")
        a, b = a_out, b_out
    if m > 1:
        c_out, e_out = tape(m * c), tape(m * e)
        lines.append(f"Expand the right side: {m}({_term(c, e)}) = {_term(c_out, e_out)}.")
        c, e = c_out, e_out
    if c:
        d = tape(a - c)
        lines.append(f"Move the x terms to the left: {a}x - {c}x = {_term(d, 0)}.")
        a = d
    if a == 0:
        raise ZeroDivisionError("a slip cancelled the x terms")
    rhs = tape(e - b)
    if b >= 0:
        lines.append(f"Subtract {b} from both sides: {_term(a, 0)} = {e} - {b} = {rhs}.")
    else:
        lines.append(f"Add {-b} to both sides: {_term(a, 0)} = {e} + {-b} = {rhs}.")
    x = Fraction(rhs, a)
    if a != 1:
        lines.append(f"Divide both sides by {a}: x = {rhs} / {a} = {tex(x)}.")
    return lines, x


def _modular_sample(rng: random.Random, difficulty: int) -> dict:
    modulus = rng.randint(5, 13)
    base = rng.randint(2, 99)
    while base % modulus in (0, 1):
        base = rng.randint(2, 99)
    # One exponent per difficulty, so the same problem text never appears at two difficulties.
    return {"base": base, "exponent": difficulty + 2, "modulus": modulus}


def _modular_statement(spec: dict) -> str:
    return f"Find the remainder when ${spec['base']}^{{{spec['exponent']}}}$ is divided by ${spec['modulus']}$."


def _modular_solve(spec: dict, tape: _Tape) -> tuple[list[str], Fraction]:
    base, exponent, modulus = spec["base"], spec["exponent"], spec["modulus"]
    reduced = residue = base % modulus
    lines = [f"{base} mod {modulus} = {reduced}, so we multiply by {reduced}."]
    for power in range(2, exponent + 1):
        product = tape(residue * reduced)
        if product < 0:
            raise ValueError("a slip made a product negative")
        lines.append(f"{base}^{{{power}}}: {residue} \\cdot {reduced} = {product}, "
                     f"{product} mod {modulus} = {product % modulus}.")
        residue = product % modulus
    return lines, Fraction(residue)


FRACTION_DENOMINATORS = (2, 3, 4, 6, 8, 12)  # all divide 24, so every common denominator stays small


def _fractions_sample(rng: random.Random, difficulty: int) -> dict:
    terms = []
    for _ in range(difficulty + 1):
        denominator = rng.choice(FRACTION_DENOMINATORS)
        numerator = rng.choice([k for k in range(1, denominator) if gcd(k, denominator) == 1])
        terms.append([numerator, denominator])
    return {"terms": terms, "signs": [rng.choice("+-") for _ in range(difficulty)]}


def _fractions_statement(spec: dict) -> str:
    parts = [tex(Fraction(*spec["terms"][0]))]
    for sign, term in zip(spec["signs"], spec["terms"][1:]):
        parts += [sign, tex(Fraction(*term))]
    return f"Compute ${' '.join(parts)}$ and write the result in lowest terms."


def _lcm(a: int, b: int) -> int:
    return a * b // gcd(a, b)


def _fractions_solve(spec: dict, tape: _Tape) -> tuple[list[str], Fraction]:
    # The running sum is kept as an unreduced numerator over a common denominator, as one works by hand.
    (numerator, denominator), lines = spec["terms"][0], ["We add the fractions one at a time."]
    for sign, (top, bottom) in zip(spec["signs"], spec["terms"][1:]):
        common = _lcm(denominator, bottom)
        left, right = numerator * (common // denominator), top * (common // bottom)
        new = tape(left + right if sign == "+" else left - right)
        step = f"{_frac(numerator, denominator)} {sign} \\frac{{{top}}}{{{bottom}}} = "
        if not denominator == bottom == common:
            step += f"{_frac(left, common)} {sign} \\frac{{{right}}}{{{common}}} = "
        lines.append(step + f"{_frac(new, common)}.")
        numerator, denominator = new, common
    result = Fraction(numerator, denominator)
    if result.denominator != denominator:
        divisor = denominator // result.denominator
        lines.append(f"Divide the top and the bottom by {divisor}: {_frac(numerator, denominator)} = {tex(result)}.")
    return lines, result


def _frac(numerator: int, denominator: int) -> str:
    """An unreduced fraction as written mid-calculation."""
    sign = "-" if numerator < 0 else ""
    return f"{sign}\\frac{{{abs(numerator)}}}{{{denominator}}}"


@dataclass(frozen=True)
class Family:
    """How to generate, state and solve one kind of problem."""

    sample: Callable[[random.Random, int], dict]
    statement: Callable[[dict], str]
    solve: Callable[[dict, _Tape], tuple[list[str], Fraction]]


FAMILY_IMPLS: dict[str, Family] = {
    "arithmetic": Family(_arithmetic_sample, _arithmetic_statement, _arithmetic_solve),
    "linear": Family(_linear_sample, _linear_statement, _linear_solve),
    "modular": Family(_modular_sample, _modular_statement, _modular_solve),
    "fractions": Family(_fractions_sample, _fractions_statement, _fractions_solve),
}


def problem_id(family: str, difficulty: int, text: str) -> str:
    """A stable id from the problem text: the same problem always has the same id."""
    return f"{family}-d{difficulty}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def is_heldout(text: str) -> bool:
    """Whether a problem text belongs to the held-out part of the problem space (about a tenth of it)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") % HELDOUT_BUCKETS == 0


def make_problem(family: str, difficulty: int, rng: random.Random) -> Problem:
    """One random problem of a family at a difficulty (1 to MAX_DIFFICULTY)."""
    if family not in FAMILY_IMPLS:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    if not 1 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be in 1..{MAX_DIFFICULTY}, got {difficulty}")
    impl = FAMILY_IMPLS[family]
    spec = impl.sample(rng, difficulty)
    text = impl.statement(spec)
    _, answer = impl.solve(spec, _Tape())
    return {"id": problem_id(family, difficulty, text), "problem": text, "answer": tex(answer),
            "family": family, "difficulty": difficulty, "spec": spec}


def generate_problems(
    n: int,
    seed: int,
    split: str = "train",
    families: Sequence[str] = FAMILIES,
    difficulties: Sequence[int] = tuple(range(1, MAX_DIFFICULTY + 1)),
) -> list[Problem]:
    """`n` distinct problems of one split ("train" or "heldout"), the same list for the same arguments.

    Problems cycle through every (family, difficulty) pair, so each pair gets an equal share (list a
    difficulty twice to weight it). Problem texts are unique within the list, and a problem is in the
    "heldout" list only if `is_heldout` says so, in the "train" list only if not.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    rng = random.Random(f"deepscaler-curriculum/{seed}/{split}")
    pairs = [(family, difficulty) for difficulty in difficulties for family in families]
    seen: set[str] = set()
    problems: list[Problem] = []
    for index in range(n):
        family, difficulty = pairs[index % len(pairs)]
        for _ in range(20_000):
            problem = make_problem(family, difficulty, rng)
            text = problem["problem"]
            if text not in seen and is_heldout(text) == (split == "heldout"):
                break
        else:
            raise ValueError(f"ran out of distinct {split} problems for {family} at difficulty {difficulty}")
        seen.add(text)
        problems.append(problem)
    rng.shuffle(problems)
    return problems


def solve(problem: Problem, slip: tuple[int, int] | None = None) -> tuple[list[str], str]:
    """The worked steps and the boxed answer (LaTeX) of a problem; `slip` = (step, delta) adds one error."""
    lines, answer = FAMILY_IMPLS[problem["family"]].solve(problem["spec"], _Tape(slip))
    return lines, tex(answer)


@dataclass(frozen=True)
class Trace:
    """A teacher's response to one problem; `correct` is False for a deliberately slipped solution."""

    problem_id: str
    text: str
    answer: str
    correct: bool


def format_response(lines: Sequence[str], answer: str) -> str:
    """A response in the format the verifier grades: reasoning in <think>, then the boxed answer."""
    return "<think>\n" + "\n".join(lines) + f"\n</think>\nThe answer is $\\boxed{{{answer}}}$."


SLIP_DELTAS = (-2, -1, 1, 2)


def teacher_trace(problem: Problem, rng: random.Random, error_rate: float = 0.0) -> Trace:
    """The teacher's worked solution; with probability `error_rate`, one step slips and the answer is wrong."""
    tape = _Tape()
    lines, answer = FAMILY_IMPLS[problem["family"]].solve(problem["spec"], tape)
    gold = tex(answer)
    if rng.random() < error_rate:
        for _ in range(50):
            slip = (rng.randrange(tape.steps), rng.choice(SLIP_DELTAS))
            try:
                wrong_lines, wrong = solve(problem, slip)
            except (ValueError, ZeroDivisionError):
                continue
            if wrong != gold:
                return Trace(problem["id"], format_response(wrong_lines, wrong), wrong, False)
    return Trace(problem["id"], format_response(lines, gold), gold, True)
