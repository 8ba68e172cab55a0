"""The account of one `data prepare` run: rows in and out of every step, with examples of what each dropped.

Every row that does not reach the output is counted in exactly one step, so the numbers add up: rows read
= rows written + the sum of the drops. Examples name the file and the row as a person counts it (1-based;
in a JSONL file, the line number).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepscaler.files import write_json_atomic, write_text_atomic

# (name, what a row needs to pass the step), in pipeline order.
STEPS: tuple[tuple[str, str], ...] = (
    ("read", "an object with a problem text and answers of a known type"),
    ("answer", "an answer, given or extracted from the solution (last \\boxed{}, or GSM8K's ####)"),
    ("gradable", "at least one answer the verifier can grade"),
    ("exact_dedup", "a normalised problem text not seen before"),
    ("decontaminate", "no n-gram overlap with a benchmark problem at or above the threshold"),
    ("near_dedup", "no earlier kept problem above the MinHash Jaccard threshold with the same answer"),
)
_PROBLEM_CHARS = 160


@dataclass
class Example:
    """One dropped row: where it was, what it said, and why it went."""

    file: str
    row: int
    id: str | None
    problem: str | None
    reason: str


@dataclass
class Step:
    """Counts of one step; `rows_out` = `rows_in` - `dropped`."""

    name: str
    keeps: str
    rows_in: int = 0
    dropped: int = 0
    examples: list[Example] = field(default_factory=list)

    @property
    def rows_out(self) -> int:
        """Rows that passed this step."""
        return self.rows_in - self.dropped


class Report:
    """Collects counts as rows flow through the pipeline; `write` saves it as Markdown and JSON."""

    def __init__(self, settings: dict[str, Any], examples: int = 5) -> None:
        self.settings = settings
        self.max_examples = examples
        self.steps = {name: Step(name, keeps) for name, keeps in STEPS}
        self.inputs: list[dict[str, Any]] = []
        self.notes: Counter[str] = Counter()
        self.output: dict[str, Any] = {}
        self.seconds = 0.0
        self.peak_memory_mb = 0.0

    def passed(self, step: str) -> None:
        """A row entered `step` (and, unless `dropped` follows, left it)."""
        self.steps[step].rows_in += 1

    def dropped(self, step: str, file: str, row: int, reason: str, problem: str | None = None,
                row_id: str | None = None) -> None:
        """The row that entered `step` last was dropped there."""
        current = self.steps[step]
        current.dropped += 1
        if len(current.examples) < self.max_examples:
            text = None if problem is None else " ".join(problem.split())[:_PROBLEM_CHARS]
            current.examples.append(Example(file, row, row_id, text, reason))

    @property
    def rows_read(self) -> int:
        """Rows read from all inputs, bad ones included."""
        return self.steps["read"].rows_in

    @property
    def rows_written(self) -> int:
        """Rows that passed every step."""
        return self.steps[STEPS[-1][0]].rows_out

    def to_dict(self) -> dict[str, Any]:
        """Everything in the report, JSON-ready."""
        steps = [
            {"step": s.name, "keeps": s.keeps, "rows_in": s.rows_in, "dropped": s.dropped, "rows_out": s.rows_out,
             "examples": [asdict(example) for example in s.examples]}
            for s in self.steps.values()
        ]
        rate = self.rows_read / self.seconds if self.seconds else 0.0
        return {
            "rows_read": self.rows_read, "rows_written": self.rows_written, "inputs": self.inputs, "steps": steps,
            "notes": dict(sorted(self.notes.items())), "output": self.output, "settings": self.settings,
            "seconds": round(self.seconds, 2), "rows_per_second": round(rate, 1),
            "peak_memory_mb": round(self.peak_memory_mb, 1),
        }

    def markdown(self) -> str:
        """The report as a Markdown page."""
        data = self.to_dict()
        lines = [
            "# Training data report", "",
            f"{data['rows_read']} rows read, {data['rows_written']} written to `{self.output.get('path', '?')}` "
            f"({self.output.get('layout', '?')} layout) in {data['seconds']} s "
            f"({data['rows_per_second']} rows/s, peak memory {data['peak_memory_mb']} MB).", "",
            "## Inputs", "", "| input | rows | problem |", "| --- | ---: | --- |",
        ]
        lines += [f"| `{i['input']}` | {i['rows']} | {(i.get('error') or '').replace('|', '/')} |" for i in self.inputs]
        lines += ["", "## Steps", "", "| step | keeps rows with | in | dropped | out |",
                  "| --- | --- | ---: | ---: | ---: |"]
        lines += [f"| {s['step']} | {s['keeps']} | {s['rows_in']} | {s['dropped']} | {s['rows_out']} |"
                  for s in data["steps"]]
        if data["notes"]:
            lines += ["", "## Notes", ""] + [f"- {name}: {count}" for name, count in data["notes"].items()]
        for step in data["steps"]:
            if step["examples"]:
                lines += ["", f"## Dropped by {step['step']} (first {len(step['examples'])} of {step['dropped']})", ""]
                for example in step["examples"]:
                    problem = f": {example['problem']}" if example["problem"] else ""
                    lines.append(f"- `{example['file']}` row {example['row']} — {example['reason']}{problem}")
        lines += ["", "## Settings", "", "```json", json.dumps(self.settings, indent=2), "```", ""]
        return "\n".join(lines)

    def write(self, directory: str | Path, stem: str) -> tuple[Path, Path]:
        """Save `<stem>.report.md` and `<stem>.report.json` in directory; returns both paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        markdown, data = directory / f"{stem}.report.md", directory / f"{stem}.report.json"
        write_text_atomic(markdown, self.markdown())
        write_json_atomic(data, self.to_dict())
        return markdown, data
