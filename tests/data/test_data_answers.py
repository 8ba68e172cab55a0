import pytest

from deepscaler.data.answers import from_solution, gradable_answers, ungradable_reason
from deepscaler.data.records import BadRow, to_record


@pytest.mark.parametrize(
    ("solution", "answers"),
    [
        ("So $x=3$, and then $y = \\boxed{\\frac{1}{2}}$.", ["\\frac{1}{2}"]),
        ("First $\\boxed{1}$ is wrong; the answer is $\\boxed{\\{1, 2\\}}$.", ["\\{1, 2\\}"]),
        ("The sum is $\\boxed{ {a}_{1} + 2 }$", ["{a}_{1} + 2"]),
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18", ["18"]),
        ("He pays 12 * 100 = 1,200 in all.\n#### 1,200", ["1200"]),
        ("A #### B\n#### 7 apples", ["7 apples"]),
        ("No final answer is marked here.", []),
        ("Cut off: $\\boxed{12", []),
        (None, []),
    ],
)
def test_answers_come_from_the_last_box_or_gsm8k_marker(solution, answers):
    assert from_solution(solution) == answers


def test_rows_take_their_answers_in_the_shapes_the_shared_files_use():
    assert to_record({"problem": "p", "answer": 142.0}, "amc", 0).answers == ["142"]
    assert to_record({"problem": "p", "answer": ["5\n"]}, "minerva", 0).answers == ["5"]
    assert to_record({"problem": "p", "answer": None, "solution": "x #### 18"}, "gsm8k", 3).answers == []
    record = to_record({"problem": "Find $n$.", "context": "Let $n = 2$.", "final_answer": ["2"], "id": 1606}, "ob", 0)
    assert record.problem == "Let $n = 2$.\n\nFind $n$." and record.id == "1606" and record.answers == ["2"]
    assert to_record({"problem": "p", "answer": "1", "difficulty": "Level 3"}, "math", 0).difficulty == 3.0


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["a list"], "not an object but list"),
        ({"answer": "2"}, "no problem text"),
        ({"problem": "   ", "answer": "2"}, "no problem text"),
        ({"problem": "p", "answer": {"value": 2}}, "unexpected type \\(dict"),
        ({"problem": "p", "answer": True}, "unexpected type \\(bool"),
        ({"problem": "p", "answers": [["nested"]]}, "unexpected type \\(list"),
    ],
)
def test_rows_that_are_no_problem_say_why(row, message):
    with pytest.raises(BadRow, match=message):
        to_record(row, "file", 0)


def test_gradable_golds_are_kept_and_the_others_explained():
    assert ungradable_reason("\\frac{5}{6}") is None
    assert ungradable_reason("(C)") is None
    assert ungradable_reason("Evelyn") is None
    assert ungradable_reason("4\\!:\\!51\\!:\\!06 \\text{ p.m.}") == "does not parse"
    assert ungradable_reason("x" * 2000).startswith("refused by the verifier")
    kept, refused = gradable_answers(["\\frac{1}{7}\\triangle ABC", "12"])
    assert kept == ["12"] and refused == [("\\frac{1}{7}\\triangle ABC", "does not parse")]
