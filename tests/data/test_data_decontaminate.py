import json
from pathlib import Path

import pytest

from deepscaler.data.decontaminate import DecontaminationError, Decontaminator, benchmark_problems
from deepscaler.data.text import tokens
from deepscaler.prompting import DEFAULT_BENCHMARKS

BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"
AYA_REWORDED = (
    "Each morning Aya takes a $9$-kilometer-long walk and then stops at a coffee shop. When she walks at a "
    "constant speed of $s$ kilometers per hour, the walk takes her 4 hours, including $t$ minutes spent in the "
    "coffee shop. When she walks $s+2$ kilometers per hour, the walk takes her 2 hours and 24 minutes, including "
    "$t$ minutes spent in the cafe. Suppose Aya walks at $s+\\tfrac12$ kilometers per hour. Find how many "
    "minutes the walk takes her, including the $t$ minutes spent in the coffee shop."
)


@pytest.fixture(scope="module")
def decontaminator():
    if not BENCHMARKS.is_dir():
        pytest.skip("shared benchmark data not found beside the repository")
    return Decontaminator(benchmark_problems(DEFAULT_BENCHMARKS, BENCHMARKS))


def test_the_standard_benchmarks_are_indexed(decontaminator):
    assert len(decontaminator) == 30 + 500 + 83 + 272 + 675


def test_a_reworded_test_problem_is_found(decontaminator):
    match = decontaminator.check(tokens(AYA_REWORDED))
    assert match is not None and match.benchmark == "aime2024" and match.id == "aime2024-0"
    assert 0.5 <= match.overlap < 1.0


def test_a_test_problem_inside_a_longer_one_is_found(decontaminator):
    original = json.loads((BENCHMARKS / "math500.json").read_text())[10]["problem"]
    match = decontaminator.check(tokens(f"Part (a): compute $2^{{10}}$. Part (b): {original} Explain your steps."))
    assert match is not None and match.benchmark == "math500" and match.overlap == 1.0


def test_short_problems_match_only_their_exact_tokens(decontaminator):
    match = decontaminator.check(tokens("SIMPLIFY $\\sqrt{ 242 }$ ."))
    assert match is not None and match.problem == "Simplify $\\sqrt{242}$."
    assert decontaminator.check(tokens("Simplify $\\sqrt{243}$.")) is None


def test_unrelated_problems_pass(decontaminator):
    aime_1983 = ("Let $x$, $y$ and $z$ all exceed $1$ and let $w$ be a positive number such that $\\log_x w = 24$, "
                 "$\\log_y w = 40$ and $\\log_{xyz} w = 12$. Find $\\log_z w$.")
    assert decontaminator.check(tokens(aime_1983)) is None
    assert decontaminator.check([]) is None


def test_the_set_can_be_any_file(tmp_path):
    path = tmp_path / "private_test.jsonl"
    path.write_text(json.dumps({"question": "How many primes are below 100?"}) + "\n")
    decontaminator = Decontaminator(benchmark_problems([str(path)]), n=4, overlap=0.5)
    match = decontaminator.check(tokens("Tell me: how many primes are below 100?"))
    assert (match.benchmark, match.id, match.overlap) == ("private_test", "private_test-0", 1.0)


def test_a_bad_set_is_an_error_naming_it(tmp_path):
    with pytest.raises(DecontaminationError, match="unknown benchmark 'aime1999'"):
        list(benchmark_problems(["aime1999"], BENCHMARKS))
    path = tmp_path / "broken.json"
    path.write_text('[{"problem": "fine"}, {"no_problem": 1}]')
    with pytest.raises(DecontaminationError, match="broken.json: row 2: no problem text"):
        list(benchmark_problems([str(path)]))
    with pytest.raises(ValueError, match="overlap"):
        Decontaminator([], overlap=0.0)
