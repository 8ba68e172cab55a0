"""The synthetic curriculum: exact answers, determinism, held-out split, teacher traces and their slips."""

from __future__ import annotations

import random
import re
import statistics
from fractions import Fraction

import pytest

from deepscaler.recipes.curriculum import (
    FAMILIES,
    HASTY_LINE,
    MAX_DIFFICULTY,
    generate_problems,
    is_heldout,
    make_problem,
    solve,
    teacher_trace,
    tex,
)
from deepscaler.reward import extract_answer, math_reward


def _independent_answer(problem: dict) -> Fraction:
    """The answer recomputed from the problem text alone, without the curriculum's solver."""
    text = problem["problem"]
    family = problem["family"]
    if family == "arithmetic":
        expression = re.search(r"\$(.*?)\$", text).group(1)
        return Fraction(eval(expression))  # digits, + and - only
    if family == "modular":
        base, exponent, modulus = map(int, re.findall(r"\d+", text))
        return Fraction(pow(base, exponent, modulus))
    if family == "recurrence":
        _, start, _, multiplier, increment, modulus, terms = map(int, re.findall(r"\d+", text))
        value = start
        for _ in range(terms):
            value = (multiplier * value + increment) % modulus
        return Fraction(value)
    if family == "fractions":
        expression = re.search(r"\$(.*?)\$", text).group(1)
        python = re.sub(r"\\frac\{(\d+)\}\{(\d+)\}", r"Fraction(\1, \2)", expression)
        return eval(python, {"Fraction": Fraction})
    equation = re.search(r"\$(.*?)\$", text).group(1)
    left, right = (re.sub(r"(\d)(x|\()", r"\1*\2", side) for side in equation.split("="))
    # Both sides are linear in x: f(x) = p x + q, so the root is where p_l x + q_l = p_r x + q_r.
    sides = [(eval(s, {"x": 1}) - eval(s, {"x": 0}), eval(s, {"x": 0})) for s in (left, right)]
    (p_left, q_left), (p_right, q_right) = sides
    return Fraction(q_right - q_left, p_left - p_right)


def test_tex_writes_exact_numbers_as_the_verifier_reads_them():
    assert tex(7) == "7"
    assert tex(Fraction(-12, 3)) == "-4"
    assert tex(Fraction(10, 12)) == "\\frac{5}{6}"
    assert tex(Fraction(-1, 4)) == "-\\frac{1}{4}"
    assert math_reward("</think> $\\boxed{" + tex(Fraction(-1, 4)) + "}$", "-0.25") == 1.0


def test_every_family_and_difficulty_has_the_exact_answer():
    rng = random.Random(7)
    for family in FAMILIES:
        for difficulty in range(1, MAX_DIFFICULTY + 1):
            for _ in range(15):
                problem = make_problem(family, difficulty, rng)
                assert set(problem) >= {"id", "problem", "answer", "family", "difficulty"}
                assert tex(_independent_answer(problem)) == problem["answer"], problem["problem"]


def test_known_problem_and_its_worked_solution():
    problem = {"family": "arithmetic", "spec": {"numbers": [7, 3, 4, 5], "ops": ["+", "-", "+"]}}
    lines, answer = solve(problem)
    assert answer == "11"
    assert lines == ["7+3-4+5", "=10-4+5", "=6+5", "=11"]
    # A slip of +1 in the second step (10 - 4) is carried through to the end.
    slipped, wrong = solve(problem, slip=(1, 1))
    assert slipped == ["7+3-4+5", "=10-4+5", "=7+5", "=12"] and wrong == "12"

    modular = {"family": "modular", "spec": {"base": 23, "exponent": 3, "modulus": 7}}
    lines, answer = solve(modular)
    assert answer == "1" and lines[0] == "23=3\\cdot7+2, so multiply by 2 each time."
    assert lines[-1] == "23^{3}: 4\\cdot2=8=1\\cdot7+1"

    fractions = {"family": "fractions", "spec": {"terms": [[1, 2], [3, 8], [1, 4]]}}
    lines, answer = solve(fractions)
    assert answer == "\\frac{9}{8}"
    assert lines == ["The common denominator is 8.", "\\frac{1}{2}=\\frac{4}{8}", "\\frac{3}{8}=\\frac{3}{8}",
                     "\\frac{1}{4}=\\frac{2}{8}", "Add the numerators:", "4+3+2", "=7+2", "=9",
                     "\\frac{9}{8} is in lowest terms."]

    recurrence = {"family": "recurrence", "spec": {"start": 4, "multiplier": 2, "increment": 5, "modulus": 6,
                                                   "terms": 2}}
    lines, answer = solve(recurrence)
    assert answer == "1" and lines == ["x_{1}=2\\cdot4+5=13=2\\cdot6+1", "x_{2}=2\\cdot1+5=7=1\\cdot6+1"]

    linear = {"family": "linear", "spec": {"x": 4, "k": 2, "a": 3, "b": 1, "m": 1, "c": 2, "e": 18}}
    lines, answer = solve(linear)
    assert answer == "4"
    assert lines == ["Expand: 2(3x+1)=6x+2", "Collect x: 6x-2x=4x", "Move 2: 4x=18-2=16", "Divide by 4: x=16/4=4"]


def test_problems_are_deterministic_for_a_seed_and_differ_across_seeds():
    first = generate_problems(60, seed=3)
    assert first == generate_problems(60, seed=3)
    assert [p["problem"] for p in first] != [p["problem"] for p in generate_problems(60, seed=4)]
    assert len({p["problem"] for p in first}) == 60 and len({p["id"] for p in first}) == 60


def test_mix_is_balanced_over_families_and_difficulties():
    problems = generate_problems(250, seed=0)
    counts = {(f, d): 0 for f in FAMILIES for d in range(1, MAX_DIFFICULTY + 1)}
    for problem in problems:
        counts[(problem["family"], problem["difficulty"])] += 1
    assert set(counts.values()) == {10}
    only_hard = generate_problems(20, seed=0, families=("linear",), difficulties=(4, 5))
    assert {(p["family"], p["difficulty"]) for p in only_hard} == {("linear", 4), ("linear", 5)}


def test_train_and_heldout_are_disjoint_whatever_the_seeds():
    heldout = generate_problems(200, seed=0, split="heldout")
    train = generate_problems(1000, seed=0) + generate_problems(1000, seed=1)
    assert all(is_heldout(p["problem"]) for p in heldout)
    assert not any(is_heldout(p["problem"]) for p in train)
    assert not {p["problem"] for p in heldout} & {p["problem"] for p in train}
    assert not {p["id"] for p in heldout} & {p["id"] for p in train}


def test_correct_traces_earn_the_reward_and_slipped_ones_do_not():
    problems = generate_problems(400, seed=5)
    rng = random.Random(0)
    traces = [teacher_trace(p, rng, error_rate=0.3) for p in problems]
    wrong = 0
    for problem, trace in zip(problems, traces):
        reward = math_reward(trace.text, problem["answer"], think="required")
        assert reward == (1.0 if trace.correct else 0.0), trace.text
        assert extract_answer(trace.text, think="required") == trace.answer
        assert trace.text.startswith("<think>\n") and "\n</think>\nThe answer is $\\boxed{" in trace.text
        wrong += not trace.correct
    assert 0.22 < wrong / len(traces) < 0.38
    assert all(teacher_trace(p, rng, 0.0).correct for p in problems[:50])
    assert not any(teacher_trace(p, rng, 1.0).correct for p in problems[:50])


def test_hasty_traces_answer_without_working_and_are_right_at_their_rate():
    problems = generate_problems(1000, seed=6)
    rng = random.Random(1)
    traces = [teacher_trace(p, rng, error_rate=0.0, hasty_rate=0.4, hasty_right=0.25) for p in problems]
    hasty = [(p, t) for p, t in zip(problems, traces) if not t.worked]
    assert 0.35 < len(hasty) / len(traces) < 0.45
    assert all(t.correct for t in traces if t.worked)
    for problem, trace in hasty:
        assert trace.text == ("<think>\n" + HASTY_LINE + "\n</think>\nThe answer is $\\boxed{" + trace.answer + "}$.")
        assert math_reward(trace.text, problem["answer"], think="required") == (1.0 if trace.correct else 0.0)
        if "modulus" in problem["spec"]:  # a wrong remainder is still a remainder
            assert 0 <= int(trace.answer) < problem["spec"]["modulus"]
    assert 0.18 < sum(t.correct for _, t in hasty) / len(hasty) < 0.32


def test_teacher_is_deterministic_for_a_seed():
    problems = generate_problems(40, seed=2)
    runs = [[teacher_trace(p, random.Random(9), 0.5) for p in problems] for _ in range(2)]
    assert runs[0] == runs[1]


@pytest.fixture(scope="module")
def tokenizer():
    from deepscaler.inference.models import train_tokenizer

    return train_tokenizer(1024)


def test_harder_problems_need_longer_solutions(tokenizer):
    problems = generate_problems(400, seed=0)
    rng = random.Random(0)
    lengths: dict[tuple[str, int], list[int]] = {}
    for problem in problems:
        text = teacher_trace(problem, rng, 0.0).text
        lengths.setdefault((problem["family"], problem["difficulty"]), []).append(len(tokenizer(text)["input_ids"]))
    for family in FAMILIES:
        means = [statistics.mean(lengths[(family, d)]) for d in range(1, MAX_DIFFICULTY + 1)]
        assert means == sorted(means) and means[-1] > 1.8 * means[0], (family, means)
    easy = [n for (_, d), values in lengths.items() if d == 1 for n in values]
    hard = [n for (_, d), values in lengths.items() if d == MAX_DIFFICULTY for n in values]
    assert 30 <= statistics.mean(easy) <= 80 and 140 <= statistics.mean(hard) <= 250
    assert max(hard) <= 300
