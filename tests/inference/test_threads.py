"""The thread tuner settles on the faster thread count and re-checks the other ever more rarely."""

from __future__ import annotations

import torch

from deepscaler.inference.engines.threads import ThreadTuner


def drive(tuner: ThreadTuner, cost: dict[int, float], steps: int) -> list[int]:
    chosen = []
    for _ in range(steps):
        threads = tuner.choose()
        assert torch.get_num_threads() == threads
        tuner.record(cost[threads] * 8, rows=8)
        chosen.append(threads)
    return chosen


def test_settles_on_one_thread_when_it_is_faster() -> None:
    before = torch.get_num_threads()
    try:
        chosen = drive(ThreadTuner(2, first_wait=4, longest_wait=64), {1: 1.0, 2: 5.0}, 200)
    finally:
        torch.set_num_threads(before)
    assert chosen[:2] == [2, 1]  # each count is measured once
    retries = [i for i, t in enumerate(chosen) if t == 2][1:]
    # Each confirming re-try doubles the wait (4, 8, 16, 32, then capped at 64 steps).
    assert retries == [5, 13, 29, 61, 125, 189]


def test_switches_when_the_machine_changes() -> None:
    before = torch.get_num_threads()
    try:
        tuner = ThreadTuner(2, first_wait=4)
        drive(tuner, {1: 1.0, 2: 5.0}, 50)
        chosen = drive(tuner, {1: 1.0, 2: 0.2}, 200)  # the other processes have finished
    finally:
        torch.set_num_threads(before)
    assert chosen[-20:] == [2] * 20


def test_fixed_count_never_explores() -> None:
    before = torch.get_num_threads()
    try:
        assert set(drive(ThreadTuner(2, fixed=1), {1: 1.0}, 100)) == {1}
    finally:
        torch.set_num_threads(before)
