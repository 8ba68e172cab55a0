import pytest

from deepscaler.reward import extract_answer


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("so the answer is \\boxed{42}.", "42"),
        ("<think>try \\boxed{1}</think> final \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("</think> first \\boxed{3} then \\boxed{4}", "4"),
        ("</think> \\boxed 5.", "5"),
        ("</think> $\\boxed 7$", "7"),
        ("</think> \\fbox{9}", "9"),
        ("</think> \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("</think> \\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
        ("</think> \\boxedx and \\boxed{8}", "8"),
    ],
)
def test_last_box_after_reasoning(response, expected):
    assert extract_answer(response) == expected


@pytest.mark.parametrize(
    "response",
    [
        "<think>the answer is \\boxed{12} but let me check",  # reasoning never closed
        "</think> The answer is 12.",  # no box in the final part
        "<think>\\boxed{12}</think> so it is twelve",  # box only inside the reasoning
        "</think> \\boxed{12",  # final box cut off
        "</think> \\boxed{3} then \\boxed{4",  # a broken last box is not replaced by an earlier one
        "</think> \\boxed{}",  # an empty box: the prompt's instruction echoed, not an answer
        "put the final answer within \\boxed{ }.",
        "</think> \\boxed{5} and finally \\boxed{}",  # an empty last box is not replaced by an earlier one
    ],
)
def test_no_answer(response):
    assert extract_answer(response) is None


def test_think_modes():
    no_tags = "The answer is \\boxed{5}."
    prefilled = "reasoning ... </think> The answer is \\boxed{5}."
    assert extract_answer(no_tags) == "5"
    assert extract_answer(no_tags, think="required") is None
    assert extract_answer(prefilled, think="required") == "5"
    with pytest.raises(ValueError):
        extract_answer(no_tags, think="sometimes")


def test_non_string_response():
    assert extract_answer(None) is None  # type: ignore[arg-type]
    assert extract_answer(42) is None  # type: ignore[arg-type]
