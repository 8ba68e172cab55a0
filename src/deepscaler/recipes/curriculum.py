"""A synthetic math curriculum with exact answers, and a programmatic teacher that writes worked solutions.

Five families (arithmetic chains, linear equations, modular powers, fraction sums, linear recurrences
modulo m) share one difficulty knob, 1 (easy) to MAX_DIFFICULTY (hard): a harder problem needs more
reasoning steps, so its worked solution is longer and a short response budget cuts it off. Problems and
answers are written in the LaTeX the verifier reads (`\\frac{13}{12}`, `-7`).

The teacher solves a problem from its `spec` (the numbers it was generated from) step by step, and is
imperfect in two ways (see `teacher_trace`): sometimes it answers without working, and sometimes one
step slips and the wrong value is carried to a wrong answer.

In the modular families every line of a solution repeats the numbers the next line needs, so a step
reads only the line above; in the others a step also reads numbers from the problem statement. A tiny
model trained for minutes learns the first kind far better: after SFT on 12,000 traces it solved
about 64% of held-out modular powers and 10-19% of the other families (copying a chain of numbers
from the prompt is the skill it had not yet learned).

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
ARITHMETIC_MAX = 20
FAMILIES = ("arithmetic", "linear", "modular", "fractions", "recurrence")
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
# Lines are compact (`10+5=15`): every step is a small calculation on numbers just written, which a
# model trained for minutes can learn, and a harder problem is simply more such steps.


def _arithmetic_sample(rng: random.Random, difficulty: int) -> dict:
    numbers = [rng.randint(2, 9)]
    total, ops = numbers[0], []
    for _ in range(2 * difficulty):
        number = rng.randint(1, 9)
        # The running total stays in 0..ARITHMETIC_MAX: few distinct facts, each seen often in training.
        op = rng.choice([o for o in "+-" if 0 <= (total + number if o == "+" else total - number) <= ARITHMETIC_MAX])
        total = total + number if op == "+" else total - number
        numbers.append(number)
        ops.append(op)
    return {"numbers": numbers, "ops": ops}


def _arithmetic_statement(spec: dict) -> str:
    return f"Compute ${_chain(spec['numbers'][0], list(zip(spec['ops'], spec['numbers'][1:])))}$."


def _chain(first: int, rest: Sequence[tuple[str, int]]) -> str:
    return str(first) + "".join(f"{op}{number}" for op, number in rest)


def _rewrite(first: int, rest: list[tuple[str, int]], tape: _Tape) -> tuple[list[str], int]:
    """Evaluate `first op n op n ...` one operation per line, rewriting what is left each time.

    Every line is the line above with its first two numbers combined, so each step reads only the
    line just written.
    """
    lines = [_chain(first, rest)]
    while rest:
        (op, number), rest = rest[0], rest[1:]
        first = tape(first + number if op == "+" else first - number)
        lines.append("=" + _chain(first, rest))
    return lines, first


def _arithmetic_solve(spec: dict, tape: _Tape) -> tuple[list[str], Fraction]:
    lines, total = _rewrite(spec["numbers"][0], list(zip(spec["ops"], spec["numbers"][1:])), tape)
    return lines, Fraction(total)


def _linear_sample(rng: random.Random, difficulty: int) -> dict:
    """The equation k(ax+b) = m(cx+e) with an integer root; easier levels drop k, m and c."""
    while True:
        x, a, b = rng.randint(-6, 9), rng.randint(2, 6), rng.randint(1, 12) * rng.choice([1, -1])
        k = rng.randint(2, 3) if difficulty >= 4 else 1
        m = 2 if difficulty >= 5 else 1
        c = rng.randint(1, 3) if difficulty >= 3 else 0
        if difficulty == 1:
            a = 1
        rhs = k * (a * x + b) - m * c * x
        if rhs % m == 0 and k * a - m * c > 0:
            return {"x": x, "k": k, "a": a, "b": b, "m": m, "c": c, "e": rhs // m}


def _term(a: int, b: int) -> str:
    """`ax+b` with tidy signs (`x-4`, `3x+2`, `5x`), or the constant alone when a is 0."""
    if a == 0:
        return str(b)
    head = "x" if a == 1 else f"{a}x"
    return head if b == 0 else f"{head}{'+' if b > 0 else '-'}{abs(b)}"


def _side(factor: int, a: int, b: int) -> str:
    return _term(a, b) if factor == 1 else f"{factor}({_term(a, b)})"


def _linear_statement(spec: dict) -> str:
    s = spec
    return f"Solve ${_side(s['k'], s['a'], s['b'])}={_side(s['m'], s['c'], s['e'])}$ for $x$."


def _linear_solve(spec: dict, tape: _Tape) -> tuple[list[str], Fraction]:
    k, a, b, m, c, e = (spec[key] for key in ("k", "a", "b", "m", "c", "e"))
    lines = []
    if k > 1:
        a_out, b_out = tape(k * a), tape(k * b)
        lines.append(f"Expand: {k}({_term(a, b)})={_term(a_out, b_out)}")
        a, b = a_out, b_out
    if m > 1:
        c_out, e_out = tape(m * c), tape(m * e)
        lines.append(f"Expand: {m}({_term(c, e)})={_term(c_out, e_out)}")
        c, e = c_out, e_out
    if c:
        d = tape(a - c)
        lines.append(f"Collect x: {a}x-{c}x={_term(d, 0)}")
        a = d
    if a <= 0:
        raise ValueError("a slip cancelled the x terms")
    rhs = tape(e - b)
    lines.append(f"Move {b}: {_term(a, 0)}={e}{'-' if b >= 0 else '+'}{abs(b)}={rhs}")
    x = Fraction(rhs, a)
    if a != 1:
        lines.append(f"Divide by {a}: x={rhs}/{a}={tex(x)}")
    return lines, x


def _modular_sample(rng: random.Random, difficulty: int) -> dict:
    modulus = rng.randint(3, 9)
    base = rng.randint(2, 60)
    while base % modulus in (0, 1):
        base = rng.randint(2, 60)
    # One exponent per difficulty, so the same problem text never appears at two difficulties.
    return {"base": base, "exponent": 2 * difficulty + 1, "modulus": modulus}


def _modular_statement(spec: dict) -> str:
    return f"Find the remainder when ${spec['base']}^{{{spec['exponent']}}}$ is divided by ${spec['modulus']}$."


def _modular_solve(spec: dict, tape: _Tape) -> tuple[list[str], Fraction]:
    base, exponent, modulus = spec["base"], spec["exponent"], spec["modulus"]
    reduced = residue = base % modulus
    lines = [f"{base}={base // modulus}\\cdot{modulus}+{reduced}, so multiply by {reduced} each time."]
    for power in range(2, exponent + 1):
        product = tape(residue * reduced)
        if product < 0:
            raise ValueError("a slip made a product negative")
        lines.append(f"{base}^{{{power}}}: {residue}\\cdot{reduced}={product}={product // modulus}\\cdot{modulus}"
                     f"+{product % modulus}")
        residue = product % modulus
    return lines, Fraction(residue)


def _recurrence_sample(rng: random.Random, difficulty: int) -> dict:
    """x_{n+1} = (a x_n + b) mod m from x_0, asked for the term 2 * difficulty."""
    modulus = rng.randint(5, 9)
    return {"start": rng.randint(0, modulus - 1), "multiplier": rng.randint(2, modulus - 1),
            "increment": rng.randint(1, 9), "modulus": modulus, "terms": 2 * difficulty}


def _recurrence_statement(spec: dict) -> str:
    return (f"Let $x_0={spec['start']}$ and let $x_{{n+1}}$ be the remainder when "
            f"${spec['multiplier']}x_n+{spec['increment']}$ is divided by ${spec['modulus']}$. "
            f"Find $x_{{{spec['terms']}}}$.")


def _recurrence_solve(spec: dict, tape: _Tape) -> tuple[list[str], Fraction]:
    a, b, modulus, value = spec["multiplier"], spec["increment"], spec["modulus"], spec["start"]
    lines = []
    for n in range(1, spec["terms"] + 1):
        total = tape(a * value + b)
        if total < 0:
            raise ValueError("a slip made a value negative")
        lines.append(f"x_{{{n}}}={a}\\cdot{value}+{b}={total}={total // modulus}\\cdot{modulus}+{total % modulus}")
        value = total % modulus
    return lines, Fraction(value)


# Each sum draws its denominators from one chain, where each divides the next: the common denominator
# of a running sum is then its largest denominator so far, and scaling a numerator is one product.
DENOMINATOR_CHAINS = ((2, 4, 8), (3, 6), (2, 6), (2, 4), (5, 10), (2, 10), (3, 9))


def _fractions_sample(rng: random.Random, difficulty: int) -> dict:
    chain = rng.choice(DENOMINATOR_CHAINS)
    terms = []
    for _ in range(difficulty + 1):
        denominator = rng.choice(chain)
        numerator = rng.choice([k for k in range(1, denominator) if gcd(k, denominator) == 1])
        terms.append([numerator, denominator])
    return {"terms": terms}


def _fractions_statement(spec: dict) -> str:
    return f"Compute ${'+'.join(tex(Fraction(*term)) for term in spec['terms'])}$ in lowest terms."


def _fractions_solve(spec: dict, tape: _Tape) -> tuple[list[str], Fraction]:
    common = max(bottom for _, bottom in spec["terms"])  # each denominator divides the largest
    lines = [f"The common denominator is {common}."]
    numerators = []
    for top, bottom in spec["terms"]:
        numerators.append(tape(top * (common // bottom)))
        lines.append(f"{_frac(top, bottom)}={_frac(numerators[-1], common)}")
    lines.append("Add the numerators:")
    sums, total = _rewrite(numerators[0], [("+", n) for n in numerators[1:]], tape)
    lines += sums
    result = Fraction(total, common)
    if result.denominator != common:
        lines.append(f"Divide by {common // result.denominator}: {_frac(total, common)}={tex(result)}")
    else:
        lines.append(f"{_frac(total, common)} is in lowest terms.")
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
    "recurrence": Family(_recurrence_sample, _recurrence_statement, _recurrence_solve),
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
    unique: bool = True,
) -> list[Problem]:
    """`n` problems of one split ("train" or "heldout"), the same list for the same arguments.

    Problems cycle through every (family, difficulty) pair, so each pair gets an equal share (list a
    difficulty twice to weight it). A problem is in the "heldout" list only if `is_heldout` says so, in
    the "train" list only if not. With `unique`, no problem text appears twice (the easiest levels have
    a few hundred problems each, so large training sets need unique=False).
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
            if (not unique or text not in seen) and is_heldout(text) == (split == "heldout"):
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
    """A teacher's response to one problem: `correct` when its answer is right, `worked` unless it
    answered without working."""

    problem_id: str
    text: str
    answer: str
    correct: bool
    worked: bool = True


def format_response(lines: Sequence[str], answer: str) -> str:
    """A response in the format the verifier grades: reasoning in <think>, then the boxed answer."""
    return "<think>\n" + "\n".join(lines) + f"\n</think>\nThe answer is $\\boxed{{{answer}}}$."


SLIP_DELTAS = (-2, -1, 1, 2)


HASTY_LINE = "I can see the answer without working it out."
NEAR_MISSES = (-3, -2, -1, 1, 2, 3)


def is_worked(response: str) -> bool:
    """Whether a response works the problem, rather than answer the way a hasty teacher trace does."""
    return HASTY_LINE not in response


def hasty_answer(problem: Problem, rng: random.Random, right: float) -> str:
    """An answer stated without working: the right one with probability `right`, else a wrong one
    (another remainder when the answer is a remainder, a near miss otherwise)."""
    gold = FAMILY_IMPLS[problem["family"]].solve(problem["spec"], _Tape())[1]
    if rng.random() < right:
        return tex(gold)
    if "modulus" in problem["spec"]:
        return tex(rng.choice([r for r in range(problem["spec"]["modulus"]) if r != gold]))
    return tex(gold + Fraction(rng.choice(NEAR_MISSES), gold.denominator))


def teacher_trace(problem: Problem, rng: random.Random, error_rate: float = 0.0, hasty_rate: float = 0.0,
                  hasty_right: float = 0.25) -> Trace:
    """The teacher's response to a problem, imperfect in two ways.

    With probability `hasty_rate` it does not work the problem at all and states an answer that is right
    with probability `hasty_right`: a model distilled from such traces answers without working part of
    the time, which RL on a verifiable reward can unlearn. Otherwise it works step by step, and with
    probability `error_rate` one step slips and the wrong value is carried to a wrong answer.
    """
    if rng.random() < hasty_rate:
        answer = hasty_answer(problem, rng, hasty_right)
        return Trace(problem["id"], format_response([HASTY_LINE], answer), answer, answer == problem["answer"],
                     worked=False)
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
