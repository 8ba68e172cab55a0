"""A run folder's samples.jsonl as a crash or a person may leave it, and a resume with other settings: each
refused (or repaired) before any model loads, in one line naming the file, the line or the setting."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from deepscaler.cli import main
from deepscaler.eval.generate import benchmark_files
from deepscaler.eval.results import EvalError, SampleRecord, read_records
from deepscaler.eval.runner import EvalSettings
from deepscaler.prompting import PROMPT_TEMPLATE

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"
RECORDS = [SampleRecord("aime2024", str(i), 0, f"Réponse {i} : \\boxed{{{i}}}", [str(i)], str(i), 1.0, 9, "stop")
           for i in range(3)]


def _lines() -> list[bytes]:
    return [(record.to_json() + "\n").encode() for record in RECORDS]


def test_a_last_line_torn_inside_a_character_is_dropped(tmp_path):
    path = tmp_path / "samples.jsonl"
    last = _lines()[2]
    cut = last.index("é".encode()) + 1  # between the two bytes of "é"
    path.write_bytes(b"".join(_lines()[:2]) + last[:cut])
    assert read_records(path) == RECORDS[:2]
    path.write_bytes(b"".join(_lines()[:2]) + b"\x00" * 40 + b"\n")  # a tail zeroed by a crash, newline and all
    assert read_records(path) == RECORDS[:2]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [(b"garbage\n", "Expecting value"), (b'{"benchmark": "x\xff"}\n', "invalid start byte"),
     (b"[1, 2]\n", "not an object but list"), (b'{"benchmark": "aime2024"}\n', "are not a sample record's"),
     (json.dumps({**asdict(RECORDS[0]), "sample_index": "0"}).encode() + b"\n", "a field has the wrong type")],
)
def test_a_damaged_middle_line_is_an_error_naming_file_and_line(tmp_path, damage, reason):
    path = tmp_path / "samples.jsonl"
    path.write_bytes(_lines()[0] + damage + b"".join(_lines()[1:]))
    with pytest.raises(EvalError, match=rf"^{path}:2: not a sample record \(.*{reason}.*\); delete the line"):
        read_records(path)


def _run_folder(folder: Path, samples: bytes, **changes) -> None:
    """A run folder as `deepscaler eval --model <missing>/tiny --benchmarks aime2024 --limit 1 --n 2` writes
    it, but for `changes` to its settings."""
    folder.mkdir()
    settings = EvalSettings(benchmarks=["aime2024"], n=2, limit=1, data_dir=str(DATA_DIR),
                            prompt_template=PROMPT_TEMPLATE)
    config = {"model": {"name": "tiny", "path": str(folder.parent / "missing" / "tiny"), "engine": "builtin"},
              "settings": {**asdict(settings), **changes}, "benchmark_files": benchmark_files(settings)}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "samples.jsonl").write_bytes(samples)


def _eval(tmp_path: Path, out: Path, *extra: str) -> int:
    # The model folder does not exist: a refusal that names the run folder proves it came before loading.
    return main(["eval", "--model", str(tmp_path / "missing" / "tiny"), "--benchmarks", "aime2024", "--limit", "1",
                 "--n", "2", "--engine", "builtin", "--data-dir", str(DATA_DIR), "--out", str(out), *extra])


@pytest.mark.skipif(not DATA_DIR.is_dir(), reason="shared benchmarks not found beside the repository")
def test_resume_refusals_come_before_the_model_loads(tmp_path, capsys):
    other = tmp_path / "other"
    _run_folder(other, b"".join(_lines()), temperature=1.0, max_tokens=512)
    assert _eval(tmp_path, other) == 2
    error = capsys.readouterr().err
    assert error == (f"deepscaler eval: error: {other} holds a run with other settings (earlier -> now): "
                     "temperature: 1.0 -> 0.6; max_tokens: 512 -> 32768. Give the same ones to resume, or another "
                     "--out\n")

    damaged = tmp_path / "damaged"
    _run_folder(damaged, _lines()[0] + b"{oops\n" + _lines()[1])
    assert _eval(tmp_path, damaged) == 2
    assert capsys.readouterr().err.startswith(f"deepscaler eval: error: {damaged / 'samples.jsonl'}:2: not a sample")

    (damaged / "config.json").unlink()
    assert _eval(tmp_path, damaged) == 2
    assert capsys.readouterr().err.endswith("holds samples.jsonl but no config.json, so not what made them: use "
                                            "another --out\n")

    same = tmp_path / "same"  # nothing wrong with the folder: the missing model is what stops this one
    _run_folder(same, b"".join(_lines()))
    assert _eval(tmp_path, same) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--temperature", "nan"], "--temperature must be a finite number >= 0, got nan"),
     (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"), (["--limit", "0"], "--limit must be >= 1, got 0"),
     (["--grader-timeout", "-1"], "--grader-timeout must be a finite number of seconds > 0"),
     (["--prompt-template", "{question}"], "--prompt-template must use {problem}"),
     (["--benchmarks", ","], "--benchmarks names no benchmark"), (["--out", "a_file"], "--out a_file: not a folder")],
)
def test_bad_arguments_are_refused_in_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder\n")
    assert _eval(tmp_path, tmp_path / "out", *args) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
