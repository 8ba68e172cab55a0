"""One problem (`Record`) and the conversion of an input row, of any known layout, into one.

The one record type of the project: curation reads and writes it, and the trainer and the evaluation load
their files into it (`problems.load`). Known layouts: ours (`problem`, `answer`/`answers`, ...), the benchmark
files' (`question`, `ground_truth`, OlympiadBench's `context`, GSM8K's answer inside `solution`), a plain
`prompt` string, and verl's (`prompt` chat messages, `reward_model.ground_truth`, `extra_info`). A row that
cannot become a record raises `BadRow` with the reason; the caller reports it with the file and row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from deepscaler.prompting import INSTRUCTION
from deepscaler.reward import gold_answers

PROBLEM_FIELDS = ("problem", "question", "prompt")
ANSWER_FIELDS = ("answers", "answer", "ground_truth", "final_answer")
_ID_FIELDS = ("id", "unique_id", "idx")


class BadRow(ValueError):
    """A row that cannot become a record: not an object, no problem text, an answer of an unexpected type."""


@dataclass
class Record:
    """A problem: its text, the acceptable answers (alternatives) and where it came from."""

    id: str
    problem: str
    answers: list[str]
    source: str
    solution: str | None = None
    difficulty: float | None = None

    @property
    def answer(self) -> str:
        """The first acceptable answer: what single-answer consumers (the trainer, verl) read."""
        return self.answers[0] if self.answers else ""


def to_record(row: Any, source: str, index: int, *, strip: bool = True, default_id: str | None = None) -> Record:
    """The record a raw row describes; `source` fills in a missing source, and a row without an id gets
    `default_id`, else `<source>-<index>` (`index` 0-based).

    `strip` trims the whitespace around the problem text, as curation writes it; the loader keeps the text
    as the file has it, since a prompt rendered from it (and what a model learned from it) depends on every
    character."""
    record = _to_record(row, source, index, strip, default_id)
    for name in ("id", "problem", "source", "solution"):
        _check_text(getattr(record, name), name)
    for answer in record.answers:
        _check_text(answer, "answers")
    return record


def _check_text(text: str | None, name: str) -> None:
    """Text that cannot be written as UTF-8: a lone surrogate, from a JSON escape such as \\ud800 or from a
    byte that was not UTF-8 (kept by the JSON array reader's surrogateescape)."""
    if text is None:
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BadRow(f"`{name}` is not valid UTF-8 text (character {error.start + 1} is a lone surrogate "
                     "or an undecodable byte)") from None


def _to_record(row: Any, source: str, index: int, strip: bool, default_id: str | None) -> Record:
    if not isinstance(row, dict):
        raise BadRow(f"not an object but {type(row).__name__}")
    if isinstance(row.get("prompt"), list) and isinstance(row.get("reward_model"), dict):
        return _from_verl(row, source, index, strip, default_id)
    problem = next((row[key] for key in PROBLEM_FIELDS if isinstance(row.get(key), str) and row[key].strip()), None)
    if problem is None:
        raise BadRow(f"no problem text (fields tried: {', '.join(PROBLEM_FIELDS)})")
    if isinstance(row.get("context"), str) and row["context"].strip():
        problem = f"{row['context'].strip()}\n\n{problem}"  # OlympiadBench keeps shared setup apart
    answer_key = next((key for key in ANSWER_FIELDS if row.get(key) not in (None, "", [])), None)
    answers = _answers(row[answer_key], answer_key) if answer_key else []
    row_source = row.get("source", row.get("data_source"))
    return Record(
        id=_identifier(row, f"{source}-{index}" if default_id is None else default_id),
        problem=problem.strip() if strip else problem,
        answers=answers,
        source=row_source if isinstance(row_source, str) and row_source else source,
        solution=_solution(row.get("solution")),
        difficulty=_difficulty(row.get("difficulty", row.get("level"))),
    )


def _from_verl(row: dict, default_source: str, index: int, strip: bool, default_id: str | None) -> Record:
    users = [m.get("content") for m in row["prompt"] if isinstance(m, dict) and m.get("role") == "user"]
    if not users or not isinstance(users[-1], str) or not users[-1].strip():
        raise BadRow("verl row without a user message in `prompt`")
    problem = users[-1].removesuffix(INSTRUCTION)
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
    gold = extra.get("answers") if extra.get("answers") else row["reward_model"].get("ground_truth")
    source = row["data_source"] if isinstance(row.get("data_source"), str) and row["data_source"] else default_source
    return Record(
        id=_identifier(extra, f"{source}-{extra.get('index', index)}" if default_id is None else default_id),
        problem=problem.strip() if strip else problem,
        answers=_answers(gold, "reward_model.ground_truth"),
        source=source,
        solution=_solution(extra.get("solution")),
        difficulty=_difficulty(extra.get("difficulty")),
    )


def _answers(value: Any, key: str) -> list[str]:
    """Gold answers as clean strings; a value that is no answer at all (a dict, a bool) is a bad row."""
    if isinstance(value, (dict, bool)) or (isinstance(value, (list, tuple)) and not _flat_answers(value)):
        raise BadRow(f"`{key}` has an unexpected type ({type(value).__name__}: {str(value)[:60]!r})")
    if not isinstance(value, (str, int, float, list, tuple)):
        raise BadRow(f"`{key}` has an unexpected type ({type(value).__name__})")
    return [answer.strip() for answer in gold_answers(value) if answer.strip()]


def _flat_answers(items: list | tuple) -> bool:
    return all(isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in items)


def _identifier(row: dict, default: str) -> str:
    value = next((row[key] for key in _ID_FIELDS if isinstance(row.get(key), (str, int)) and row[key] != ""), None)
    return str(value) if value is not None else default


def _solution(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, list) and value and all(isinstance(part, str) for part in value):
        return "\n\n".join(value)  # OlympiadBench: several solutions; the last is as good as any
    return None


def _difficulty(value: Any) -> float | None:
    """A number when the row has one ("Level 3" is 3); difficulty is informative, never a reason to drop."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip().removeprefix("Level").strip()
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None
