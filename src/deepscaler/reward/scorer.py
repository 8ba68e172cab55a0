"""Batch scoring for training and evaluation: many responses, a few worker processes, hard time limits."""

from __future__ import annotations

import math
import select
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from deepscaler.reward.extract import extract_answer
from deepscaler.reward.grade import DEFAULT_TIMEOUT, Gold, fast_equivalent, gold_answers
from deepscaler.reward.workers import WorkerDied, WorkerProcess


@dataclass
class ScoreStats:
    """What happened in the last `score` call."""

    items: int = 0
    correct: int = 0
    no_answer: int = 0  # no final boxed answer (or reasoning never closed)
    decided_fast: int = 0  # settled in-process with exact rationals
    sent_to_workers: int = 0  # needed SymPy
    timeouts: int = 0  # over the per-item limit, in-process or in a worker: scored 0
    over_budget: int = 0  # not graded because the batch budget ran out (in-process or in a worker): scored 0
    worker_restarts: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Job:
    index: int
    answer: str
    golds: list[str]
    started: float = 0.0
    attempts: int = 0


class RewardScorer:
    """Scores responses against golds with `workers` child processes.

    Every item gets at most `timeout` seconds of SymPy time (then scores 0 and counts as a time-out);
    the whole batch gets at most `budget` seconds (items still waiting then score 0). A child that dies
    is replaced and its item graded once more. Use as a context manager, or call close().

    The in-process stage is bounded by construction (see sizes.py), so it cannot be stopped and need
    not be; it is still timed, and held to the same rules: an item it took longer than `timeout` over
    scores 0 as a time-out, and once the budget is spent the items left are not looked at.
    """

    def __init__(
        self, workers: int = 2, timeout: float = DEFAULT_TIMEOUT, budget: float | None = None,
        think: str = "optional",
    ) -> None:
        if workers < 1 or timeout <= 0 or (budget is not None and budget <= 0):
            raise ValueError("workers must be >= 1, timeout and budget > 0")
        self.num_workers, self.timeout, self.budget, self.think = workers, timeout, budget, think
        self._workers: list[WorkerProcess] = []
        self.stats = ScoreStats()

    def __enter__(self) -> RewardScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> RewardScorer:
        """Start the worker processes now rather than on the first batch that needs SymPy."""
        self._start_workers()
        return self

    def close(self) -> None:
        for worker in self._workers:
            worker.kill()
        self._workers = []

    def score(self, responses: Sequence[str], golds: Sequence[Gold]) -> list[float]:
        """One reward (1.0 or 0.0) per response; `self.stats` describes the call."""
        if len(responses) != len(golds):
            raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
        start = time.monotonic()
        deadline = math.inf if self.budget is None else start + self.budget
        self.stats = stats = ScoreStats(items=len(responses))
        scores = [0.0] * len(responses)
        pending: list[_Job] = []
        for index, (response, gold) in enumerate(zip(responses, golds, strict=False)):
            item_start = time.monotonic()
            if item_start >= deadline:
                stats.over_budget += len(responses) - index
                break
            try:
                answer = extract_answer(response, think=self.think)
            except Exception:
                answer = None
            if answer is None:
                stats.no_answer += 1
                continue
            gold_list = gold_answers(gold)
            try:
                decided = fast_equivalent(answer, gold_list)
            except Exception:
                decided = False
            if time.monotonic() - item_start > self.timeout:
                stats.timeouts += 1
            elif decided is None:
                pending.append(_Job(index, answer, gold_list))
            else:
                stats.decided_fast += 1
                scores[index] = float(decided)
        stats.sent_to_workers = len(pending)
        if pending:
            self._grade_in_workers(pending, scores, deadline)
        stats.correct = int(sum(scores))
        stats.seconds = time.monotonic() - start
        return scores

    def _grade_in_workers(self, queue: list[_Job], scores: list[float], deadline: float) -> None:
        self._start_workers()
        queue.reverse()  # pop() from the end keeps input order
        busy: dict[int, tuple[WorkerProcess, _Job]] = {}
        idle = list(self._workers)
        while queue or busy:
            now = time.monotonic()
            if now >= deadline:
                self.stats.over_budget += len(queue) + len(busy)
                for worker, _ in busy.values():
                    self._replace(worker)
                return
            while queue and idle:
                worker, job = idle.pop(), queue.pop()
                if not worker.alive():  # died while idle: do not spend one of the job's two attempts on it
                    worker = self._replace(worker)
                job.started, job.attempts = time.monotonic(), job.attempts + 1
                try:
                    worker.send({"given": job.answer, "golds": job.golds})
                    busy[worker.fileno()] = (worker, job)
                except WorkerDied:
                    idle.append(self._replace(worker))
                    self._retry_or_drop(job, queue)
            if not busy:  # every send failed and the jobs were dropped: nothing left to wait for
                continue
            wait = min(job.started + self.timeout for _, job in busy.values()) - time.monotonic()
            wait = min(wait, deadline - time.monotonic())
            readable, _, _ = select.select(list(busy), [], [], max(0.0, wait))
            for fileno in readable:
                worker, job = busy.pop(fileno)
                try:
                    reply = worker.receive(0.0)
                except WorkerDied:
                    idle.append(self._replace(worker))
                    self._retry_or_drop(job, queue)
                    continue
                if reply is None:  # a partial line: keep waiting
                    busy[fileno] = (worker, job)
                    continue
                scores[job.index] = float(reply.get("value", 0.0))
                idle.append(worker)
            now = time.monotonic()
            overdue = [fileno for fileno, (_, job) in busy.items() if now >= job.started + self.timeout]
            if overdue:
                # Replacing a dead worker above blocks for its start-up, and a reply may have arrived in
                # the meantime: one already waiting is read on the next pass, not called a time-out.
                answered, _, _ = select.select(overdue, [], [], 0)
                for fileno in set(overdue) - set(answered):
                    worker, _ = busy.pop(fileno)
                    self.stats.timeouts += 1
                    idle.append(self._replace(worker))

    def _retry_or_drop(self, job: _Job, queue: list[_Job]) -> None:
        if job.attempts < 2:
            queue.append(job)

    def _start_workers(self) -> None:
        alive = [worker for worker in self._workers if worker.alive()]
        self.stats.worker_restarts += len(self._workers) - len(alive)
        self._workers = alive
        while len(self._workers) < self.num_workers:
            self._workers.append(WorkerProcess())
        for worker in self._workers:
            worker.wait_ready()

    def _replace(self, worker: WorkerProcess) -> WorkerProcess:
        worker.kill()
        self.stats.worker_restarts += 1
        fresh = WorkerProcess()
        self._workers = [fresh if w is worker else w for w in self._workers]
        fresh.wait_ready()
        return fresh
