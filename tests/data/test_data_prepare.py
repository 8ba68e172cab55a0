import json
from pathlib import Path

import pytest

from deepscaler.data import Settings, prepare, read_records
from deepscaler.data.problems import load

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not found beside the repository")
AYA = json.loads((SHARED / "benchmarks" / "aime2024.json").read_text())[0]["problem"] if SHARED.is_dir() else ""


def _inputs(tmp_path: Path) -> list[str]:
    """Three files holding one of each kind of row the pipeline must keep, fix or drop."""
    aime = json.loads((SHARED / "train" / "aime_1983_2023.json").read_text())
    aime = [aime[0]] + aime[2:21]  # row 1 is in MATH-500 too: it would be dropped as contamination
    first = aime[0]["problem"]
    rows = aime + [
        {"problem": "What is $3 \\cdot 4$?", "solution": "It is $\\boxed{12}$."},  # answer from solution
        {"question": "Tom has 3 apples and buys 4 more. How many now?", "answer": None, "solution": "3+4=7\n#### 7"},
        {"problem": "What time is it 66 minutes after 3 p.m.?", "answer": "4\\!:\\!06 \\text{ p.m.}"},  # ungradable
        {"problem": "Name a prime.", "answer": {"any": "prime"}},  # answer of an unexpected type
        {"answer": "5"},  # no problem
        "just a string",  # not an object
        {"problem": "Find $x$ if $x^2 = 4$ and $x > 0$.", "solution": "So $x = 2$."},  # nothing to extract
        {"problem": AYA.replace("Every morning", "Each morning").replace("goes for", "takes"), "answer": "204"},
    ]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    lines = [
        json.dumps({"problem": "  " + first.upper() + "  ", "answer": "60"}),  # exact duplicate of a.json row 1
        json.dumps({"problem": aime[3]["problem"].replace("$", "").replace(".", " ."), "answer": aime[3]["answer"]}),
        "{not json",
        json.dumps({"problem": aime[2]["problem"].replace("$6$ cm", "$7$ cm"), "answer": "1"}),  # variant: kept
        json.dumps({"id": "x-1", "problem": "Compute $7 \\times 8$.", "answers": ["56", "fifty-six!?"]}),
    ]
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "c.json").write_text('[{"problem": "Compute $2+2$.", "answer": 4}, {"problem": "Comp')
    return [str(tmp_path / name) for name in ("a.json", "b.jsonl", "c.json")]


def _settings(**changes) -> Settings:
    return Settings(data_dir=str(SHARED / "benchmarks"), examples=10, **changes)


def test_every_row_is_kept_or_dropped_with_its_file_and_row(tmp_path):
    inputs = _inputs(tmp_path)
    out = tmp_path / "out" / "train.jsonl"
    out.parent.mkdir()
    report = prepare(inputs, out, _settings())
    steps = {step["step"]: step for step in report.to_dict()["steps"]}
    assert report.rows_read == 28 + 5 + 2  # c.json's cut-off second row counts
    assert {name: step["dropped"] for name, step in steps.items()} == {
        "read": 5, "answer": 1, "gradable": 1, "exact_dedup": 1, "decontaminate": 1, "near_dedup": 1}
    assert report.rows_written == report.rows_read - 10 == 25
    reasons = {(Path(e["file"]).name, e["row"]): e["reason"] for step in steps.values() for e in step["examples"]}
    assert reasons[("a.json", 24)] == "`answer` has an unexpected type (dict: \"{'any': 'prime'}\")"
    assert reasons[("a.json", 25)].startswith("no problem text")
    assert reasons[("a.json", 26)] == "not an object but str"
    assert reasons[("b.jsonl", 3)].startswith("not valid JSON")
    assert reasons[("a.json", 27)].startswith("no answer")
    assert "does not parse" in reasons[("a.json", 23)]
    assert reasons[("b.jsonl", 1)] == f"same text as {inputs[0]} row 1"
    assert reasons[("a.json", 28)].startswith("96% of 8-grams shared with aime2024 aime2024-0 (\"Every morning Aya")
    assert reasons[("b.jsonl", 2)].startswith("near duplicate") and reasons[("b.jsonl", 2)].endswith(" row 4")
    assert reasons[("c.json", 2)] == "not valid JSON (Unterminated string starting at)"
    assert report.inputs[2] == {"input": inputs[2], "rows": 2, "error": "stopped after 2 rows: invalid JSON in row 2: "
                                "the rows after it cannot be found"}
    assert report.notes["answers extracted from solutions"] == 2
    assert report.notes["ungradable alternative answers removed"] == 1


def test_the_output_holds_the_kept_rows_for_the_trainer(tmp_path):
    out = tmp_path / "train.jsonl"
    prepare(_inputs(tmp_path), out, _settings())
    records = {record.problem: record for record in read_records(out)}
    assert records["What is $3 \\cdot 4$?"].answers == ["12"]
    assert records["Tom has 3 apples and buys 4 more. How many now?"].answers == ["7"]
    assert records["Compute $7 \\times 8$."].answers == ["56"] and records["Compute $7 \\times 8$."].id == "x-1"
    assert records["Compute $2+2$."].source == "c"
    assert sum("$7$ cm" in problem for problem in records) == 1  # a changed number makes a new problem
    problems = load(str(out))
    assert len(problems) == 25 and len({p.id for p in problems}) == 25


def test_the_report_is_written_as_markdown_and_json(tmp_path):
    out = tmp_path / "train.parquet"
    prepare(_inputs(tmp_path), out, _settings(), report_dir=tmp_path / "reports")
    data = json.loads((tmp_path / "reports" / "train.report.json").read_text())
    assert data["rows_read"] == 35 and data["rows_written"] == 25 and data["output"]["rows"] == 25
    assert data["settings"]["ngram"] == 8 and data["seconds"] > 0 and data["peak_memory_mb"] > 0
    markdown = (tmp_path / "reports" / "train.report.md").read_text()
    assert "| decontaminate |" in markdown and "a.json` row 28" in markdown and "stopped after 2 rows" in markdown


def test_runs_are_repeatable_and_shuffling_is_seeded(tmp_path):
    inputs = _inputs(tmp_path)
    outputs = {}
    for name, settings in [("plain", _settings()), ("again", _settings()), ("s1", _settings(shuffle=True, seed=1)),
                           ("s1b", _settings(shuffle=True, seed=1)), ("s2", _settings(shuffle=True, seed=2))]:
        prepare(inputs, tmp_path / f"{name}.jsonl", settings)
        outputs[name] = (tmp_path / f"{name}.jsonl").read_text()
    assert outputs["plain"] == outputs["again"] and outputs["s1"] == outputs["s1b"]
    assert outputs["s1"] != outputs["plain"] and outputs["s1"] != outputs["s2"]
    assert sorted(outputs["s1"].splitlines()) == sorted(outputs["plain"].splitlines())
    assert not list(tmp_path.glob("*.spool"))


def test_steps_can_be_turned_off(tmp_path):
    report = prepare(_inputs(tmp_path), tmp_path / "all.jsonl",
                     _settings(decontaminate=(), near_threshold=None))
    assert report.rows_written == 27 and report.steps["decontaminate"].dropped == 0


def test_a_verl_file_goes_through_the_pipeline_unchanged(tmp_path):
    verl = tmp_path / "verl.parquet"
    prepare(_inputs(tmp_path), verl, _settings(layout="verl"))
    ours = tmp_path / "ours.jsonl"
    prepare(_inputs(tmp_path), ours, _settings())
    again = tmp_path / "again.jsonl"
    report = prepare([str(verl)], again, _settings(decontaminate=()))
    assert report.rows_read == report.rows_written == 25
    assert list(read_records(again)) == list(read_records(ours)) == list(read_records(verl))
