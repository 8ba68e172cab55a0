import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"
ROWS = [
    {"problem": "What is $6 \\times 7$?", "answer": 42},
    {"problem": "what is $6\\times 7$ ?", "answer": "42"},
    {"problem": "Solve $2x = 10$.", "solution": "Divide: $x = \\boxed{5}$."},
    {"problem": "Round $\\pi$ to two decimals.", "answer": ["3.14"]},
    {"problem": "Say something.", "answer": {"text": "hello"}},
]


def deepscaler(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")  # no hub here: fail fast, not on time-outs
    return subprocess.run([sys.executable, "-m", "deepscaler.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.skipif(not BENCHMARKS.is_dir(), reason="shared benchmark data not found beside the repository")
def test_prepare_then_convert_between_layouts(tmp_path):
    (tmp_path / "raw.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    done = deepscaler("data", "prepare", "raw.jsonl", "--out", "out/verl.parquet", "--format", "verl", "--quiet",
                      "--data-dir", str(BENCHMARKS), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 of 5 rows written to out/verl.parquet (2 dropped)" in done.stdout
    table = pq.read_table(tmp_path / "out" / "verl.parquet").to_pylist()
    assert [row["reward_model"]["ground_truth"] for row in table] == ["42", "5", "3.14"]
    report = json.loads((tmp_path / "out" / "verl.report.json").read_text())
    assert report["steps"][0]["examples"][0] == {
        "file": "raw.jsonl", "row": 5, "id": None, "problem": None,
        "reason": "`answer` has an unexpected type (dict: \"{'text': 'hello'}\")"}
    assert report["steps"][3]["examples"][0]["reason"] == "same text as raw.jsonl row 1"

    done = deepscaler("data", "convert", "out/verl.parquet", "--out", "back.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    back = [json.loads(line) for line in (tmp_path / "back.jsonl").read_text().splitlines()]
    assert [(row["id"], row["problem"], row["answers"]) for row in back] == [
        ("raw-0", "What is $6 \\times 7$?", ["42"]), ("raw-2", "Solve $2x = 10$.", ["5"]),
        ("raw-3", "Round $\\pi$ to two decimals.", ["3.14"])]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "missing.json", "--out", "o.parquet"], "missing.json: no such file"),
        (["prepare", "raw.jsonl", "--out", "o.csv"], "o.csv: output must end in .json, .jsonl, .parquet"),
        (["prepare", "raw.jsonl", "--out", "o.jsonl", "--decontaminate", "aime1999"], "unknown benchmark 'aime1999'"),
        (["prepare", "raw.jsonl", "--out", "o.jsonl", "--near-threshold", "1.5"], "threshold must be in (0, 1]"),
        (["prepare", "raw.jsonl", "--out", "o.jsonl", "--near-threshold", "0.99"], "needs more than 128 MinHash"),
        (["prepare", "hf:nobody/nothing:train", "--out", "o.jsonl"], "hf:nobody/nothing:train: "),
        (["convert", "raw.txt", "--out", "o.jsonl"], "raw.txt: unknown format"),
        (["prepare", "raw.jsonl", "--out", "dir.jsonl"], "--out dir.jsonl: is a folder, give a file name"),
        (["prepare", "raw.jsonl", "--out", "raw.txt/o.jsonl"], "--out raw.txt/o.jsonl: cannot create folder raw.txt"),
        (["prepare", "raw.jsonl", "--out", "o.jsonl", "--report", "raw.txt"], "--report raw.txt: not a folder"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "raw.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    (tmp_path / "raw.txt").write_text("text\n")
    (tmp_path / "dir.jsonl").mkdir()
    done = deepscaler("data", *args, "--data-dir", str(BENCHMARKS), cwd=tmp_path) if args[0] == "prepare" else \
        deepscaler("data", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.glob("o.*"))
