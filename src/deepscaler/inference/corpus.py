"""A small, deterministic corpus of math text, used to train the tokenizer of locally built test models.

Nothing here is downloaded: the text is generated from templates so the tokenizer learns the pieces a
math reasoner writes (numbers, LaTeX commands, chat markup, `<think>` blocks).
"""

from __future__ import annotations

import random

PROSE = [
    "Let us think step by step.",
    "First, we find the common denominator of the two fractions.",
    "The sum of the interior angles of a triangle is 180 degrees.",
    "Therefore the answer is the smallest positive integer that satisfies both conditions.",
    "We can check the result by substituting it back into the original equation.",
    "Since the function is increasing on the interval, its maximum is attained at the right endpoint.",
    "The probability of an event is the number of favorable outcomes divided by the total number of "
    "outcomes.",
    "A prime number has exactly two positive divisors: one and itself.",
    "The area of a circle with radius r is pi times r squared.",
    "Notice that the expression factors as a difference of squares.",
    "By the Pythagorean theorem, the hypotenuse has length equal to the square root of the sum of squares.",
    "Wait, let me double check this computation before moving on.",
    "So the remainder when the number is divided by seven is three.",
    "The sequence is arithmetic with common difference four, so the nth term is easy to write down.",
    "We are asked to find the number of ordered pairs of integers that satisfy the inequality.",
    "Hence the perimeter of the rectangle is twice the sum of its length and width.",
    "The greatest common divisor of the two numbers divides their difference as well.",
    "Counting the cases separately and adding them gives the total.",
    "The roots of the quadratic are real because the discriminant is positive.",
    "Multiplying both sides by the denominator removes the fraction.",
    "The expected value is the weighted average of all possible outcomes.",
    "Hmm, that does not look right; let me try a different approach.",
    "Each of the five students shakes hands with every other student exactly once.",
    "The volume of a cube with side length s is s cubed.",
    "Taking the logarithm of both sides turns the product into a sum.",
    "This is a geometric series with ratio one half, so it converges.",
    "The slope of the line through the two points is the change in y over the change in x.",
    "Alternatively, we could complete the square to find the vertex of the parabola.",
    "The least common multiple of the denominators is the smallest number divisible by each of them.",
    "In how many ways can the letters of the word be arranged?",
]

NAMES = ["Alice", "Bob", "Carla", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jamal"]
ITEMS = ["apples", "books", "marbles", "pencils", "coins", "stickers", "cookies", "cards", "stamps", "shells"]
LATEX_BITS = [
    r"\frac{a}{b}", r"\sqrt{x}", r"\cdot", r"\times", r"\le", r"\ge", r"\neq", r"\pi", r"\infty",
    r"\sum_{k=1}^{n} k", r"\binom{n}{k}", r"\left( x \right)", r"\text{and}", r"\quad", r"\theta",
    r"\sin", r"\cos", r"\log", r"\alpha", r"\angle ABC", r"\triangle ABC", r"\dfrac{1}{2}", r"\implies",
]


def _arithmetic(rng: random.Random) -> str:
    a, b = rng.randint(2, 999), rng.randint(2, 999)
    op, value = rng.choice([("+", a + b), ("-", a - b), (r"\times", a * b)])
    return (
        f"What is ${a} {op} {b}$? We compute ${a} {op} {b} = {value}$, "
        f"so the answer is $\\boxed{{{value}}}$."
    )


def _fraction(rng: random.Random) -> str:
    k, p, q = rng.randint(2, 9), rng.randint(1, 12), rng.randint(2, 13)
    return (
        f"Simplify $\\frac{{{k * p}}}{{{k * q}}}$. Dividing the numerator and the denominator by ${k}$ "
        f"gives $\\frac{{{p}}}{{{q}}}$, so the answer is $\\boxed{{\\frac{{{p}}}{{{q}}}}}$."
    )


def _equation(rng: random.Random) -> str:
    a, x, b = rng.randint(2, 12), rng.randint(-20, 20), rng.randint(1, 50)
    return (
        f"Solve ${a}x + {b} = {a * x + b}$ for $x$. "
        f"Subtracting ${b}$ from both sides gives ${a}x = {a * x}$, "
        f"and dividing by ${a}$ gives $x = {x}$. Therefore $\\boxed{{{x}}}$."
    )


def _word_problem(rng: random.Random) -> str:
    name, other, item = rng.choice(NAMES), rng.choice(NAMES), rng.choice(ITEMS)
    have, give = rng.randint(10, 90), rng.randint(1, 9)
    return (
        f"{name} has {have} {item} and gives {give} of them to {other}. "
        f"How many {item} does {name} have left? "
        f"<think>\n{name} starts with {have} {item}. "
        f"After giving away {give}, {have} - {give} = {have - give}.\n"
        f"</think>\n{name} has $\\boxed{{{have - give}}}$ {item} left."
    )


def _power(rng: random.Random) -> str:
    base, exp = rng.randint(2, 9), rng.randint(2, 6)
    root = rng.randint(2, 30)
    return (
        f"We have ${base}^{{{exp}}} = {base**exp}$ and $\\sqrt{{{root * root}}} = {root}$, "
        f"hence $\\sqrt{{{root**2}}} + {base}^{{{exp}}} = {root + base**exp}$."
    )


def _chat(rng: random.Random) -> str:
    question = _arithmetic(rng).split("?")[0] + "?"
    return (
        f"<|im_start|>user\n{question} Please reason step by step, and put your final answer within "
        f"\\boxed{{}}.<|im_end|>\n<|im_start|>assistant\n<think>\n{rng.choice(PROSE)}\n</think>\n"
        f"{rng.choice(PROSE)}<|im_end|>\n<|endoftext|>"
    )


def _latex(rng: random.Random) -> str:
    bits = rng.sample(LATEX_BITS, 4)
    return "In this step we use $" + " ".join(bits) + "$ together with " + rng.choice(PROSE).lower()


GENERATORS = [_arithmetic, _fraction, _equation, _word_problem, _power, _chat, _latex]


def math_corpus(lines: int = 3000, seed: int = 0) -> list[str]:
    """Return `lines` lines of templated math text; the same (lines, seed) always gives the same text."""
    rng = random.Random(seed)
    out = list(PROSE)
    while len(out) < lines:
        out.append(rng.choice(GENERATORS)(rng))
    return out
