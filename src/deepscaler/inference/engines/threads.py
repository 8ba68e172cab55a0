"""Choosing torch's intra-op thread count while decoding.

Small decode steps are a few dozen short operators. On an idle machine two OpenMP threads halve the
matmul time; on a busy one (a trainer, tests, another engine sharing the cores) every parallel operator
waits at a barrier for a thread the OS has descheduled, and one thread is several times faster. Which
case holds changes from minute to minute, so the tuner measures: it keeps a running cost per row for
each candidate count, uses the cheaper one, and now and then re-tries the other. A re-try that confirms
the choice doubles the wait before the next, since on a busy machine a re-try can cost ten steps' time.
"""

from __future__ import annotations

import torch


class ThreadTuner:
    """Picks, step by step, the faster of one thread and `max_threads` threads (or a fixed count)."""

    def __init__(self, max_threads: int, fixed: int | None = None, first_wait: int = 32,
                 longest_wait: int = 1024) -> None:
        self.fixed = fixed
        self.options = [fixed] if fixed else sorted({1, max(1, max_threads)})
        self.cost: dict[int, float | None] = dict.fromkeys(self.options)
        self.first_wait, self.longest_wait = first_wait, longest_wait
        self.wait = first_wait
        self.countdown = first_wait
        self.current = self.options[-1]
        self.exploring = False

    def _best(self) -> int:
        known = [t for t in self.options if self.cost[t] is not None]
        return min(known, key=lambda t: self.cost[t]) if known else self.options[-1]

    def _apply(self, threads: int) -> None:
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self.current = threads

    def choose(self) -> int:
        """Set torch's thread count for the next measured step and return it."""
        untried = [t for t in self.options if self.cost[t] is None]
        self.exploring = False
        if untried:
            choice = untried[-1]
        else:
            choice = self._best()
            self.countdown -= 1
            if len(self.options) > 1 and self.countdown <= 0:
                choice = next(t for t in self.options if t != choice)
                self.exploring = True
        self._apply(choice)
        return choice

    def apply_best(self) -> None:
        """Set torch to the count that has measured fastest so far (for steps that are not measured)."""
        self._apply(self._best())

    def record(self, seconds: float, rows: int) -> None:
        """Report how long the step run with the current count took for `rows` sequences."""
        per_row = seconds / max(rows, 1)
        old = self.cost[self.current]
        best_before = self._best() if old is not None else None
        # The count in use keeps a moving average (one slow step should not flip the choice); a re-try
        # replaces its stale figure outright, so a machine that has become idle is noticed at once.
        fresh = old is None or self.exploring
        self.cost[self.current] = per_row if fresh else 0.7 * old + 0.3 * per_row
        if self.exploring:
            confirmed = self._best() == best_before
            self.wait = min(2 * self.wait, self.longest_wait) if confirmed else self.first_wait
            self.countdown = self.wait
