import json

import pytest

from deepscaler.eval.benchmarks import DEFAULT_BENCHMARKS, BenchmarkError, load
from deepscaler.reward.equivalence import prepare

SIZES = {"aime2024": 30, "amc2023": 83, "math500": 500, "minerva": 272, "olympiadbench": 675}


@pytest.mark.parametrize("name", DEFAULT_BENCHMARKS)
def test_shared_benchmarks_load_with_gradable_golds(name):
    problems = load(name)
    assert len(problems) == SIZES[name]
    assert len({p.id for p in problems}) == len(problems)
    for problem in problems:
        assert problem.problem.strip() and problem.answers
        for answer in problem.answers:
            prepared = prepare(answer)
            gradable = prepared.tree is not None or prepared.words or prepared.letter
            assert gradable or answer.startswith("$\\angle") or "arbitrary" in answer, (name, problem.id, answer)


def test_answer_types_are_normalised():
    assert load("amc2023")[0].answers == ["142"]
    assert load("aime2024")[0].answers == ["204"]
    minerva = load("minerva")
    assert all(not a.endswith("\n") for p in minerva for a in p.answers)
    olympiad = {p.id: p for p in load("olympiadbench")}
    with_context = [p for p in olympiad.values() if p.problem.count("\n\n") and len(p.problem) > 400]
    assert with_context, "OlympiadBench context fields are prepended to the problem"


def test_gsm8k_answers_come_from_the_solution():
    problems = load("gsm8k", limit=3)
    assert problems[0].answers == ["18"]


def test_files_of_other_layouts(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "final_answer": 2}) + "\n" + json.dumps({"problem": "x?",
                    "answer": ["3", "3.0"], "id": "b"}) + "\n")
    problems = load(str(path))
    assert [(p.id, p.answers) for p in problems] == [("0", ["2"]), ("b", ["3", "3.0"])]


def test_clear_errors(tmp_path):
    with pytest.raises(BenchmarkError, match="unknown benchmark 'aime2025'"):
        load("aime2025")
    with pytest.raises(BenchmarkError, match="no such file"):
        load(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"problem": "ok", "answer": "1"}, {"problem": "no answer here"}]))
    with pytest.raises(BenchmarkError, match=r"bad.json: row 2: no answer"):
        load(str(bad))
    with pytest.raises(BenchmarkError, match="not found in"):
        load("math500", data_dir=tmp_path)
