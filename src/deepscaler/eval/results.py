"""Per-sample records and the metrics computed from them (per benchmark and overall)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from deepscaler.eval.metrics import default_ks, mean, problem_metrics
from deepscaler.reward import RewardScorer, extract_answer
from deepscaler.reward.equivalence import answer_key


class EvalError(ValueError):
    """Bad evaluation input; the message names the file and the line."""


@dataclass
class SampleRecord:
    """One line of samples.jsonl."""

    benchmark: str
    problem_id: str
    sample_index: int
    response: str
    answers: list[str]
    extracted: str | None = None
    reward: float | None = None
    length: int | None = None  # response tokens, when known
    finish_reason: str | None = None  # "stop" or "length" (truncated), when known

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def score_records(records: Sequence[SampleRecord], scorer: RewardScorer) -> None:
    """Fill `extracted` and `reward` in place, with the batch scorer."""
    rewards = scorer.score([r.response for r in records], [r.answers for r in records])
    for record, reward in zip(records, rewards):
        record.reward = reward
        record.extracted = extract_answer(record.response, think=scorer.think)


def summarize(records: Iterable[SampleRecord]) -> dict:
    """Metrics per benchmark and overall: pass@1, unbiased pass@k and maj@k for k <= n, mean length,
    truncation rate. Overall values pool all problems; `benchmark_mean` averages the benchmarks'."""
    by_benchmark: dict[str, dict[str, list[SampleRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        by_benchmark[record.benchmark][record.problem_id].append(record)
    if not by_benchmark:
        raise ValueError("no samples to summarize")
    benchmarks = {name: _summarize_problems(list(problems.values())) for name, problems in by_benchmark.items()}
    all_problems = [samples for problems in by_benchmark.values() for samples in problems.values()]
    overall = _summarize_problems(all_problems)
    overall["benchmark_mean_pass@1"] = mean([metrics["pass@1"] for metrics in benchmarks.values()])
    return {**overall, "benchmarks": benchmarks}


def _summarize_problems(problems: list[list[SampleRecord]]) -> dict:
    n_min = min(len(samples) for samples in problems)
    ks = default_ks(n_min)
    per_problem = []
    for samples in problems:
        samples = sorted(samples, key=lambda record: record.sample_index)
        rewards = [float(record.reward or 0.0) for record in samples]
        keys = [answer_key(record.extracted) for record in samples]
        per_problem.append(problem_metrics(rewards, keys, ks))
    flat = [record for samples in problems for record in samples]
    lengths = [record.length for record in flat if record.length is not None]
    finishes = [record.finish_reason for record in flat if record.finish_reason is not None]
    summary = {
        "problems": len(problems),
        "samples": len(flat),
        "samples_per_problem": n_min,  # the fewest any problem has; pass@k and maj@k use k <= this
    }
    for key in per_problem[0]:
        summary[key] = mean([metrics[key] for metrics in per_problem])
    summary["mean_length"] = mean(lengths) if lengths else None
    summary["truncation_rate"] = mean([f == "length" for f in finishes]) if finishes else None
    summary["no_answer_rate"] = mean([record.extracted is None for record in flat])
    return summary


def write_records(path: Path, records: Iterable[SampleRecord]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.to_json() + "\n")


def read_records(path: Path) -> list[SampleRecord]:
    """Records from samples.jsonl. The last line, when it does not read (an interrupted write, cut anywhere,
    even inside a character), is dropped: its chunk is then redone. A line before it that does not read was
    damaged after it was written, and is an EvalError naming the file and line."""
    if not path.is_file():
        return []
    lines = [(number, raw) for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1) if raw.strip()]
    records = []
    for position, (number, raw) in enumerate(lines):
        try:
            records.append(_record(json.loads(raw.decode("utf-8"))))
        except ValueError as error:  # UnicodeDecodeError and JSONDecodeError among them
            if position == len(lines) - 1:
                break
            reason = error.reason if isinstance(error, UnicodeDecodeError) else error
            raise EvalError(f"{path}:{number}: not a sample record ({reason}); delete the line or use another "
                            "--out") from None
    return records


def _record(row: object) -> SampleRecord:
    """A sample record from one decoded line; ValueError when it is not one."""
    if not isinstance(row, dict):
        raise ValueError(f"not an object but {type(row).__name__}")
    try:
        record = SampleRecord(**row)
    except TypeError:
        raise ValueError(f"fields {sorted(row)} are not a sample record's") from None
    if not (isinstance(record.benchmark, str) and isinstance(record.problem_id, str)
            and isinstance(record.response, str) and isinstance(record.answers, list)
            and isinstance(record.sample_index, int) and not isinstance(record.sample_index, bool)):
        raise ValueError("a field has the wrong type")
    return record
