"""The built-in engine: exact greedy decoding, sampling semantics, stops, log-probs, weight updates."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest
import torch

from deepscaler.inference.engines.builtin import BuiltinEngine
from deepscaler.inference.params import SamplingParams

pytestmark = pytest.mark.plain_install  # also run in `make demo`'s environment

GREEDY = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, logprobs=0)


def first(engine: BuiltinEngine, prompts, params):
    """The first completion of each prompt."""
    return [outs[0] for outs in engine.generate(prompts, [params] * len(prompts))]


def test_greedy_equals_hugging_face_generate(engine, prompts, hf_greedy) -> None:
    outputs = first(engine, prompts, GREEDY)
    for prompt, out in zip(prompts, outputs, strict=True):
        assert out.token_ids == hf_greedy(prompt, GREEDY.max_tokens)
        assert out.finish_reason == "length"
    assert (engine.model._attention is not None) == engine.model.fused_kernels  # the attention kernel ran, or not


def test_batched_equals_unbatched(engine, prompts) -> None:
    seeded = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=20, seed=11, ignore_eos=True, logprobs=0)
    for params in (GREEDY, seeded):
        together = first(engine, prompts, params)
        for prompt, out in zip(prompts, together, strict=True):
            alone = first(engine, [prompt], params)[0]
            assert alone.token_ids == out.token_ids
            assert alone.token_logprobs == pytest.approx(out.token_logprobs, abs=1e-4)


def test_seed_reproducible_whatever_the_batch(engine, prompts) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=16, seed=7, ignore_eos=True)
    reference = first(engine, [prompts[1]], params)[0].token_ids
    unseeded = SamplingParams(temperature=1.0, max_tokens=30, ignore_eos=True)
    mixed = engine.generate([prompts[0], prompts[1], prompts[2]], [unseeded, params, unseeded])
    assert mixed[1][0].token_ids == reference
    other = SamplingParams(temperature=1.0, max_tokens=16, seed=8, ignore_eos=True)
    other_seed = first(engine, [prompts[1]], other)
    assert other_seed[0].token_ids != reference


def test_n_completions_differ_and_are_reproducible(engine, prompts) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=12, n=4, seed=3, ignore_eos=True)
    outs = engine.generate([prompts[0]], [params])[0]
    assert [o.index for o in outs] == [0, 1, 2, 3]
    assert len({tuple(o.token_ids) for o in outs}) == 4
    again = engine.generate([prompts[0]], [params])[0]
    assert [o.token_ids for o in again] == [o.token_ids for o in outs]


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=1.3, top_k=1, max_tokens=24, ignore_eos=True, seed=1),
    SamplingParams(temperature=0.9, top_p=1e-6, max_tokens=24, ignore_eos=True, seed=2),
])
def test_top_k_one_and_tiny_top_p_are_greedy(engine, prompts, params) -> None:
    greedy = first(engine, prompts, GREEDY)
    assert [o.token_ids for o in first(engine, prompts, params)] == [o.token_ids for o in greedy]


def test_sampling_follows_the_filtered_distribution(engine, hf_model, prompts) -> None:
    """One token, 4000 times: frequencies match softmax(logits / T) renormalised over the top-k set."""
    temperature, k, draws = 0.5, 4, 4000
    params = SamplingParams(temperature=temperature, top_k=k, max_tokens=1, n=draws, seed=0, ignore_eos=True)
    counts = Counter(o.token_ids[0] for o in engine.generate([prompts[1]], [params])[0])
    with torch.inference_mode():
        logits = hf_model(torch.tensor([prompts[1]])).logits[0, -1] / temperature
    top = logits.topk(k)
    probs = torch.softmax(top.values, dim=0).tolist()
    assert set(counts) <= set(top.indices.tolist())
    for token, p in zip(top.indices.tolist(), probs, strict=True):
        sigma = math.sqrt(draws * p * (1 - p))
        assert abs(counts[token] - draws * p) < 4.5 * sigma + 1, (token, counts[token], draws * p)


def test_top_p_keeps_the_smallest_set_reaching_p(engine, hf_model, prompts) -> None:
    with torch.inference_mode():
        probs = torch.softmax(hf_model(torch.tensor([prompts[0]])).logits[0, -1] / 0.3, dim=0)
    ranked = probs.sort(descending=True)
    top_p = float(ranked.values[:3].sum()) - 1e-4  # needs exactly the 3 most likely tokens
    params = SamplingParams(temperature=0.3, top_p=top_p, max_tokens=1, n=600, seed=0, ignore_eos=True)
    seen = {o.token_ids[0] for o in engine.generate([prompts[0]], [params])[0]}
    assert seen == set(ranked.indices[:3].tolist())


def test_logprobs_match_hugging_face(engine, prompts, hf_logprobs) -> None:
    for params in (GREEDY, SamplingParams(temperature=0.7, top_k=20, top_p=0.9, max_tokens=24, seed=5,
                                          ignore_eos=True, logprobs=2)):
        for prompt, out in zip(prompts, first(engine, prompts, params), strict=True):
            expected = hf_logprobs(prompt, out.token_ids, params.temperature)
            assert torch.allclose(torch.tensor(out.token_logprobs), expected, atol=1e-4)
            assert out.cumulative_logprob == pytest.approx(float(expected.sum()), abs=1e-3)
            for token, position in zip(out.token_ids, out.logprobs, strict=True):
                assert token in position and len(position) <= params.logprobs + 1


def test_no_logprobs_unless_asked(engine, prompts) -> None:
    out = first(engine, prompts[:1], SamplingParams(temperature=0, max_tokens=3))[0]
    assert out.token_logprobs is None and out.logprobs is None


def test_max_tokens_stop_token_ids_and_eos(engine, prompts) -> None:
    greedy = first(engine, [prompts[3]], GREEDY)[0].token_ids
    short = first(engine, [prompts[3]], SamplingParams(temperature=0, max_tokens=5))[0]
    assert short.token_ids == greedy[:5] and short.finish_reason == "length"
    # Stop at the first occurrence of the 4th greedy token (kept in token_ids, not in the text).
    target = greedy[3]
    cut = greedy.index(target) + 1
    by_id = SamplingParams(temperature=0, max_tokens=24, stop_token_ids=[target])
    stopped = first(engine, [prompts[3]], by_id)[0]
    assert stopped.token_ids == greedy[:cut]
    assert (stopped.finish_reason, stopped.stop_reason) == ("stop", target)
    assert stopped.text == engine.tokenizer.decode(greedy[: cut - 1], skip_special_tokens=True)
    saved = engine.eos_ids
    engine.eos_ids = frozenset({target})  # pretend the model's end-of-sequence token is `target`
    try:
        eos = first(engine, [prompts[3]], SamplingParams(temperature=0, max_tokens=24))[0]
        no_eos = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
        ignored = first(engine, [prompts[3]], no_eos)[0]
    finally:
        engine.eos_ids = saved
    assert (eos.token_ids, eos.finish_reason, eos.stop_reason) == (greedy[:cut], "stop", None)
    assert ignored.token_ids == greedy and ignored.finish_reason == "length"


def test_stop_strings_cut_the_text(engine, prompts) -> None:
    full = first(engine, [prompts[1]], GREEDY)[0]
    text = full.text
    stop = text[len(text) // 3 : len(text) // 3 + 3]
    params = SamplingParams(temperature=0, max_tokens=24, stop=["@@never@@", stop])
    out = first(engine, [prompts[1]], params)[0]
    assert out.finish_reason == "stop" and out.stop_reason == stop
    assert out.text == text[: text.index(stop)]
    # The tokens (and log-probs) are those of the returned text: the fewest whose decoding starts with it.
    kept = len(out.token_ids)
    assert full.token_ids[:kept] == out.token_ids and kept < len(full.token_ids)
    decode = engine.tokenizer.decode
    assert decode(out.token_ids).startswith(out.text)
    assert kept == 0 if not out.text else not decode(out.token_ids[:-1]).startswith(out.text)


def test_a_stop_strings_tokens_leave_with_it(engine, prompts) -> None:
    seeded = SamplingParams(temperature=1.0, seed=5, max_tokens=24, ignore_eos=True, logprobs=0)
    full = first(engine, [prompts[1]], seeded)[0]
    decode = engine.tokenizer.decode
    assert [decode([t]) for t in full.token_ids[:7]] == [" its", " the", " expr", "J", "es", "}{", " cou"]
    # "}{ cou" is tokens 5 and 6: the completion is tokens 0-4. "xprJ" starts inside token 2, which stays.
    for stop, text, kept in (("}{ cou", " its the exprJes", 5), ("xprJ", " its the e", 3)):
        for logprobs in (0, 2):
            out = first(engine, [prompts[1]], dataclasses.replace(seeded, stop=[stop], logprobs=logprobs))[0]
            assert (out.text, out.finish_reason, out.stop_reason) == (text, "stop", stop)
            assert out.token_ids == full.token_ids[:kept]
            assert out.token_logprobs == pytest.approx(full.token_logprobs[:kept], abs=1e-4)
            assert len(out.logprobs) == kept and all(len(entry) >= logprobs for entry in out.logprobs)


def test_context_limit(tiny_model_dir, prompts) -> None:
    small = BuiltinEngine(tiny_model_dir, max_model_len=32)
    with pytest.raises(ValueError, match="context"):
        small.generate([list(range(3, 40))], [GREEDY])
    out = small.generate([prompts[0]], [SamplingParams(temperature=0, max_tokens=100)])[0][0]
    assert len(prompts[0]) + len(out.token_ids) == 32 and out.finish_reason == "length"
    with pytest.raises(ValueError, match="exceeds"):
        BuiltinEngine(tiny_model_dir, max_model_len=10**6)
    with pytest.raises(ValueError, match="empty prompt"):
        small.generate([[]], [GREEDY])
    with pytest.raises(ValueError, match="num_threads"):
        BuiltinEngine(tiny_model_dir, num_threads=0)


def test_many_sequences_through_few_slots(tiny_model_dir, prompts, hf_greedy) -> None:
    """More requests than slots, with different lengths: sequences leave and join the running batch."""
    narrow = BuiltinEngine(tiny_model_dir, max_num_seqs=3)
    lengths = [3, 17, 9, 1, 12, 6, 20, 2]
    requests = [prompts[i % len(prompts)] for i in range(len(lengths))]
    params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in lengths]
    outs = narrow.generate(requests, params)
    expected = {tuple(p): hf_greedy(p, max(lengths)) for p in prompts}
    for prompt, n, out in zip(requests, lengths, outs, strict=True):
        assert out[0].token_ids == expected[tuple(prompt)][:n]


def test_update_weights_equals_a_fresh_load(tmp_path, prompts) -> None:
    from transformers import AutoModelForCausalLM

    from deepscaler.inference.models import make_tiny_model

    engine = BuiltinEngine(make_tiny_model(tmp_path / "a", seed=0))
    before = first(engine, prompts, GREEDY)
    new_dir = make_tiny_model(tmp_path / "b", seed=1)
    engine.update_weights(AutoModelForCausalLM.from_pretrained(new_dir).state_dict().items())
    after = first(engine, prompts, GREEDY)
    fresh = first(BuiltinEngine(new_dir), prompts, GREEDY)
    assert [o.token_ids for o in after] != [o.token_ids for o in before]
    for a, f in zip(after, fresh, strict=True):
        assert a.token_ids == f.token_ids
        assert a.token_logprobs == pytest.approx(f.token_logprobs, abs=1e-5)


def test_sleep_frees_cache_and_weights_and_an_update_after_waking_restores_them(tmp_path, prompts) -> None:
    from transformers import AutoModelForCausalLM

    from deepscaler.inference.models import make_tiny_model

    model_dir = make_tiny_model(tmp_path / "a", seed=0)
    engine = BuiltinEngine(model_dir, data_parallel=1)
    before = first(engine, prompts, GREEDY)
    held = sum(t.numel() for t in engine.model.tensors().values())
    assert engine.model.k_cache  # kept between generate calls
    engine.sleep(level=1)
    assert engine.model.k_cache == [] and engine.model.has_weights
    engine.sleep(level=2)
    assert not engine.model.has_weights and engine.model.tensors() == {"embed": None, "final_norm": None}
    engine.wake_up(["weights"])
    assert sum(t.numel() for t in engine.model.tensors().values()) == held
    engine.update_weights(AutoModelForCausalLM.from_pretrained(model_dir).named_parameters())
    engine.wake_up(["kv_cache"])
    after = first(engine, prompts, GREEDY)
    for a, b in zip(after, before, strict=True):
        assert a.token_ids == b.token_ids
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-6)


def test_on_token_streams_every_token_in_order(engine, prompts) -> None:
    streamed: dict[tuple[int, int], list[int]] = {}
    params = [SamplingParams(temperature=0.9, max_tokens=7, n=2, seed=1, ignore_eos=True), GREEDY]
    outputs = engine.generate(prompts[:2], params,
                              on_token=lambda r, i, t: streamed.setdefault((r, i), []).append(t))
    assert sorted(streamed) == [(0, 0), (0, 1), (1, 0)]
    for (request, index), tokens in streamed.items():
        assert tokens == outputs[request][index].token_ids
