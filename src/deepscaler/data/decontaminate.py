"""Contamination: training problems that overlap a test problem, found by shared token n-grams.

A row is contaminated when the share of n-grams it has in common with one benchmark problem reaches
`overlap`, counted against the smaller of the two n-gram sets, so a test problem pasted inside a longer
training problem is caught as well as a lightly reworded copy.

Why n = 8 and overlap = 0.5 by default rather than the 13-gram, any-match rule of GPT-3's report:
math problems are short (MATH-500: a median of 33 tokens here, and a tenth under 14), so a 13-gram rule
misses reworded copies (one changed word removes up to 13 of their few n-grams) and cannot see a short
problem at all, while "any shared n-gram" flags the stock phrases of the genre ("express your answer as a
common fraction"). Tokens count math too (numbers, commands, operators), so 8 tokens are a short clause.
On the shared training data this removes the AIME problems that MATH-500 reuses (verbatim or re-typeset)
and MATH train's templated siblings of MATH-500 problems (same text, other numbers): training on those
would leak the test's method, so they go too. Nothing in AIME 1983-2023 matches AIME 2024.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deepscaler.data.problems import ProblemFileError, resolve
from deepscaler.data.records import ANSWER_FIELDS, BadRow, to_record
from deepscaler.data.sources import SourceError, Unparsable, label, open_rows
from deepscaler.data.text import ngrams, tokens

DEFAULT_NGRAM = 8
DEFAULT_OVERLAP = 0.5


class DecontaminationError(ValueError):
    """The decontamination set cannot be loaded; the message names the file and row."""


@dataclass(frozen=True)
class Match:
    """The benchmark problem a training row overlaps, and how much."""

    benchmark: str
    id: str
    overlap: float
    problem: str


class Decontaminator:
    """An n-gram index of the test problems; `check` finds the one a training problem overlaps most."""

    def __init__(self, problems: Iterable[tuple[str, str, str]], n: int = DEFAULT_NGRAM,
                 overlap: float = DEFAULT_OVERLAP) -> None:
        """`problems` are (benchmark, id, text) triples."""
        if n < 1:
            raise ValueError(f"n-gram size must be at least 1, got {n}")
        if not 0.0 < overlap <= 1.0:
            raise ValueError(f"overlap must be in (0, 1], got {overlap}")
        self.n, self.overlap = n, overlap
        self._index: dict[str, list[int]] = {}
        self._problems: list[tuple[str, str, str, int]] = []
        for benchmark, problem_id, text in problems:
            grams = ngrams(tokens(text), n)
            if not grams:
                continue
            for gram in grams:
                self._index.setdefault(gram, []).append(len(self._problems))
            self._problems.append((benchmark, problem_id, text, len(grams)))

    def __len__(self) -> int:
        return len(self._problems)

    def check(self, words: list[str]) -> Match | None:
        """The benchmark problem these tokens overlap at least `overlap`, the highest first; else None."""
        grams = ngrams(words, self.n)
        shared: dict[int, int] = {}
        for gram in grams:
            for position in self._index.get(gram, ()):
                shared[position] = shared.get(position, 0) + 1
        best: tuple[float, int] | None = None
        for position, count in shared.items():
            share = count / min(len(grams), self._problems[position][3])
            if share >= self.overlap and (best is None or (share, -position) > (best[0], -best[1])):
                best = (share, position)
        if best is None:
            return None
        benchmark, problem_id, text, _ = self._problems[best[1]]
        return Match(benchmark, problem_id, round(best[0], 3), text)


def benchmark_problems(names: Iterable[str], data_dir: str | Path | None = None) -> Iterable[tuple[str, str, str]]:
    """(benchmark, id, text) for each problem of the named benchmarks or files; answers are not needed."""
    for name in names:
        try:
            path = resolve(name, data_dir)
        except ProblemFileError as error:
            raise DecontaminationError(str(error)) from None
        benchmark = name if name == label(name) else label(str(path))
        try:
            for number, row in open_rows(str(path)):
                if isinstance(row, Unparsable):
                    raise DecontaminationError(f"{path}: row {number}: {row.reason}")
                if isinstance(row, dict) and "reward_model" not in row:
                    row = {key: value for key, value in row.items() if key not in ANSWER_FIELDS}  # text only
                try:
                    record = to_record(row, benchmark, number - 1)
                except BadRow as error:
                    raise DecontaminationError(f"{path}: row {number}: {error}") from None
                yield benchmark, record.id, record.problem
        except SourceError as error:
            raise DecontaminationError(f"{path}: {error}") from None
