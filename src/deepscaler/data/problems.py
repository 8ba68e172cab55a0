"""Problem files by name or path, loaded whole into `Record`s: what the trainer and the evaluation read.

A name is a benchmark of the registry, looked up in a data directory (`data_dir`, else $DEEPSCALER_DATA_DIR,
else `data/benchmarks` or `../shared/data/benchmarks` from the working directory); anything else is a path
to a JSON, JSONL or Parquet file in any layout `records.to_record` knows. Unlike curation, which counts a bad
row and goes on, loading is strict: every row must give a problem and an answer (taken from its solution
when it has none, as GSM8K's), or the whole file is refused with the row named.
"""

from __future__ import annotations

import os
from pathlib import Path

from deepscaler.data.answers import from_solution
from deepscaler.data.records import ANSWER_FIELDS, BadRow, Record, to_record
from deepscaler.data.sources import SUFFIXES, SourceError, Unparsable, label, open_rows

REGISTRY: dict[str, str] = {
    "aime2024": "aime2024.json",
    "amc2023": "amc2023.json",
    "math500": "math500.json",
    "minerva": "minerva.json",
    "olympiadbench": "olympiadbench.json",
    "gsm8k": "gsm8k.json",
}
DATA_DIR_ENV = "DEEPSCALER_DATA_DIR"


class ProblemFileError(ValueError):
    """A problem file cannot be found or loaded; the message is one line naming the file and, where it
    applies, the row."""


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
    if candidate.suffix in SUFFIXES:
        if not candidate.is_file():
            raise ProblemFileError(f"{candidate}: no such file")
        return candidate
    if name not in REGISTRY:
        raise ProblemFileError(f"unknown benchmark {name!r}; known: {', '.join(REGISTRY)} (or give a file path)")
    for directory in data_dirs(data_dir):
        path = directory / REGISTRY[name]
        if path.is_file():
            return path
    searched = ", ".join(str(d) for d in data_dirs(data_dir))
    raise ProblemFileError(f"benchmark {name!r}: {REGISTRY[name]} not found in {searched} (set --data-dir)")


def load(name: str, data_dir: str | Path | None = None, limit: int | None = None) -> list[Record]:
    """The problems of a benchmark name or file, in file order (the first `limit` of them when given).

    Each problem's text is as the file has it, and a row without an id is numbered by its position from 0:
    prompts, sampling seeds and resumed evaluations depend on both."""
    path = resolve(name, data_dir)
    problems = []
    try:
        for position, (number, row) in enumerate(open_rows(str(path))):
            problems.append(_problem(row, number, position, path))
    except SourceError as error:
        raise ProblemFileError(f"{path}: {error}") from None
    ids = [problem.id for problem in problems]
    if len(set(ids)) != len(ids):
        raise ProblemFileError(f"{path}: duplicate problem ids")
    return problems[:limit] if limit else problems


def _problem(row: object, number: int, position: int, path: Path) -> Record:
    """A row as a record with at least one answer; `number` is how a person finds it (1-based, in a JSONL file
    its line), `position` its place among the rows (0-based, blank lines not counted)."""
    where = f"{path}: row {number}"
    if isinstance(row, Unparsable):
        raise ProblemFileError(f"{where}: {row.reason}")
    try:
        record = to_record(row, label(str(path)), position, strip=False, default_id=str(position))
    except BadRow as error:
        raise ProblemFileError(f"{where}: {error}") from None
    if not record.answers:
        record.answers = from_solution(record.solution)
    if not record.answers:
        raise ProblemFileError(f"{where}: no answer (fields tried: {', '.join(ANSWER_FIELDS)}; no \\boxed{{}} "
                               "or #### in a solution)")
    return record
