"""Benchmarks: a registry of names, and loaders that turn any problem/answer file into `Problem`s.

A benchmark is a name resolved in a data directory (`--data-dir`, else $DEEPSCALER_DATA_DIR, else
`data/benchmarks` or `../shared/data/benchmarks` from the working directory), or a path to a JSON,
JSONL or Parquet file with problem and answer fields.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepscaler.reward import gold_answers

REGISTRY: dict[str, str] = {
    "aime2024": "aime2024.json",
    "amc2023": "amc2023.json",
    "math500": "math500.json",
    "minerva": "minerva.json",
    "olympiadbench": "olympiadbench.json",
    "gsm8k": "gsm8k.json",
}
DEFAULT_BENCHMARKS = ("aime2024", "math500", "amc2023", "minerva", "olympiadbench")
DATA_DIR_ENV = "DEEPSCALER_DATA_DIR"
_PROBLEM_FIELDS = ("problem", "question", "prompt")
_ANSWER_FIELDS = ("answers", "answer", "ground_truth", "final_answer")  # "answers": every acceptable form
_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)


class BenchmarkError(ValueError):
    """A benchmark cannot be loaded; the message names the file and, where it applies, the row."""


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answers: list[str]  # acceptable gold answers (alternatives)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def data_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Where benchmark names are looked up, in order."""
    if data_dir is not None:
        return [Path(data_dir)]
    if os.environ.get(DATA_DIR_ENV):
        return [Path(os.environ[DATA_DIR_ENV])]
    return [Path("data/benchmarks"), Path("../shared/data/benchmarks")]


def resolve(name: str, data_dir: str | Path | None = None) -> Path:
    """The file behind a benchmark name or path."""
    candidate = Path(name)
    if candidate.suffix in (".json", ".jsonl", ".parquet"):
        if not candidate.is_file():
            raise BenchmarkError(f"{candidate}: no such file")
        return candidate
    if name not in REGISTRY:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(REGISTRY)} (or give a file path)")
    for directory in data_dirs(data_dir):
        path = directory / REGISTRY[name]
        if path.is_file():
            return path
    searched = ", ".join(str(d) for d in data_dirs(data_dir))
    raise BenchmarkError(f"benchmark {name!r}: {REGISTRY[name]} not found in {searched} (set --data-dir)")


def load(name: str, data_dir: str | Path | None = None, limit: int | None = None) -> list[Problem]:
    """Load a benchmark by name or path; every row must have a problem and a gradable answer."""
    path = resolve(name, data_dir)
    rows = read_rows(path)
    problems = [_to_problem(row, index, path) for index, row in enumerate(rows)]
    ids = [problem.id for problem in problems]
    if len(set(ids)) != len(ids):
        raise BenchmarkError(f"{path}: duplicate problem ids")
    return problems[:limit] if limit else problems


def read_rows(path: Path) -> list[dict]:
    """The rows of a JSON array, JSONL or Parquet file, unchecked."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq  # optional: only Parquet inputs need it

            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            rows = []
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as error:
                        raise BenchmarkError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            return rows
        data = json.loads(text)
    except ImportError:
        raise BenchmarkError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BenchmarkError(f"{path}: cannot read ({error})") from None
    if not isinstance(data, list):
        raise BenchmarkError(f"{path}: expected a JSON array of objects")
    return data


def _to_problem(row: Any, index: int, path: Path) -> Problem:
    where = f"{path}: row {index + 1}"  # as a person counts rows; `index` stays 0-based for default ids
    if not isinstance(row, dict):
        raise BenchmarkError(f"{where}: not an object")
    problem = next((row[key] for key in _PROBLEM_FIELDS if isinstance(row.get(key), str)), None)
    if not problem or not problem.strip():
        raise BenchmarkError(f"{where}: no problem text (fields tried: {', '.join(_PROBLEM_FIELDS)})")
    if isinstance(row.get("context"), str) and row["context"].strip():
        problem = f"{row['context'].strip()}\n\n{problem}"  # OlympiadBench keeps shared setup apart
    answers = gold_answers(next((row[key] for key in _ANSWER_FIELDS if row.get(key) is not None), None))
    if not answers and isinstance(row.get("solution"), str):
        match = _GSM8K_ANSWER.search(row["solution"])
        answers = [match.group(1).replace(",", "")] if match else []
    answers = [answer.strip() for answer in answers if answer.strip()]
    if not answers:
        raise BenchmarkError(f"{where}: no answer (fields tried: {', '.join(_ANSWER_FIELDS)}, solution '####')")
    problem_id = str(row.get("id", row.get("unique_id", row.get("idx", index))))
    extra = {key: row[key] for key in ("difficulty", "year", "type", "subfield") if key in row}
    return Problem(id=problem_id, problem=problem, answers=answers, extra=extra)
