import threading
import time

import pytest

from deepscaler.reward import RewardScorer

ORDINARY = [("</think> \\boxed{\\frac{1}{2}}", "0.5", 1.0), ("</think> \\boxed{3}", "4", 0.0),
            ("<think> \\boxed{3}", "3", 0.0), ("</think> \\boxed{2\\sqrt{2}}", "\\sqrt{8}", 1.0),
            ("</think> \\boxed{(x+1)^2}", "x^2+2x+1", 1.0), ("</think> \\boxed{9^{9^{9^9}}}", "1", 0.0)]


@pytest.fixture
def scorer():
    with RewardScorer(workers=2, timeout=2.0) as scorer:
        yield scorer


def test_batch_scores_and_stats(scorer):
    responses, golds, expected = zip(*(ORDINARY * 50))
    assert scorer.score(list(responses), list(golds)) == list(expected)
    stats = scorer.stats
    assert (stats.items, stats.correct, stats.no_answer) == (300, 150, 50)
    assert stats.sent_to_workers == 100 and stats.decided_fast == 150
    assert stats.timeouts == 0 and stats.over_budget == 0


def test_timeout_scores_zero_and_is_counted():
    # SymPy takes 0.7 s over this in a fresh worker; the exact stage hands it over in well under 0.1 s
    with RewardScorer(workers=1, timeout=0.1) as scorer:
        assert scorer.score(["\\boxed{\\lfloor \\pi^{3000} \\rfloor}"], ["1"]) == [0.0]
        assert scorer.stats.timeouts == 1 and scorer.stats.worker_restarts == 1


def test_in_process_time_outs_and_budget_are_counted():
    """The exact stage is timed and budgeted like the workers: no path escapes the counts."""
    with RewardScorer(workers=1, timeout=1e-9) as scorer:  # every item takes longer than a nanosecond
        assert scorer.score(["\\boxed{7}", "\\boxed{8}"], ["7", "7"]) == [0.0, 0.0]
        assert (scorer.stats.timeouts, scorer.stats.decided_fast, scorer.stats.sent_to_workers) == (2, 0, 0)
    with RewardScorer(workers=1, budget=0.01) as scorer:
        responses = [f"\\boxed{{{k}/7}}" for k in range(200_000)]
        scores = scorer.score(responses, [f"{k}/7" for k in range(200_000)])
        stats = scorer.stats
    assert 0 < stats.over_budget < 200_000 and stats.decided_fast == sum(scores) == 200_000 - stats.over_budget
    assert stats.seconds < 5.0 and scores[0] == 1.0 and scores[-1] == 0.0


def test_dead_worker_is_replaced_and_item_rescored(scorer):
    responses = [f"\\boxed{{{k}\\sqrt{{2}}}}" for k in range(1, 301)]
    golds = [f"\\sqrt{{{2 * k * k}}}" for k in range(1, 301)]
    scorer.score(responses[:1], golds[:1])  # starts the workers

    def kill_workers_mid_batch():
        time.sleep(0.05)
        for worker in list(scorer._workers):
            worker.process.kill()

    killer = threading.Thread(target=kill_workers_mid_batch)
    killer.start()
    assert scorer.score(responses, golds) == [1.0] * 300
    killer.join()
    assert scorer.stats.worker_restarts >= 1 and scorer.stats.timeouts == 0


def test_dead_idle_worker_is_replaced(scorer):
    scorer.score(["\\boxed{\\sqrt{8}}"], ["2\\sqrt2"])
    for worker in scorer._workers:
        worker.process.kill()
        worker.process.wait()
    assert scorer.score(["\\boxed{\\sqrt{8}}"], ["2\\sqrt2"]) == [1.0]
    assert scorer.stats.worker_restarts == 2


def test_budget_limits_the_batch():
    with RewardScorer(workers=1, timeout=5.0, budget=1e-3) as scorer:
        scores = scorer.score(["\\boxed{2}"] + ["\\boxed{2\\pi}"] * 20, ["2"] + ["\\pi + \\pi"] * 20)
    assert scores[0] == 1.0  # decided in-process, before the budget matters
    assert scorer.stats.over_budget > 0 and sum(scores[1:]) < 20


def test_bad_arguments():
    with pytest.raises(ValueError):
        RewardScorer(workers=0)
    with RewardScorer() as scorer, pytest.raises(ValueError):
        scorer.score(["a"], [])
