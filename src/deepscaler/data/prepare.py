"""The curation pipeline: inputs -> records -> answers -> gradable -> exact dedup -> decontaminate -> near dedup.

Rows stream through one at a time; what is held is the dedup and decontamination indexes (tens of bytes
to a kilobyte per kept row) and, with `shuffle`, the file offsets of the kept rows. A run is a function of
its inputs (in order) and settings: the same seed gives the same file, byte for byte.
"""

from __future__ import annotations

import random
import resource
import sys
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from deepscaler.data.answers import from_solution, gradable_answers
from deepscaler.data.decontaminate import DEFAULT_NGRAM, DEFAULT_OVERLAP, Decontaminator, benchmark_problems
from deepscaler.data.dedup import ExactDuplicates, NearDuplicates
from deepscaler.data.formats import LAYOUTS, Writer
from deepscaler.data.records import BadRow, Record, to_record
from deepscaler.data.report import Report
from deepscaler.data.sources import SourceError, SourceUnavailable, Unparsable, expand, label, open_rows
from deepscaler.data.spool import Spool
from deepscaler.data.text import normal_form, split_tokens
from deepscaler.prompting import DEFAULT_BENCHMARKS
from deepscaler.reward import is_equivalent


@dataclass(frozen=True)
class Settings:
    """How a run curates; the defaults are the recipe's (see `decontaminate` for the n-gram choice)."""

    decontaminate: tuple[str, ...] = DEFAULT_BENCHMARKS  # benchmark names or files; () turns the step off
    data_dir: str | None = None  # where benchmark names are looked up (default: see problems.data_dirs)
    ngram: int = DEFAULT_NGRAM
    overlap: float = DEFAULT_OVERLAP
    near_threshold: float | None = 0.9  # None turns near-duplicate removal off
    near_same_answer: bool = True  # a near duplicate must also have the same answer (else it is a variant)
    shingle: int = 3
    num_perm: int = 128
    seed: int = 0
    shuffle: bool = False
    layout: str = "deepscaler"
    split: str = "train"
    examples: int = 5  # dropped rows shown per step in the report
    progress: bool = False  # progress bars on standard error

    def __post_init__(self) -> None:
        """Refuse settings no run could use, before any work: ValueError with a one-line message."""
        if not 0.0 < self.overlap <= 1.0:
            raise ValueError(f"overlap must be in (0, 1], got {self.overlap}")
        if self.near_threshold is not None and not 0.0 < self.near_threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {self.near_threshold}")
        for name in ("ngram", "shingle"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.examples < 0:
            raise ValueError(f"examples must be at least 0, got {self.examples}")
        if self.num_perm < 16:
            raise ValueError(f"num_perm must be at least 16, got {self.num_perm}")
        if self.near_threshold is not None:
            NearDuplicates.index(self.near_threshold, self.num_perm)
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; known: {', '.join(LAYOUTS)}")


class _Run:
    """The state of one run: indexes, the report, and where each surviving row came from."""

    def __init__(self, specs: list[str], settings: Settings, report: Report) -> None:
        self.specs, self.settings, self.report = specs, settings, report
        self.exact = ExactDuplicates()
        self.near = None
        if settings.near_threshold is not None:
            self.near = NearDuplicates(settings.near_threshold, settings.shingle, settings.num_perm, settings.seed)
        problems = benchmark_problems(settings.decontaminate, settings.data_dir)
        self.decontaminator = Decontaminator(problems, settings.ngram, settings.overlap)
        self.report.notes["benchmark problems in the decontamination set"] = len(self.decontaminator)
        self._files, self._rows = array("i"), array("q")  # per gradable row: its input and position
        self._ids: set[str] = set()
        self._answers: dict[int, list[str]] = {}  # of kept rows: a near duplicate must have the same answer

    def where(self, key: int) -> str:
        """`<input> row <n>` (1-based) of a gradable row, by its key."""
        return f"{self.specs[self._files[key]]} row {self._rows[key]}"

    def _same_answer(self, answers: list[str], earlier: int) -> bool:
        """Whether a row has the answer of an earlier kept row: when not, a changed number made a new problem."""
        return any(is_equivalent(answer, self._answers[earlier]) for answer in answers)

    def process(self, file: int, number: int, raw: Any) -> Record | None:
        """The record row `number` (1-based) becomes, or None when a step drops it (and the report says why)."""
        report, spec = self.report, self.specs[file]

        def drop(step: str, reason: str, record: Record | None = None) -> None:
            report.dropped(step, spec, number, reason, record.problem if record else None,
                           record.id if record else None)

        report.passed("read")
        if isinstance(raw, Unparsable):
            return drop("read", raw.reason)
        try:
            record = to_record(raw, label(spec), number - 1)
        except BadRow as error:
            return drop("read", str(error))
        report.passed("answer")
        if not record.answers:
            record.answers = from_solution(record.solution)
            report.notes["answers extracted from solutions"] += bool(record.answers)
        if not record.answers:
            return drop("answer", "no answer, and no \\boxed{} or #### in a solution", record)
        report.passed("gradable")
        kept, refused = gradable_answers(record.answers)
        if not kept:
            return drop("gradable", "; ".join(f"{answer[:60]!r} {why}" for answer, why in refused), record)
        report.notes["ungradable alternative answers removed"] += len(refused)
        record.answers = kept
        key = len(self._rows)
        self._files.append(file)
        self._rows.append(number)
        report.passed("exact_dedup")
        normal = normal_form(record.problem)
        earlier = self.exact.check(normal, key)
        if earlier is not None:
            return drop("exact_dedup", f"same text as {self.where(earlier)}", record)
        words = split_tokens(normal)
        report.passed("decontaminate")
        match = self.decontaminator.check(words)
        if match is not None:
            reason = (f"{match.overlap:.0%} of {self.settings.ngram}-grams shared with {match.benchmark} "
                      f"{match.id} (\"{' '.join(match.problem.split())[:100]}\")")
            return drop("decontaminate", reason, record)
        report.passed("near_dedup")
        similar = None
        if self.near is not None:
            accept = partial(self._same_answer, record.answers) if self.settings.near_same_answer else None
            similar = self.near.check(words, key, accept)
        if similar is not None:
            return drop("near_dedup", f"near duplicate (Jaccard ~{similar[1]:.2f}) of {self.where(similar[0])}", record)
        if self.near is not None and self.settings.near_same_answer:
            self._answers[key] = record.answers
        if record.id in self._ids:
            record.id = _fresh_id(record.id, self._ids)
            report.notes["ids made unique"] += 1
        self._ids.add(record.id)
        return record


def _fresh_id(base: str, taken: set[str]) -> str:
    suffix = 2
    while f"{base}#{suffix}" in taken:
        suffix += 1
    return f"{base}#{suffix}"


def prepare(inputs: list[str], out: str | Path, settings: Settings | None = None,
            report_dir: str | Path | None = None) -> Report:
    """Curate `inputs` into `out` (.parquet, .jsonl or .json) and write the report beside it (or in report_dir).

    Raises SourceUnavailable (an input that cannot be opened) and DecontaminationError (a benchmark that
    cannot be loaded) before any output; any fault in the data itself is counted in the report instead.
    """
    settings = settings or Settings()
    out = Path(out)
    specs = expand(inputs)
    started = time.perf_counter()
    report = Report({"inputs": specs, "out": str(out), **asdict(settings)}, settings.examples)
    run = _Run(specs, settings, report)
    streams = [open_rows(spec) for spec in specs]  # opened first: a dataset that cannot be had stops the run here
    with Writer(out, settings.layout, settings.split) as writer, _progress(settings.progress) as advance:
        spool = Spool(out.with_name(out.name + ".spool")) if settings.shuffle else None
        try:
            for file, (spec, rows) in enumerate(zip(specs, streams)):
                report.inputs.append(_read(run, file, spec, rows, spool or writer, advance))
            if spool is not None:
                for record in spool.shuffled(random.Random(settings.seed)):
                    writer.write(record)
        finally:
            if spool is not None:
                spool.close()
        count = writer.count
    if run.near is not None:
        report.notes["near-identical problems kept because their answers differ"] = run.near.rejected
    report.output = {"path": str(out), "layout": settings.layout, "rows": count}
    report.seconds = time.perf_counter() - started
    report.peak_memory_mb = _peak_memory_mb()
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    report.write(report_dir if report_dir is not None else out.parent, stem)
    return report


def _peak_memory_mb() -> float:
    """This process's peak resident memory. On Linux from /proc (VmHWM, this program's own): getrusage's
    ru_maxrss keeps the peak of whatever process started this one, since Linux carries it across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _read(run: _Run, file: int, spec: str, stream: Iterator[tuple[int, Any]], sink: Writer | Spool,
          advance: Any) -> dict[str, Any]:
    rows, error = 0, None
    try:
        for number, raw in stream:
            rows += 1
            record = run.process(file, number, raw)
            if record is not None:
                sink.write(record)
            if rows % 256 == 0:
                advance(spec, rows, sink.count)
    except SourceUnavailable:
        raise
    except SourceError as fault:
        error = f"stopped after {rows} rows: {fault}"  # rows past a fault that hides them are not counted
        run.report.notes["inputs that could not be read to the end"] += 1
    advance(spec, rows, sink.count)
    return {"input": spec, "rows": rows, "error": error}


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A callback (input, rows read, rows kept so far) that drives one rich progress line per input."""
    if not enabled:
        yield lambda *_: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} rows read"),
               TextColumn("({task.fields[kept]} kept so far)"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        tasks: dict[str, Any] = {}

        def advance(spec: str, rows: int, kept: int) -> None:
            if spec not in tasks:
                tasks[spec] = bar.add_task(Path(spec).name, total=None, kept=0)
            bar.update(tasks[spec], completed=rows, kept=kept)

        yield advance
