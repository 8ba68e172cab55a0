"""The one loader (data/problems.py) over every shared file, and the record parser it shares with curation."""

import json
from pathlib import Path

import pytest

from deepscaler.data.problems import REGISTRY, ProblemFileError, load
from deepscaler.data.records import to_record
from deepscaler.data.sources import open_rows
from deepscaler.prompting import DEFAULT_BENCHMARKS
from deepscaler.reward.equivalence import prepare

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not found beside the repository")
SIZES = {"benchmarks/aime2024.json": 30, "benchmarks/amc2023.json": 83, "benchmarks/math500.json": 500,
         "benchmarks/minerva.json": 272, "benchmarks/olympiadbench.json": 675, "benchmarks/gsm8k.json": 1319,
         "train/aime_1983_2023.json": 975}


def test_every_shared_file_is_read_by_the_one_loader():
    assert sorted(str(p.relative_to(SHARED)) for p in SHARED.glob("*/*.json")) == sorted(
        [*SIZES, "train/math_train.json"])
    for name, size in SIZES.items():
        problems = load(str(SHARED / name))
        assert len(problems) == size and len({p.id for p in problems}) == size, name
        assert all(p.problem.strip() and p.answers for p in problems), name
    gsm8k = load(str(SHARED / "benchmarks/gsm8k.json"), limit=3)
    assert [p.answers for p in gsm8k] == [["18"], ["3"], ["70000"]]  # after "####", thousands' commas dropped
    # MATH train has four rows without an answer (two null, two empty): the trainer refuses the file, naming the
    # first, and curation's reading of the same rows through the same parser finds all four.
    with pytest.raises(ProblemFileError, match=r"math_train.json: row 887: no answer \(fields tried"):
        load(str(SHARED / "train/math_train.json"))
    records = [(number, to_record(row, "math_train", number - 1))
               for number, row in open_rows(str(SHARED / "train/math_train.json"))]
    assert len(records) == 7474
    assert [number for number, record in records if not record.answers] == [887, 1010, 5329, 5331]


def test_problem_text_is_kept_as_written_and_ids_by_position():
    # AMC 2023 has problems ending in a newline: prompts were always rendered with it, so it stays.
    raw = json.loads((SHARED / "benchmarks/amc2023.json").read_text())
    problems = load("amc2023", data_dir=SHARED / "benchmarks")
    assert [p.problem for p in problems] == [row["problem"] for row in raw]
    assert sum(p.problem != p.problem.strip() for p in problems) == 5
    assert [p.id for p in problems[:3]] == ["0", "1", "2"]


@pytest.mark.parametrize("name", DEFAULT_BENCHMARKS)
def test_default_benchmarks_load_with_gradable_golds(name):
    assert name in REGISTRY
    problems = load(name)
    for problem in problems:
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


def test_files_of_other_layouts(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "final_answer": 2}) + "\n" + json.dumps({"problem": "x?",
                    "answer": ["3", "3.0"], "id": "b"}) + "\n")
    problems = load(str(path))
    assert [(p.id, p.answers) for p in problems] == [("0", ["2"]), ("b", ["3", "3.0"])]


def test_clear_errors(tmp_path):
    with pytest.raises(ProblemFileError, match="unknown benchmark 'aime2025'"):
        load("aime2025")
    with pytest.raises(ProblemFileError, match="no such file"):
        load(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"problem": "ok", "answer": "1"}, {"problem": "no answer here"}]))
    with pytest.raises(ProblemFileError, match=r"bad.json: row 2: no answer"):
        load(str(bad))
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"problem": "ok", "answer": "1"}\n{"problem": \n')
    with pytest.raises(ProblemFileError, match=r"torn.jsonl: row 2: not valid JSON"):
        load(str(torn))
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps([{"id": 1, "problem": "a", "answer": "1"}, {"id": 1, "problem": "b", "answer": "2"}]))
    with pytest.raises(ProblemFileError, match="duplicate problem ids"):
        load(str(twice))
    with pytest.raises(ProblemFileError, match="not found in"):
        load("math500", data_dir=tmp_path)
