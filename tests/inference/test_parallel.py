"""Data-parallel generation: requests split between this process and a worker process, real subprocesses."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from deepscaler.inference.engines.builtin import BuiltinEngine
from deepscaler.inference.engines.parallel import split_requests
from deepscaler.inference.params import SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True, logprobs=0)


@pytest.fixture(scope="module")
def pair(tiny_model_dir):
    """The same model as a one-process engine and as a two-process one, one thread per process."""
    alone = BuiltinEngine(tiny_model_dir, num_threads=1, data_parallel=1)
    split = BuiltinEngine(tiny_model_dir, num_threads=2, data_parallel=2)
    yield alone, split
    alone.close()
    split.close()


@pytest.fixture(scope="module")
def many_prompts(prompts) -> list[list[int]]:
    """20 distinct prompts: enough for a split (8 sequences per process at least)."""
    return [prompt + [10 + i] for i in range(5) for prompt in prompts]


def test_split_requests_balances_whole_requests() -> None:
    params = [SamplingParams(max_tokens=10, n=n) for n in (1, 4, 1, 2, 1)]
    prompts = [[1] * 10, [1] * 10, [1] * 30, [1] * 10, [1] * 10]
    # Work per request: n * (prompt + max_tokens) = 20, 80, 40, 40, 20; most first, each to the lightest
    # shard (the lower-numbered on a tie).
    assert split_requests(prompts, params, 2) == [[0, 1], [2, 3, 4]]
    assert split_requests(prompts, params, 3) == [[1], [0, 2], [3, 4]]
    assert split_requests(prompts, params, 2) == split_requests(prompts, params, 2)


def test_split_generation_equals_one_process(pair, many_prompts) -> None:
    alone, split = pair
    seeded = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=12, seed=5, ignore_eos=True, logprobs=0, n=2)
    for params in (GREEDY, seeded):
        expected = alone.generate(many_prompts, [params] * len(many_prompts))
        got = split.generate(many_prompts, [params] * len(many_prompts))
        assert "waiting for workers" in split.timings  # the call really was split
        assert len(split.parallel.workers) == 1 and split.parallel.workers[0].process.poll() is None
        assert not split.parallel.shared.linked  # the weights file is gone once the worker has mapped it
        for want, have in zip(expected, got, strict=True):
            assert [c.token_ids for c in have] == [c.token_ids for c in want]
            assert [c.index for c in have] == [c.index for c in want]
            for a, b in zip(want, have, strict=True):
                assert b.token_logprobs == pytest.approx(a.token_logprobs, abs=1e-4)


def test_small_calls_and_streaming_stay_in_process(pair, prompts, many_prompts) -> None:
    _, split = pair
    split.generate(prompts, [GREEDY] * len(prompts))  # 4 sequences: too few to split
    assert "waiting for workers" not in split.timings
    seen = []
    split.generate(many_prompts, [GREEDY] * len(many_prompts), on_token=lambda r, i, t: seen.append(r))
    assert "waiting for workers" not in split.timings
    assert len(seen) == len(many_prompts) * GREEDY.max_tokens


def test_weight_updates_reach_the_worker(pair, many_prompts, hf_model) -> None:
    alone, split = pair
    torch.manual_seed(0)
    noisy = {name: tensor + 0.05 * torch.randn_like(tensor) for name, tensor in hf_model.state_dict().items()
             if name != "lm_head.weight"}
    before = split.generate(many_prompts, [GREEDY] * len(many_prompts))
    try:
        for engine in pair:
            engine.update_weights(noisy.items())
        expected = alone.generate(many_prompts, [GREEDY] * len(many_prompts))
        got = split.generate(many_prompts, [GREEDY] * len(many_prompts))
        assert [o[0].token_ids for o in got] == [o[0].token_ids for o in expected]
        assert [o[0].token_ids for o in got] != [o[0].token_ids for o in before]
    finally:
        for engine in pair:
            engine.update_weights(hf_model.state_dict().items())


def generates_here_from_now_on(split: BuiltinEngine, alone: BuiltinEngine, prompts, warning: str) -> None:
    """A call on `split` warns with `warning`, still returns the one-process result, and leaves `split`
    without workers."""
    params = [GREEDY] * len(prompts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = split.generate(prompts, params)
    assert any(warning in str(w.message) for w in caught)
    assert [o[0].token_ids for o in got] == [o[0].token_ids for o in alone.generate(prompts, params)]
    assert split.data_parallel == 1 and not split.parallel.workers


def test_a_dead_worker_is_replaced_by_this_process(pair, tiny_model_dir, many_prompts) -> None:
    split = BuiltinEngine(tiny_model_dir, num_threads=2, data_parallel=2)
    try:
        split.generate(many_prompts, [GREEDY] * len(many_prompts))
        worker = split.parallel.workers[0]
        worker.process.kill()
        worker.process.wait()
        generates_here_from_now_on(split, pair[0], many_prompts, "worker exited")
    finally:
        split.close()


def test_close_stops_the_workers(tiny_model_dir, many_prompts) -> None:
    split = BuiltinEngine(tiny_model_dir, num_threads=2, data_parallel=2)
    split.generate(many_prompts, [GREEDY] * len(many_prompts))
    process, weights_file = split.parallel.workers[0].process, split.parallel.shared.path
    split.close()
    assert process.poll() is not None and not split.parallel.workers
    assert not os.path.exists(weights_file)


def test_bad_data_parallel_value_is_a_clear_error(tiny_model_dir) -> None:
    with pytest.raises(ValueError, match="data_parallel"):
        BuiltinEngine(tiny_model_dir, data_parallel=0)


def test_a_worker_that_cannot_be_started_leaves_the_work_here(pair, tiny_model_dir, many_prompts) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.not_picklable = lambda: None  # the worker is sent the engine's tokenizer; this one cannot go
    split = BuiltinEngine(tiny_model_dir, tokenizer=tokenizer, num_threads=2, data_parallel=2)
    try:
        generates_here_from_now_on(split, pair[0], many_prompts, "could not be sent")
    finally:
        split.close()


def test_auto_splits_only_calls_worth_a_worker(tiny_model_dir, many_prompts) -> None:
    engine = BuiltinEngine(tiny_model_dir, num_threads=2)  # data_parallel="auto": 2 processes for this model
    try:
        engine.generate(many_prompts, [GREEDY] * len(many_prompts))  # 20 x 12 tokens: not worth a start-up
        assert "waiting for workers" not in engine.timings and not engine.parallel.workers
        long = SamplingParams(temperature=0, max_tokens=256, ignore_eos=True)
        engine.generate(many_prompts[:16], [long] * 16)  # 16 x 256 = 4096 tokens
        assert "waiting for workers" in engine.timings and len(engine.parallel.workers) == 1
    finally:
        engine.close()
