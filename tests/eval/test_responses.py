"""`deepscaler eval --responses`: a fixture with known correctness scores to exact metrics."""

import json
import subprocess
import sys

import pytest

FIXTURE = (
    [("p1", r, "1/2") for r in ["\\boxed{\\frac12}", "\\boxed{3}", "\\boxed{0.5}", "\\boxed{3}"]]
    + [("p2", r, 7.0) for r in ["\\boxed{}", "no box", "\\boxed{2}", "\\boxed{2}"]]  # an empty box: no answer
    + [("p3", "</think> \\boxed{7}", ["7", "7.0"])] * 4
)


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "deepscaler.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def responses(tmp_path):
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps({"id": i, "response": r, "answer": a}) + "\n" for i, r, a in FIXTURE))
    return path


def test_scores_to_exact_metrics(tmp_path, responses):
    result = run_cli("eval", "--responses", str(responses), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # p1: rewards 1,0,1,0; p2: all 0; p3: all 1.
    assert summary["pass@1"] == pytest.approx(0.5)
    assert summary["pass@2"] == pytest.approx((5 / 6 + 0 + 1) / 3)
    assert summary["pass@4"] == pytest.approx(2 / 3)
    assert summary["maj@4"] == pytest.approx(2 / 3)  # p1's tie goes to 1/2 (seen first), which 0.5 joins
    assert summary["maj@2"] == pytest.approx((4 / 6 + 0 + 1) / 3)
    assert summary["no_answer_rate"] == pytest.approx(2 / 12)
    lines = (tmp_path / "out" / "samples.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    observed = (first["problem_id"], first["sample_index"], first["extracted"], first["reward"])
    assert observed == ("p1", 0, "\\frac12", 1.0)
    assert "| responses |" in (tmp_path / "out" / "summary.md").read_text()


def test_compare_two_runs(tmp_path, responses):
    better = tmp_path / "better.jsonl"
    better.write_text(responses.read_text().replace("\\\\boxed{3}", "\\\\boxed{1/2}"))
    for name, path in (("a", responses), ("b", better)):
        assert run_cli("eval", "--responses", str(path), "--out", str(tmp_path / name), cwd=tmp_path).returncode == 0
    result = run_cli("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 1 and rows[0]["delta"] == pytest.approx(1 / 6)
    assert rows[0]["ci_low"] <= rows[0]["delta"] <= rows[0]["ci_high"]


def test_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "response": "\\\\boxed{1}", "answer": 1}\n{"id": 2, "response": "x"}\n')
    result = run_cli("eval", "--responses", str(bad), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"deepscaler eval: error: {bad}:2: missing answer"
    assert not (tmp_path / "o").exists()
