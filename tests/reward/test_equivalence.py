"""Golden equalities and inequalities, one or more per category the verifier must handle."""

import pytest

from deepscaler.reward import gold_answers, is_equivalent, math_reward

EQUAL = [
    # integers, separators, leading zeros
    ("1,000", "1000"), ("1\\,000", "1000"), ("1 000", "1000"), ("1{,}000", "1000"), ("025", "25"),
    ("\\dfrac{1}{29,\\!322,\\!216}", "\\frac{1}{29322216}"),
    # fractions, mixed numbers, decimals, percentages
    ("\\dfrac{1}{2}", "0.5"), ("\\tfrac12", "1/2"), ("2\\frac{1}{2}", "5/2"), ("-2\\frac{1}{2}", "-2.5"),
    ("0.125", "\\frac{1}{8}"), ("50\\%", "50"), ("50\\%", "0.5"), ("12.5\\%", "\\frac18"),
    # radicals, pi, e, scientific notation
    ("\\sqrt{8}", "2\\sqrt{2}"), ("\\sqrt[3]{16}", "2\\sqrt[3]{2}"), ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt3}"),
    ("\\pi/2", "\\frac{\\pi}{2}"), ("2\\pi r", "2r\\pi"), ("e^{2}", "e^2"), ("\\sqrt[3]{-8}", "-2"),
    ("6.02\\times10^{23}", "6.02e23"), ("6.02 \\cdot 10^{23}", "602\\times 10^{21}"),
    # degrees, units, currency, signs
    ("30^\\circ", "30"), ("30^{\\circ}", "30"), ("30°", "30"), ("5\\text{ cm}", "5"), ("5 \\text{cm}^2", "5"),
    ("\\$18.90", "18.9"), ("12 \\text{ dollars}", "12"), ("5\\mbox{ inches}", "5"), ("+3", "3"), ("- 3", "-3"),
    # intervals, unions, inequalities
    ("(-\\infty, 2] \\cup (3, 5)", "(3,5) \\cup (-\\infty,2]"), ("x > 2", "(2, \\infty)"),
    ("-1 \\le x < 3", "[-1, 3)"), ("x \\in [1, 2]", "[1,2]"), ("x\\geq 5", "[5,\\infty)"),
    ("x \\le -1 \\text{ or } x \\ge 3", "(-\\infty,-1] \\cup [3, \\infty)"), ("\\mathbb{R}", "(-\\infty,\\infty)"),
    # sets, lists, tuples, choices, matrices
    ("\\{3,1,2\\}", "\\{1,2,3\\}"), ("1, 2, 3", "\\{3, 2, 1\\}"), ("(1, -2)", "\\left(1,-2\\right)"),
    ("\\text{(C)}", "C"), ("\\textbf{(C)}", "C"), ("(C)", "C"), ("C", "\\text{C}"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1, 2)"),
    ("\\begin{bmatrix} 1 & 0 \\\\ 0 & 1 \\end{bmatrix}", "\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}"),
    ("\\begin{pmatrix} 1 & -1 \\\\ 1 & \\phantom -1 \\end{pmatrix}",
     "\\begin{pmatrix} 1 & -1 \\\\ 1 & 1 \\end{pmatrix}"),
    ("\\pm 3", "3, -3"), ("\\frac{-1 \\pm \\sqrt{5}}{2}", "\\frac{-1+\\sqrt5}{2}, \\frac{-1-\\sqrt5}{2}"),
    # equations and expressions
    ("x=3", "3"), ("3", "x = 3"), ("y=2x+1", "2x+1=y"), ("2y = 4x + 2", "y = 2x + 1"), ("y = 2x+1", "2x+1"),
    ("(x+1)^2", "x^2+2x+1"), ("\\frac{x^2-1}{x-1}", "x+1"), ("N(n)=\\left\\lfloor\\frac{2 n}{3}\\right\\rfloor+1",
                                                           "\\lfloor 2n/3 \\rfloor + 1"),
    ("\\sin^2 x + \\cos^2 x", "1"), ("\\log_2 8", "3"), ("\\ln(e^3)", "3"),
    # complex numbers, bases, repeating decimals, words, noise
    ("2i", "i \\cdot 2"), ("3+4i", "4i+3"), ("6 - 5i", "-5i+6"), ("10110_2", "22"), ("10110_2", "10110_{2}"),
    ("0.\\overline{3}", "\\frac13"), ("0.1\\overline{6}", "\\frac16"), ("\\text{three}", "3"),
    ("Evelyn", "\\text{Evelyn}"), ("evelyn", "Evelyn"),
    ("\\left( \\frac{1}{2}, \\! 3 \\right)", "(0.5,3)"), ("\\displaystyle \\frac{1}{2}", "1/2"),
    ("$\\frac{1}{2}$", "0.5"), ("\\(\\frac{1}{2}\\)", "0.5"), ("\\[\\frac{1}{2}\\]", "0.5"), ("\\frac{1}{2}.", "0.5"),
    ("1:4", "\\frac14"), ("y'", "y^{\\prime}"),
]

NOT_EQUAL = [
    ("-3", "3"), ("(1, 2]", "(1, 2)"), ("[1, 2)", "(1, 2)"), ("0.333", "\\frac{1}{3}"), ("1.414", "\\sqrt{2}"),
    ("3.14", "\\pi"), ("3\\sqrt{2}", "3\\sqrt[3]{2}"), ("7 \\text{ or } 8", "7"), ("7, 8", "7"), ("\\pm 3", "3"),
    ("(1, 2)", "(2, 1)"), ("\\{1, 2\\}", "\\{1, 2, 3\\}"), ("(B)", "C"), ("1001", "1000"), ("x^2+2x", "x^2+2"),
    ("x = 3", "y = 3"), ("x > 2", "[2, \\infty)"), ("2", "10_2 + 1"), ("\\text{Evelyn}", "Emily"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(2, 1)"), ("3+4i", "3-4i"), ("50\\%", "5"), ("e", "2.718"),
    ("", "0"), ("\\frac{1}{0}", "1"), ("\\sqrt{2}", "2^{1/3}"), ("2x", "2y"),
]


@pytest.mark.parametrize(("given", "gold"), EQUAL)
def test_equal(given, gold):
    assert is_equivalent(given, gold)
    assert is_equivalent(gold, given)


@pytest.mark.parametrize(("given", "gold"), NOT_EQUAL)
def test_not_equal(given, gold):
    assert not is_equivalent(given, gold)
    assert not is_equivalent(gold, given)


def test_gold_types():
    assert gold_answers(142.0) == ["142"]
    assert gold_answers(0.25) == ["0.25"]
    assert gold_answers(["6.4", "6.4\n"]) == ["6.4", "6.4\n"]
    assert gold_answers(None) == [] and gold_answers(float("nan")) == [] and gold_answers(True) == []
    assert is_equivalent("142", 142.0)
    assert is_equivalent("3.75 \\times 10^{9}", ["3.75 \\times 10^9", "3.75 \\times 10^{9}"])
    assert is_equivalent("20.39", ["20.39\n"])
    assert not is_equivalent("1", None)


def test_math_reward_is_binary_and_total():
    assert math_reward("<think>hmm</think> so $\\boxed{\\frac{3}{6}}$.", "1/2") == 1.0
    assert math_reward("<think>hmm</think> so $\\boxed{\\frac{3}{7}}$.", "1/2") == 0.0
    assert math_reward("<think>the answer is \\boxed{12}", "12") == 0.0
    assert math_reward("I think it is 12.", "12") == 0.0  # only a boxed final answer counts
    for response, gold in [(None, "1"), (12, "1"), ("\\boxed{1}", object()), ("\\boxed{1}", {"a": 1})]:
        assert math_reward(response, gold) == 0.0  # type: ignore[arg-type]
